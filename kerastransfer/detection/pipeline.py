"""What `DetectionModel.fit` feeds Keras: checked images, encoded targets, and
an augmenting `keras.utils.PyDataset`; plus the training report.

Without augmentation the targets are encoded once (numpy) and the images and
the dense target array go to the shared phased `fit()` as arrays (so
checkpointing's seeded per-epoch order and feature caching apply unchanged).
With augmentation, `DetectionSequence` augments each image with its boxes
(`kerastransfer.data.detection_augment.augment_detection`) and encodes the
moved boxes per batch, in an order and with random draws fixed by
`(seed, epoch)`: a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np

from kerastransfer.detection.targets import check_target_structure
from kerastransfer.training.data_order import EpochSetter

__all__ = ["unpack", "DetectionSequence", "augmented_sequence", "write_report"]


def _check_images(model, images, what: str = "images") -> np.ndarray:
    images = np.asarray(images)
    shape = tuple(model.image_shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"Training {what} must be (n, {shape[0]}, {shape[1]}, {shape[2]}), the "
            "model's input size, with boxes in those pixels. Letterbox them first "
            "(kerastransfer.load_detection_data(..., image_size=...) does). "
            f"Received: {what}.shape={images.shape}")
    return images


def _check_targets(model, images, targets, what: str = "targets") -> list[dict]:
    from kerastransfer.data.detection import check_detection_targets

    if targets is None:
        raise ValueError(
            f"Pass the {what}: one dict per image, "
            '{"boxes": (k, 4) xyxy pixels, "labels": (k,) ints}. '
            f"Received: {what}=None")
    targets = check_target_structure(targets, count=len(images))
    return check_detection_targets(targets, model.num_classes,
                                   tuple(model.image_shape[:2]))


def unpack(model, x, y, validation_data) -> tuple:
    """Checked `(images, targets, validation_data)` from what `fit` was given
    (arrays and target lists, or a `DetectionData`)."""
    if hasattr(x, "images") and hasattr(x, "targets") and hasattr(x, "class_names"):
        names = list(x.class_names)
        if len(names) != model.num_classes:
            raise ValueError(
                f"The data has {len(names)} classes but the model has "
                f"num_classes={model.num_classes}. Build the model with "
                f"class_names=data.class_names. Received: class_names={names}")
        if validation_data is None and len(x.validation_images):
            validation_data = (x.validation_images, x.validation_targets)
        x, y = x.images, x.targets
    images = _check_images(model, x)
    targets = _check_targets(model, images, y)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                "validation_data must be (images, targets). Received: "
                f"validation_data of type {type(validation_data).__name__}")
        val_images = _check_images(model, validation_data[0], "validation images")
        validation_data = (val_images, _check_targets(
            model, val_images, validation_data[1], "validation targets"))
    return images, targets, validation_data


class DetectionSequence(keras.utils.PyDataset):
    """Augmented, encoded batches in an order drawn from `(seed, epoch)`.

    Args:
        model: the `DetectionModel` (its `encode`).
        images: `(n, h, w, c)` images at the model's size.
        targets: checked targets, one per image.
        augment: keyword arguments of `augment_detection`.
        batch_size: images per batch. Defaults to `32`.
        seed: base seed of the order and the augmentation. Defaults to `0`.
        shuffle: reorder every epoch. Defaults to `True`.
    """

    def __init__(self, model, images, targets, augment: dict, batch_size: int = 32,
                 seed: int = 0, shuffle: bool = True):
        super().__init__()
        self.model, self.images, self.targets = model, images, targets
        self.augment = dict(augment)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), shuffle
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        n = len(self.images)
        self.order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                      if self.shuffle else np.arange(n))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        from kerastransfer.data.detection_augment import augment_detection

        if not 0 <= index < len(self):
            raise IndexError(index)
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images, targets = [], []
        for row in rows:
            rng = np.random.default_rng([self.seed, self.epoch, int(row)])
            target = self.targets[row]
            image, boxes, labels = augment_detection(
                self.images[row], target["boxes"], target["labels"], rng,
                **self.augment)
            images.append(np.asarray(image, "float32"))
            targets.append({"boxes": boxes, "labels": labels})
        return np.stack(images), self.model.encode(targets)

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]


def augmented_sequence(model, images, targets, augmentation: Any, *,
                       batch_size=None, seed: int = 0, shuffle: bool = True):
    """`(sequence, None, [callbacks])` for `fit` with augmentation.

    Raises:
        TypeError: `augmentation` is not `True` or a dict of
            `augment_detection` arguments.
    """
    if augmentation is True:
        augment = {}
    elif isinstance(augmentation, dict):
        augment = augmentation
    else:
        raise TypeError(
            "A detection model takes augmentation=True (flip, zoom 0.75-1.25, "
            "crop) or a dict of augment_detection arguments (boxes move with "
            "the image). Received: augmentation="
            f"{augmentation!r}")
    sequence = DetectionSequence(model, images, targets, augment,
                                 batch_size=batch_size or 32, seed=seed,
                                 shuffle=shuffle is not False)
    return sequence, None, [EpochSetter(sequence)]


def write_report(model, history, validation_data, report_dir: str,
                 examples: int = 4) -> dict[str, str]:
    """Learning curves, COCO metrics (`metrics.json`), precision-recall curves
    and a few validation images with predicted and true boxes."""
    import json

    from kerastransfer.io import atomic_write_text
    from kerastransfer.report.detection import (
        detection_metrics,
        draw_detections,
        plot_pr_curves,
    )
    from kerastransfer.report.plots import plot_learning_curves

    os.makedirs(report_dir, exist_ok=True)
    written = {}
    if history is not None and history.epoch:
        written["learning_curves"] = plot_learning_curves(
            history, os.path.join(report_dir, "learning_curves.png"))
    if validation_data is None:
        return written
    images, targets = validation_data
    predictions = model.predict(images)
    metrics = detection_metrics(targets, predictions, model.class_names)
    path = os.path.join(report_dir, "metrics.json")
    atomic_write_text(path, json.dumps({"task": "detection", **metrics}, indent=2))
    written["metrics"] = path
    written["pr_curves"] = plot_pr_curves(
        targets, predictions, os.path.join(report_dir, "pr_curves.png"),
        class_names=model.class_names)
    for i in range(min(examples, len(images))):
        written[f"example_{i}"] = draw_detections(
            images[i], predictions[i], targets[i],
            os.path.join(report_dir, f"detections_{i}.png"),
            class_names=model.class_names, score_threshold=0.3)
    return written
