"""Precise BatchNorm statistics ("PreciseBN", Wu & Johnson 2021).

Keras keeps BatchNorm moving statistics as an exponential moving average with
momentum 0.99: they need hundreds of steps to catch up with the weights. Small
fine-tuning sets give few steps per epoch, so after a phase that trained BatchNorm
the moving statistics still describe earlier weights, and inference-mode accuracy
can sit at chance while training accuracy is high (DESIGN.md, fact 2). Recomputing
them once, with the final weights, over a sample of training images fixes that.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

__all__ = ["PreciseBatchNorm", "recalibrate_batchnorm", "trainable_batchnorm_layers"]

logger = logging.getLogger("kerastransfer")


def trainable_batchnorm_layers(model) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers (nested ones included) that are trainable."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def _image_batches(data: Any, batch_size: int, max_samples: int):
    """Yields image batches (labels dropped) from arrays or a dataset."""
    seen = 0
    if isinstance(data, np.ndarray):
        for start in range(0, min(len(data), max_samples), batch_size):
            yield data[start:min(start + batch_size, max_samples)]
        return
    for element in data:
        images = element[0] if isinstance(element, (tuple, list)) else element
        images = np.asarray(images)
        take = min(len(images), max_samples - seen)
        if take <= 0:
            return
        yield images[:take]
        seen += take


def recalibrate_batchnorm(model, data: Any, *, max_samples: int = 1024,
                          batch_size: int = 64) -> int:
    """Recomputes the moving statistics of the *trainable* BatchNorm layers.

    Frozen BatchNorm layers (`trainable=False`) are not touched. The statistics
    become the average, over batches of `data`, of the batch statistics computed
    with the model's current weights (a cumulative average, not an EMA).

    Args:
        model: a `TransferModel` (or any Keras model).
        data: training images as a numpy array, or a dataset of `(images, labels)`
            batches (images as the model takes them).
        max_samples: at most this many images are used. Defaults to `1024`.
        batch_size: batch size for array input. Defaults to `64`.

    Returns:
        The number of images used (0 if there was nothing to recalibrate).

    Example:

    >>> n = recalibrate_batchnorm(model, x_train)  # doctest: +SKIP
    """
    layers = trainable_batchnorm_layers(model)
    if not layers:
        return 0
    saved = [(layer, layer.momentum) for layer in layers]
    used = 0
    try:
        for i, images in enumerate(_image_batches(data, batch_size, max_samples)):
            for layer in layers:  # moving = mean of the batch statistics so far
                layer.momentum = i / (i + 1.0)
            model(images, training=True)
            used += len(images)
    finally:
        for layer, momentum in saved:
            layer.momentum = momentum
    logger.info("Recalibrated %d BatchNorm layers on %d images.", len(layers), used)
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
