"""The CLI's segmentation hooks: `train --task segmentation` (the hooks of
`cli/tasks.py`), and what `evaluate` and `predict` do for a segmentation model
(.keras or .onnx).

A segmentation DATA_DIR holds `images/` and `masks/` (`docs/segmentation.md`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click
import numpy as np

from kerastransfer.cli._common import echo_json, one_line, usage_errors

__all__ = ["evaluate_segmentation", "predict_segmentation", "open_predictor",
           "open_segmentation_predictor"]

logger = logging.getLogger("kerastransfer")


# --- train --task segmentation (hooks: cli/tasks.py) --------------------------
def check(options: dict) -> None:
    from kerastransfer.cli.train import check_folder_and_weights

    check_folder_and_weights(options)
    options["image_size"] = tuple(options["image_size"] or (224, 224))


def load_data(options: dict):
    from kerastransfer.data.masks import load_segmentation_folder

    with usage_errors():
        return load_segmentation_folder(
            options["data_dir"], image_size=options["image_size"],
            batch_size=options["batch_size"],
            validation_split=options["validation_split"], seed=options["seed"],
            strict=options["strict"])


def build_model(options: dict, data):
    from kerastransfer.tasks.segmenter import SegmentationModel

    with usage_errors():
        return SegmentationModel(options["backbone"], data.num_classes,
                                 weights=options["weights"],
                                 input_shape=(*options["image_size"], 3),
                                 class_names=data.class_names)


def fit_arguments(options: dict, data):
    return data, {"train_bn": options["train_bn"], "lr_decay": options["lr_decay"],
                  "augmentation": "light" if options["augment"] else None}


def describe(options: dict, data, model, history) -> None:
    """The training record (`data_dir`: the images, which `export` samples to
    validate on) and the saved model's validation IoU."""
    from kerastransfer.cli.record import write_record
    from kerastransfer.report.segmentation import segmentation_metrics

    data_dir = os.path.abspath(options["data_dir"])
    record = {"model": os.path.abspath(options["out"]), "task": "segmentation",
              "data_dir": os.path.join(data_dir, "images"),
              "segmentation_dir": data_dir,
              "class_names": data.class_names, "phases": history.phases}
    if data.num_validation:
        # The saved model's metrics (what is printed describes the file).
        metrics = segmentation_metrics(model, (data.x_val, data.y_val))
        record["validation"] = metrics
        click.echo(f"Validation mean IoU {metrics['mean_iou']:.4f}, pixel accuracy "
                   f"{metrics['pixel_accuracy']:.4f}")
    write_record(options["out"], record)
    click.echo(f"Saved {options['out']}")


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


def open_predictor(model_path: str, model: Any = None):
    """The segmentation predictor of a .keras model, else None."""
    if model is not None and type(model).__name__ == "SegmentationModel":
        return _KerasSegmentationPredictor(model)
    return None


open_segmentation_predictor = open_predictor  # the name `predict` used


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
