"""Pretrain the demo's `digits_cnn` backbone (`python -m kerastransfer.demo.pretrain`).

Regenerates `kerastransfer/demo/data/digits_cnn.weights.h5` deterministically
(seeded data order, augmentation and initialization; on the same machine and
library versions the file is reproduced). The data, all offline:

* the 10,000 real MNIST digits shipped in the package (`digits.load_source`;
  1,000 of them held out to report source accuracy), classes 0-9;
* characters rendered from the faces of Debian font packages
  (`glyphs.render_glyphs`): digits (added to classes 0-9), 52 letters and 20
  symbols - 82 classes in all; one face in ten is held out. The fonts must be
  installed (`scripts/install_demo_fonts.sh`); `--no-fonts` pretrains on MNIST
  alone.

Every epoch sees freshly augmented copies (`augment.augment`: affine,
elastic, stroke width, resolution loss, contrast, noise). A temporary softmax
head over all source classes is trained with the backbone and thrown away;
BatchNorm moving statistics are then recomputed on clean source images with
the final weights, and only the backbone weights are saved. The scikit-learn
digits (the demo's target) are never used here.
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
FILTERS = (32, 64, 128)
FEATURE_DIM = FILTERS[-1]


def digits_cnn(
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
    weights: str | os.PathLike | None = None,
):
    """Build the demo's digits CNN backbone (3 conv blocks with BatchNorm).

    Each block is `Conv2D(3x3, no bias) -> BatchNormalization -> ReLU`,
    followed by 2x2 max pooling after the first two blocks and global average
    pooling after the last, so the output is a pooled feature vector of
    length 128 (filters 32-64-128). Inputs are grayscale images scaled to
    `[0, 1]`, digit white on black (MNIST convention).

    Args:
        input_shape: shape of one input image. Defaults to `(32, 32, 1)`.
        weights: `None` (random initialization), `"mnist"` (the weights
            pretrained on the MNIST digits and font glyphs and shipped with
            the package), or a path to a `.weights.h5` file saved from this
            architecture. Defaults to `None`.

    Returns:
        A functional `keras.Model` named `"digits_cnn"` mapping images of
        `input_shape` to features of shape `(128,)`.

    Raises:
        ValueError: if `weights` is neither `None`, `"mnist"` nor an existing
            file.
        FileNotFoundError: if `weights="mnist"` and the shipped weights file
            is missing (recreate it with `python -m kerastransfer.demo.pretrain`).

    Example:

    >>> backbone = digits_cnn(weights="mnist")
    >>> backbone.output_shape
    (None, 128)
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


def _source_data(use_fonts: bool, validation_size: int, seed: int):
    """Training and held-out source images: MNIST (+ font glyphs)."""
    import numpy as np

    from kerastransfer.demo.digits import load_source

    images, labels = load_source()
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:validation_size], order[validation_size:]
    data = {"x_train": images[train], "y_train": labels[train],
            "x_val_mnist": images[val], "y_val_mnist": labels[val],
            "num_classes": NUM_CLASSES, "faces": 0}
    if use_fonts:
        from kerastransfer.demo import glyphs

        files = glyphs.font_files()
        g_images, g_labels, faces = glyphs.render_glyphs(files)
        held = faces % 10 == 0
        data.update(
            x_train=np.concatenate([data["x_train"], g_images[~held]]),
            y_train=np.concatenate([data["y_train"], g_labels[~held]]),
            x_val_glyphs=g_images[held], y_val_glyphs=g_labels[held],
            num_classes=NUM_CLASSES + len(glyphs.glyph_classes()),
            faces=len(files))
    return data


def pretrain(
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    validation_size: int = 1000,
    use_fonts: bool = True,
    augment: bool = True,
    seed: int = 0,
    output: str | os.PathLike = WEIGHTS_PATH,
    max_train: int | None = None,
    verbose: int = 0,
) -> dict:
    """Train `digits_cnn` on the source and save the backbone weights.

    Args:
        epochs: passes over the (augmented) source training images.
            Defaults to `10`.
        batch_size: images per step. Defaults to `128`.
        learning_rate: peak Adam learning rate, cosine-decayed to zero over
            training. Defaults to `2e-3`.
        validation_size: MNIST images held out to report source accuracy.
            Defaults to `1000`.
        use_fonts: add the font-rendered glyph classes (needs the Debian font
            packages, see `glyphs`). Defaults to `True`.
        augment: augment every epoch (`augment.augment`). Defaults to `True`.
        seed: seed of the split, initialization, augmentation and shuffling.
            Defaults to `0`.
        output: where to save the backbone weights. Defaults to the shipped
            `kerastransfer/demo/data/digits_cnn.weights.h5`.
        max_train: use only this many (shuffled) training images, for quick
            checks. Defaults to `None` (all).
        verbose: verbosity passed to `fit`. Defaults to `0`.

    Returns:
        A dict: `val_accuracy` (held-out MNIST digits, argmax over the digit
        classes), `glyph_val_accuracy` (held-out font faces, all classes; with
        fonts), `train_images`, `num_classes`, `faces` and `seconds`.

    Raises:
        FileNotFoundError: with `use_fonts=True`, if the fonts are missing.

    Example:

    >>> metrics = pretrain(epochs=1, use_fonts=False, max_train=512,
    ...                    output="/tmp/digits_cnn.weights.h5")  # doctest: +SKIP
    """
    import keras
    import numpy as np

    from kerastransfer.demo.augment import augment as augment_images
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError("`epochs` must be a positive integer. "
                         f"Received: epochs={epochs!r}")
    keras.utils.set_random_seed(seed)
    data = _source_data(use_fonts, validation_size, seed)
    x_train, y_train = data["x_train"], data["y_train"]
    if max_train is not None:
        keep = np.random.default_rng(seed).permutation(len(x_train))[:max_train]
        x_train, y_train = x_train[keep], y_train[keep]
    backbone = digits_cnn()
    classifier = keras.Sequential(
        [backbone, keras.layers.Dense(data["num_classes"], activation="softmax",
                                      name="source_head")],
        name="digits_cnn_source_classifier",
    )
    steps = epochs * -(-len(x_train) // batch_size)
    classifier.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed + 1)
    start = time.perf_counter()
    for epoch in range(epochs):
        x_epoch = augment_images(x_train, rng) if augment else x_train
        history = classifier.fit(x_epoch, y_train, batch_size=batch_size,
                                 epochs=epoch + 1, initial_epoch=epoch,
                                 shuffle=True, verbose=verbose)
    # Moving statistics lag the final weights: recompute them on clean images.
    clean = x_train[rng.permutation(len(x_train))[:4096]]
    recalibrate_batchnorm(backbone, clean, layers="all", max_samples=4096,
                          batch_size=256)
    seconds = time.perf_counter() - start
    probabilities = classifier.predict(data["x_val_mnist"], batch_size=256, verbose=0)
    metrics = {
        "train_accuracy": float(history.history["accuracy"][-1]),
        "val_accuracy": float(np.mean(
            probabilities[:, :NUM_CLASSES].argmax(1) == data["y_val_mnist"])),
        "train_images": len(x_train), "num_classes": data["num_classes"],
        "faces": data["faces"], "epochs": epochs, "seconds": seconds,
    }
    if "x_val_glyphs" in data:
        glyph_probs = classifier.predict(data["x_val_glyphs"], batch_size=256,
                                         verbose=0)
        metrics["glyph_val_accuracy"] = float(np.mean(
            glyph_probs.argmax(1) == data["y_val_glyphs"]))
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    from kerastransfer.io import atomic_path

    with atomic_path(output, suffix=".weights.h5") as tmp:
        backbone.save_weights(tmp)
    logger.info("pretrained digits_cnn: %s; saved %s", metrics, output)
    return metrics


def main(argv=None) -> None:
    """Command-line entry point: `python -m kerastransfer.demo.pretrain`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fonts", action="store_true",
                        help="pretrain on the MNIST digits only")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pretrain(epochs=args.epochs, seed=args.seed, use_fonts=not args.no_fonts,
             augment=not args.no_augment, output=args.output, verbose=2)


if __name__ == "__main__":
    main()
