"""The CLI's segmentation commands: `train --task segmentation`, and what
`evaluate` and `predict` do for a segmentation model (.keras or .onnx).

A segmentation DATA_DIR holds `images/` and `masks/` (`docs/segmentation.md`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import click
import numpy as np

from kerastransfer.cli._common import echo_json, is_quiet, one_line

__all__ = ["train_segmentation", "evaluate_segmentation", "predict_segmentation",
           "open_segmentation_predictor"]

logger = logging.getLogger("kerastransfer")


def train_segmentation(*, data_dir: str, backbone: str, weights, image_size,
                       batch_size: int, epochs: int, fine_tune_epochs: int,
                       learning_rate, fine_tune_lr, unfreeze: str, train_bn: bool,
                       lr_decay, validation_split: float, seed: int, out: str,
                       plots, checkpoint_dir, strict: bool, augment: bool) -> None:
    """`kerastransfer train DATA_DIR --task segmentation`."""
    import keras

    from kerastransfer.data.masks import load_segmentation_folder
    from kerastransfer.errors import KerasTransferError
    from kerastransfer.io import atomic_write_text
    from kerastransfer.report.segmentation import segmentation_metrics
    from kerastransfer.tasks.segmenter import SegmentationModel

    keras.utils.set_random_seed(seed)
    try:
        size = tuple(image_size) if image_size else (224, 224)
        data = load_segmentation_folder(
            data_dir, image_size=size, batch_size=batch_size,
            validation_split=validation_split, seed=seed, strict=strict)
        model = SegmentationModel(backbone, data.num_classes, weights=weights,
                                  input_shape=(*size, 3),
                                  class_names=data.class_names)
    except KerasTransferError as error:
        raise click.UsageError(one_line(error)) from None
    history = model.fit(
        data, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate, fine_tune_lr=fine_tune_lr, unfreeze=unfreeze,
        train_bn=train_bn, lr_decay=lr_decay, checkpoint_dir=checkpoint_dir,
        report_dir=plots, augmentation="light" if augment else None,
        verbose=0 if is_quiet() else 2)
    model.save(out)
    # "data_dir": the images, which `export` samples to validate on.
    record = {"model": os.path.abspath(out), "task": "segmentation",
              "data_dir": os.path.join(os.path.abspath(data_dir), "images"),
              "segmentation_dir": os.path.abspath(data_dir),
              "class_names": data.class_names, "phases": history.phases}
    if data.num_validation:
        # The saved model's metrics (what is printed describes the file).
        metrics = segmentation_metrics(model, (data.x_val, data.y_val))
        record["validation"] = metrics
        click.echo(f"Validation mean IoU {metrics['mean_iou']:.4f}, pixel accuracy "
                   f"{metrics['pixel_accuracy']:.4f}")
    atomic_write_text(os.path.splitext(out)[0] + ".train.json",
                      json.dumps(record, indent=2, default=str) + "\n")
    click.echo(f"Saved {out}")


class _KerasSegmentationPredictor:
    """`predict_masks` of a .keras `SegmentationModel`, like the ONNX predictor's."""

    kind = "segmentation"

    def __init__(self, model):
        self.model = model
        self.class_names = list(model.class_names)
        self.input_shape = tuple(model.image_shape)
        self.task = model.task

    def predict(self, images, batch_size: int = 32):
        from kerastransfer.runtime.segmentation import resize_images

        if isinstance(images, (list, tuple)) or np.shape(images)[1:3] != \
                self.input_shape[:2]:
            images = resize_images(list(images), self.input_shape[:2])
        return self.model.predict(np.asarray(images), batch_size=batch_size,
                                  verbose=0)

    def predict_masks(self, images, batch_size: int = 32):
        from kerastransfer.runtime.segmentation import resize_masks

        sizes = [np.shape(image)[:2] for image in images]
        probabilities = self.predict(images, batch_size)
        return [resize_masks(p.argmax(-1), s).astype("int64")
                for p, s in zip(probabilities, sizes, strict=True)]


def open_segmentation_predictor(model_path: str, model: Any = None):
    """The segmentation predictor of a .keras model, else None."""
    if model is not None and type(model).__name__ == "SegmentationModel":
        return _KerasSegmentationPredictor(model)
    return None


def evaluate_segmentation(predictor, data_dir: str, batch_size: int,
                          as_json: bool) -> None:
    """Mean IoU and per-class IoU/Dice of `predictor` on DATA_DIR's pairs."""
    from types import SimpleNamespace

    from kerastransfer.data.masks import load_segmentation_folder
    from kerastransfer.errors import DataError
    from kerastransfer.report.segmentation import (
        format_segmentation_report,
        segmentation_metrics,
    )

    try:
        data = load_segmentation_folder(
            data_dir, image_size=predictor.input_shape[:2], batch_size=batch_size,
            num_classes=len(predictor.class_names), shuffle=False)
    except DataError as error:
        raise click.BadParameter(one_line(error), param_hint="'DATA'") from None
    owner = SimpleNamespace(num_classes=len(predictor.class_names),
                            class_names=predictor.class_names)
    metrics = segmentation_metrics(
        owner, (data.x_train, data.y_train),
        predict=lambda images: predictor.predict(images, batch_size=batch_size))
    if as_json:
        echo_json(metrics)
    else:
        click.echo(f"Images: {data.num_train}")
        click.echo(format_segmentation_report(metrics), nl=False)


def predict_segmentation(predictor, paths, masks_dir: str | None,
                         as_json: bool) -> None:
    """Writes one mask PNG per image (`masks_dir`, default `masks/`)."""
    from kerastransfer.io import atomic_write_bytes
    from kerastransfer.runtime.files import list_image_files
    from kerastransfer.runtime.segmentation import mask_to_png

    masks_dir = masks_dir or "masks"
    os.makedirs(masks_dir, exist_ok=True)
    files = list_image_files(list(paths))
    from PIL import Image

    results = []
    for path in files:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype="float32")
        except Exception as error:  # noqa: BLE001 - PIL raises many types
            click.echo(f"Skipped {path}: {type(error).__name__}: {error}", err=True)
            continue
        mask = predictor.predict_masks([array])[0]
        stem = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(masks_dir, f"{stem}.png")
        atomic_write_bytes(target, mask_to_png(mask))
        counts = np.bincount(mask.ravel(), minlength=len(predictor.class_names))
        results.append({"path": path, "mask_path": target,
                        "class_pixels": dict(zip(predictor.class_names,
                                                 map(int, counts), strict=False))})
    if not results:
        raise click.ClickException("No image could be read.")
    if as_json:
        echo_json(results)
    else:
        for row in results:
            click.echo(f"{row['path']} -> {row['mask_path']}")
