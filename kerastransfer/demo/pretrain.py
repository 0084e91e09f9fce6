"""Pretrain the `digits_cnn` backbone on the vendored MNIST source.

Run `python -m kerastransfer.demo.pretrain` to (re)create
`kerastransfer/demo/data/digits_cnn.weights.h5`. Training is seeded; on two
CPU cores it takes about a minute. A temporary softmax head is trained on top
of the backbone and thrown away: only the backbone weights are saved.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import time

from kerastransfer.demo.digits import DATA_DIR, IMAGE_SHAPE, NUM_CLASSES

logger = logging.getLogger(__name__)

WEIGHTS_PATH = DATA_DIR / "digits_cnn.weights.h5"
FILTERS = (16, 32, 64)


def digits_cnn(
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
    weights: str | os.PathLike | None = None,
):
    """Build the small digits CNN backbone (3 conv blocks with BatchNorm).

    Each block is `Conv2D(3x3, no bias) -> BatchNormalization -> ReLU`,
    followed by 2x2 max pooling after the first two blocks and global average
    pooling after the last, so the output is a pooled feature vector of
    length 64. Inputs are grayscale images scaled to `[0, 1]`, digit white
    on black (MNIST convention).

    Args:
        input_shape: shape of one input image. Defaults to `(28, 28, 1)`.
        weights: `None` (random initialization), `"mnist"` (the weights
            pretrained on the vendored MNIST source and shipped with the
            package), or a path to a `.weights.h5` file saved from this
            architecture. Defaults to `None`.

    Returns:
        A functional `keras.Model` named `"digits_cnn"` mapping images of
        `input_shape` to features of shape `(64,)`.

    Raises:
        ValueError: if `weights` is neither `None`, `"mnist"` nor an existing
            file.
        FileNotFoundError: if `weights="mnist"` and the shipped weights file
            is missing (recreate it with `python -m kerastransfer.demo.pretrain`).

    Example:

    >>> backbone = digits_cnn(weights="mnist")
    >>> backbone.output_shape
    (None, 64)
    """
    import keras

    if (
        weights is not None
        and weights != "mnist"
        and not pathlib.Path(weights).is_file()
    ):
        raise ValueError(
            "`weights` must be None, 'mnist', or the path of an existing "
            f".weights.h5 file. Received: weights={weights!r}"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block, filters in enumerate(FILTERS, start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"block{block}_conv"
        )(x)
        x = keras.layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{block}_relu")(x)
        if block < len(FILTERS):
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    if weights == "mnist":
        if not WEIGHTS_PATH.exists():
            raise FileNotFoundError(
                "The pretrained digits_cnn weights are missing. Recreate them with "
                "`python -m kerastransfer.demo.pretrain`. "
                f"Received: path={WEIGHTS_PATH}"
            )
        model.load_weights(WEIGHTS_PATH)
    elif weights is not None:
        model.load_weights(weights)
    return model


def recalibrate_batchnorm(model, images, max_samples: int = 1024) -> None:
    """Set every BatchNormalization's moving statistics to those of `images`.

    With few training steps (or fast-moving weights) the moving statistics of
    a BatchNormalization layer lag behind the batch statistics the weights
    were trained with, and inference-mode accuracy collapses (DESIGN.md facts
    1-2). This sets them, layer by layer in one forward pass in training
    mode, to the statistics of (up to `max_samples` of) `images`. Layers with
    `trainable=False` are recalibrated too: the caller decides which model
    to pass.

    Args:
        model: a `keras.Model` containing BatchNormalization layers (nested
            models are searched).
        images: array of inputs to take the statistics from.
        max_samples: at most this many images (the first ones) are used, to
            bound memory. Defaults to `1024`.

    Example:

    >>> backbone = digits_cnn()
    >>> recalibrate_batchnorm(backbone, np.zeros((8, 28, 28, 1), "float32"))
    """
    import keras

    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    saved = [(layer, layer.momentum, layer.trainable) for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
            layer.trainable = True
        model(images[:max_samples], training=True)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum = momentum
            layer.trainable = trainable


def pretrain(
    epochs: int = 4,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    validation_size: int = 1000,
    seed: int = 0,
    output: str | os.PathLike = WEIGHTS_PATH,
    verbose: int = 0,
) -> dict[str, float]:
    """Train `digits_cnn` on the MNIST source and save the backbone weights.

    The backbone gets a temporary `Dense(10, softmax)` head, is trained with
    Adam on all but `validation_size` source images (a seeded split), its
    BatchNorm moving statistics are recalibrated on the training images, and
    its weights (without the head) are saved to `output`.

    Args:
        epochs: passes over the source training images. Defaults to `4`.
        batch_size: images per step. Defaults to `64`.
        learning_rate: Adam learning rate. Defaults to `1e-3`.
        validation_size: source images held out to report source accuracy.
            Defaults to `1000`.
        seed: seed of the split, the initialization and the shuffling.
            Defaults to `0`.
        output: where to save the backbone weights. Defaults to the shipped
            `kerastransfer/demo/data/digits_cnn.weights.h5`.
        verbose: verbosity passed to `fit`. Defaults to `0`.

    Returns:
        A dict with the source `val_accuracy` (after the BatchNorm moving
        statistics are recalibrated on the source training images, see
        `recalibrate_batchnorm`), `val_accuracy_before_recalibration`,
        `train_accuracy` and the training time in `seconds`.

    Example:

    >>> metrics = pretrain(epochs=1, output="/tmp/digits_cnn.weights.h5")
    """
    import keras
    import numpy as np

    from kerastransfer.demo.digits import load_source

    keras.utils.set_random_seed(seed)
    images, labels = load_source()
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:validation_size], order[validation_size:]

    backbone = digits_cnn()
    classifier = keras.Sequential(
        [
            backbone,
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name="source_head"),
        ],
        name="digits_cnn_source_classifier",
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = classifier.fit(
        images[train],
        labels[train],
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    _, val_accuracy_lagging = classifier.evaluate(
        images[val], labels[val], batch_size=256, verbose=0
    )
    # Moving statistics lag the final weights (DESIGN.md fact 2): set them to
    # the source training images' statistics before saving the backbone.
    shuffled_train = np.random.default_rng(seed + 1).permutation(train)
    recalibrate_batchnorm(backbone, images[shuffled_train])
    _, val_accuracy = classifier.evaluate(
        images[val], labels[val], batch_size=256, verbose=0
    )
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(output)
    metrics = {
        "train_accuracy": float(history.history["accuracy"][-1]),
        "val_accuracy": float(val_accuracy),
        "val_accuracy_before_recalibration": float(val_accuracy_lagging),
        "seconds": seconds,
    }
    logger.info(
        "pretrained digits_cnn on %d source images in %.0f s: source val accuracy "
        "%.4f (%.4f before BatchNorm recalibration; %d held out); saved %s",
        len(train),
        seconds,
        val_accuracy,
        val_accuracy_lagging,
        len(val),
        output,
    )
    return metrics


def main() -> None:
    """Command-line entry point: `python -m kerastransfer.demo.pretrain`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=pathlib.Path, default=WEIGHTS_PATH)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pretrain(epochs=args.epochs, seed=args.seed, output=args.output, verbose=2)


if __name__ == "__main__":
    main()
