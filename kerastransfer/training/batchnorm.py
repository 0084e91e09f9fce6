"""Precise BatchNorm statistics ("PreciseBN", Wu & Johnson 2021).

Keras keeps BatchNorm moving statistics as an exponential moving average with
momentum 0.99: they need hundreds of steps to catch up with the weights. Small
fine-tuning sets give few steps per epoch, so after a phase that trained BatchNorm
the moving statistics still describe earlier weights, and inference-mode accuracy
can sit at chance while training accuracy is high (docs/design.md, fact 2).
Recomputing them once, with the final weights, over a sample of training images
fixes that.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

__all__ = ["PreciseBatchNorm", "recalibrate_batchnorm", "batchnorm_layers"]

logger = logging.getLogger("kerastransfer")

SELECTIONS = ("trainable", "backbone", "all")


def batchnorm_layers(model, which: str = "trainable"):
    """The BatchNormalization layers of `model` (nested ones included).

    Args:
        model: a task or any Keras model.
        which: `"trainable"` (only trainable ones: what a phase trains),
            `"backbone"` (every one in `model.backbone`) or `"all"`. Defaults to
            `"trainable"`.

    Returns:
        A list of `keras.layers.BatchNormalization`.
    """
    from kerastransfer.training.phases import iter_layers

    if which not in SELECTIONS:
        raise ValueError(
            f"which must be one of {SELECTIONS}. Received: which={which!r}")
    root = model.backbone if which == "backbone" else model
    found = [layer for layer in iter_layers(root, include_self=False)
             if isinstance(layer, keras.layers.BatchNormalization)]
    return [layer for layer in found if layer.trainable] if which == "trainable" \
        else found


def recalibrate_batchnorm(model, data: Any, *, layers: str = "trainable",
                          max_samples: int = 1024, batch_size: int = 64) -> int:
    """Recomputes BatchNorm moving statistics with the model's current weights.

    The statistics become the average, over batches of `data`, of the batch
    statistics (a cumulative average, not an EMA). The one copy of this in the
    package: precise BN after a phase that trained BatchNorm, AdaBN
    (`TransferTask.adapt`), checking exports of random-weight models, and the
    demo's pretraining all call it. No trainable weight changes.

    Args:
        model: a task (`TransferModel`, ...) or any Keras model.
        data: images as the model takes them: an array, a `tf.data.Dataset` of
            images or `(images, labels)` batches, or an `ImageData`.
        layers: which BatchNorm layers (`batchnorm_layers`): `"trainable"`
            (frozen ones are not touched), `"backbone"` or `"all"`. Defaults to
            `"trainable"`.
        max_samples: at most this many images are used. Defaults to `1024`.
        batch_size: batch size for array input. Defaults to `64`.

    Returns:
        The number of images used (0 if there was nothing to recalibrate).

    Example:

    >>> n = recalibrate_batchnorm(model, x_train)  # doctest: +SKIP
    """
    from kerastransfer.data import images_only

    selected = batchnorm_layers(model, layers)
    if not selected:
        return 0
    chosen = {id(layer) for layer in selected}
    # Frozen BatchNorm runs in inference mode (Keras 3): make the selected ones
    # trainable for the pass; others keep their statistics (momentum 1).
    others = [layer for layer in batchnorm_layers(model, "all")
              if id(layer) not in chosen and layer.trainable]
    saved = [(layer, layer.momentum, layer.trainable) for layer in selected + others]
    used = 0
    try:
        for layer in selected:
            layer.trainable = True
        for layer in others:
            layer.momentum = 1.0
        batches = images_only(data, batch_size=batch_size, max_samples=max_samples)
        for i, images in enumerate(batches):
            for layer in selected:  # moving = mean of the batch statistics so far
                layer.momentum = i / (i + 1.0)
            model(images, training=True)
            used += len(images)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum = momentum
            layer.trainable = trainable
    logger.info("Recalibrated %d BatchNorm layers on %d images.", len(selected), used)
    return used


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recalibrates trainable BatchNorm statistics before every validation.

    Keras validates at the end of each epoch with the moving statistics; after few
    steps they lag the weights, so the validation curve would show an accuracy the
    model does not have. Recalibrating changes no trainable weight, and training
    itself uses batch statistics, so it does not change what the model learns.

    Args:
        data: training images (array or dataset of `(images, labels)` batches).
        max_samples: images used per recalibration. Defaults to `1024`.
    """

    def __init__(self, data: Any, max_samples: int = 1024):
        super().__init__()
        self.data = data
        self.max_samples = max_samples

    def on_test_begin(self, logs=None):
        recalibrate_batchnorm(self.model, self.data, max_samples=self.max_samples)
