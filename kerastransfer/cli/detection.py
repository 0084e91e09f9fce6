"""The CLI's detection hooks: `train --task detection` (the hooks of
`cli/tasks.py`), and what `predict`, `evaluate` and `export` do for a
detection model (.keras or .onnx).

A detection DATA is a COCO JSON file (or a folder holding one), a Pascal VOC
folder or a YOLO folder (`--format`; layouts in `load_detection_data`,
docs/detection.md). Images are letterboxed to the model's input for training
(`load_detection_data`) and at prediction (`letterbox_array`), and boxes are
mapped back to each image's own pixels.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import click
import numpy as np

from kerastransfer.cli._common import echo_json, one_line

__all__ = ["check", "load_data", "build_model", "fit_arguments", "describe",
           "open_predictor", "export_sample", "detect_files", "predict_detections",
           "evaluate_detections", "DEFAULT_IMAGE_SIZE"]

logger = logging.getLogger("kerastransfer")

DEFAULT_IMAGE_SIZE = (320, 320)
_EXPORT_SAMPLE = 32


# --- train --task detection (hooks: cli/tasks.py) -----------------------------
def check(options: dict) -> None:
    from kerastransfer.cli.train import _parse_weights
    from kerastransfer.data.detection import DETECTION_FORMATS

    data_format = options.get("format") or "coco"
    if data_format not in DETECTION_FORMATS:
        raise click.BadParameter(
            f"Expected one of {', '.join(DETECTION_FORMATS)}. Received: "
            f"{data_format!r}", param_hint="'--format'")
    options["format"] = data_format
    options["weights"] = _parse_weights(options["weights"])
    options["image_size"] = tuple(options["image_size"] or DEFAULT_IMAGE_SIZE)


def _load(path: str, data_format: str, image_size, **kwargs):
    from kerastransfer.data.detection import load_detection_data
    from kerastransfer.errors import KerasTransferError

    try:
        return load_detection_data(path, format=data_format, image_size=image_size,
                                   **kwargs)
    except (KerasTransferError, ValueError) as error:
        raise click.UsageError(one_line(error)) from None


def load_data(options: dict):
    return _load(options["data_dir"], options["format"], options["image_size"],
                 validation_split=options["validation_split"], seed=options["seed"],
                 strict=options["strict"])


def build_model(options: dict, data):
    from kerastransfer.errors import KerasTransferError
    from kerastransfer.tasks.detector import DetectionModel

    try:
        return DetectionModel(options["backbone"], data.num_classes,
                              weights=options["weights"],
                              input_shape=(*options["image_size"], 3),
                              class_names=data.class_names)
    except KerasTransferError as error:
        raise click.UsageError(one_line(error)) from None


def fit_arguments(options: dict, data):
    return data, {"train_bn": options["train_bn"], "lr_decay": options["lr_decay"],
                  "batch_size": options["batch_size"], "seed": options["seed"],
                  "augmentation": True if options.get("augment") else None}


def describe(options: dict, data, model, history) -> None:
    """The training record (the data set `export` samples to validate on) and
    the saved model's validation COCO mAP."""
    from kerastransfer.cli.record import write_record

    record = {"model": os.path.abspath(options["out"]), "task": "detection",
              "detection_data": os.path.abspath(options["data_dir"]),
              "format": options["format"], "seed": options["seed"],
              "validation_split": options["validation_split"],
              "class_names": list(data.class_names), "phases": history.phases}
    if len(data.validation_images):
        metrics = model.evaluate_detections(data.validation_images,
                                            data.validation_targets)
        record["validation"] = metrics
        click.echo(f"Validation ({len(data.validation_images)} images): "
                   f"mAP@[.5:.95] {_text(metrics['map'])}, "
                   f"mAP@.5 {_text(metrics['map50'])}")
    write_record(options["out"], record)
    click.echo(f"Saved {options['out']}")


def _text(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --- predictors -----------------------------------------------------------------
class _KerasDetectionPredictor:
    """A .keras `DetectionModel` with `DetectionPredictor`'s interface."""

    kind = "detection"

    def __init__(self, model):
        self.model = model
        self.class_names = list(model.class_names)
        self.input_shape = tuple(model.image_shape)

    def predict(self, images, batch_size: int = 32, **thresholds):
        return self.model.predict(images, batch_size=batch_size, **thresholds)

    def predict_raw(self, images, batch_size: int = 32):
        return self.model.predict_raw(images, batch_size=batch_size)


def open_predictor(model_path: str, model: Any = None):
    """The detection predictor of a .keras model, else None (a .onnx detection
    file opens as `DetectionPredictor` through `OnnxPredictor`)."""
    if model is not None and type(model).__name__ == "DetectionModel":
        return _KerasDetectionPredictor(model)
    return None


def export_sample(model_path: str, model, validation_dir: str | None):
    """`(images, description)` `export` validates on: letterboxed images of
    `--validation-dir` (a folder of images), else of the recorded data set."""
    from kerastransfer.cli.record import read_record, record_path
    from kerastransfer.runtime.files import list_image_files
    from kerastransfer.runtime.letterbox import letterbox_array

    size = tuple(model.image_shape[:2])
    if validation_dir is not None:
        files = list_image_files([validation_dir])[:_EXPORT_SAMPLE]
        images = [letterbox_array(_read(path, 3), size)[0] for path in files]
        if not images:
            raise click.BadParameter(f"No image in {validation_dir!r}.",
                                     param_hint="'--validation-dir'")
        return np.stack(images), f"{validation_dir} (--validation-dir)"
    record = read_record(model_path) or {}
    path = record.get("detection_data")
    if not path or not os.path.exists(path):
        return None, None
    data = _load(path, record.get("format", "coco"), size, validation_split=0.0,
                 strict=False)
    return (data.images[:_EXPORT_SAMPLE].astype("float32"),
            f"{path} (the data set in {record_path(model_path)})")


# --- predict and evaluate -------------------------------------------------------
def _read(path: str, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L" if channels == 1 else "RGB"), "float32")


def detect_files(predictor, paths, *, score_threshold: float = 0.05,
                 iou_threshold: float = 0.5, max_detections: int = 100,
                 batch_size: int = 32):
    """Detections of image files, letterboxed as in training; boxes in each
    file's own pixels (clipped to it).

    Returns:
        `(results, images, skipped)`: one `{"path", "height", "width",
        "boxes", "scores", "labels"}` per readable file, the images as read,
        and `[(path, reason)]` of the unreadable ones.
    """
    from kerastransfer.runtime.letterbox import letterbox_array, unletterbox_boxes

    height, width, channels = (int(s) for s in predictor.input_shape)
    results, originals, skipped = [], [], []
    for start in range(0, len(paths), batch_size):
        batch, chunk = [], []
        for path in paths[start:start + batch_size]:
            try:
                image = _read(path, channels)
            except Exception as error:  # noqa: BLE001 - PIL raises many types
                skipped.append((path, f"{type(error).__name__}: {error}"))
                continue
            boxed, letterbox = letterbox_array(image, (height, width))
            batch.append(boxed)
            chunk.append((path, image, letterbox))
        if not batch:
            continue
        predictions = predictor.predict(
            np.stack(batch), score_threshold=score_threshold,
            iou_threshold=iou_threshold, max_detections=max_detections)
        for (path, image, letterbox), prediction in zip(chunk, predictions,
                                                         strict=True):
            h, w = image.shape[:2]
            # `batch` is at the model's size, so `predict` did not letterbox
            # again: the boxes are mapped back here, once.
            boxes = unletterbox_boxes(prediction["boxes"], letterbox, (h, w))
            results.append({"path": path, "height": h, "width": w,
                            "boxes": boxes,
                            "scores": prediction["scores"],
                            "labels": prediction["labels"]})
            originals.append(image)
    return results, originals, skipped


def predict_detections(predictor, paths, out_dir: str | None, *,
                       score_threshold: float, iou_threshold: float,
                       batch_size: int, as_json: bool) -> None:
    """Writes `detections.json` and one annotated PNG per image to `out_dir`
    (default `detections/`)."""
    from kerastransfer.io import atomic_write_text
    from kerastransfer.report.detection import draw_detections
    from kerastransfer.runtime.detection import detections_to_json
    from kerastransfer.runtime.files import list_image_files

    files = list_image_files(list(paths))
    if not files:
        raise click.BadParameter(f"No image files found. Received: {' '.join(paths)}",
                                 param_hint="'IMAGES'")
    out_dir = out_dir or "detections"
    os.makedirs(out_dir, exist_ok=True)
    results, images, skipped = detect_files(
        predictor, files, score_threshold=score_threshold,
        iou_threshold=iou_threshold, batch_size=batch_size)
    for path, reason in skipped:
        click.echo(f"Skipped {path}: {reason}", err=True)
    if not results:
        raise click.ClickException(f"None of the {len(files)} file(s) is a readable "
                                   "image.")
    rows, used = [], set()
    for result, image in zip(results, images, strict=True):
        stem = os.path.splitext(os.path.basename(result["path"]))[0]
        name, k = f"{stem}.png", 1
        while name in used:  # same stem in two folders
            name, k = f"{stem}_{k}.png", k + 1
        used.add(name)
        annotated = draw_detections(image, result, None, os.path.join(out_dir, name),
                                    class_names=predictor.class_names,
                                    scale=max(1, 256 // max(image.shape[:2])))
        rows.append({"path": result["path"], "height": result["height"],
                     "width": result["width"], "annotated": annotated,
                     "detections": detections_to_json(result, predictor.class_names)})
    rows += [{"path": p, "error": reason} for p, reason in skipped]
    summary = os.path.join(out_dir, "detections.json")
    atomic_write_text(summary, json.dumps(rows, indent=2) + "\n")
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        if "error" not in row:
            found = ", ".join(f"{d['class_name']} {d['score']:.2f}"
                              for d in row["detections"]) or "nothing"
            click.echo(f"{row['path']}: {found} -> {row['annotated']}")
    click.echo(f"Wrote {summary}")


def evaluate_detections(predictor, data: str, data_format: str, batch_size: int,
                        as_json: bool, *, score_threshold: float = 0.05,
                        iou_threshold: float = 0.5) -> dict:
    """COCO mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP (pycocotools) of
    `predictor` on every image of a COCO/VOC/YOLO data set (letterboxed as in
    training; classes matched by name)."""
    from kerastransfer.report.detection import (
        detection_metrics,
        format_detection_report,
    )

    names = list(predictor.class_names)
    # COCO and YOLO files name their classes (categories, classes.txt): they
    # are matched to the model's by name. VOC objects are named one by one:
    # the model's names give the label order (an unknown name is a data error).
    known = names if data_format == "voc" else None
    dataset = _load(data, data_format, predictor.input_shape[:2],
                    validation_split=0.0, class_names=known)
    unknown = [c for c in dataset.class_names if c not in names]
    if unknown:
        raise click.BadParameter(
            f"The data set has classes the model does not know: {unknown}. The "
            f"model's classes: {names}. Received: {data!r}", param_hint="'DATA'")
    index = np.asarray([names.index(c) for c in dataset.class_names], "int32")
    targets = [{"boxes": t["boxes"], "labels": index[t["labels"]]}
               for t in dataset.targets]
    images = dataset.images.astype("float32")
    if predictor.input_shape[-1] == 1:
        images = (images @ np.asarray([0.299, 0.587, 0.114], "float32"))[..., None]
    predictions = []
    for start in range(0, len(images), batch_size):
        predictions += predictor.predict(images[start:start + batch_size],
                                         score_threshold=score_threshold,
                                         iou_threshold=iou_threshold)
    metrics = detection_metrics(targets, predictions, names)
    metrics["images"] = len(images)
    if as_json:
        echo_json(metrics)
    else:
        click.echo(f"Images: {len(images)}")
        click.echo(format_detection_report(metrics), nl=False)
    return metrics
