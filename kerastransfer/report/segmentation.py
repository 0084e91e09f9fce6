"""Segmentation metrics and report files: per-class IoU/Dice, overlays.

`segmentation_metrics` accumulates Keras's own metrics over a data set: one
`keras.metrics.MeanIoU` and one `keras.metrics.IoU` per class (Dice is derived
from IoU: `2 IoU / (1 + IoU)`), plus pixel accuracy. `write_segmentation_report`
(the training report's segmentation part, called through
`SegmentationModel.report_validation`) writes them as `segmentation_report.txt`
and into `metrics.json`, and `overlays.png`: a few validation images with the
ground truth and the prediction side by side.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kerastransfer.errors import DataError
from kerastransfer.io import atomic_write_text

__all__ = ["segmentation_metrics", "format_segmentation_report",
           "write_segmentation_report", "plot_overlays"]


def _batches(data, batch_size: int = 16):
    if hasattr(data, "element_spec"):
        for element in data:
            yield np.asarray(element[0]), np.asarray(element[1])
        return
    if isinstance(data, (tuple, list)) and len(data) >= 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    raise DataError("Segmentation data must be (images, masks) or a tf.data.Dataset "
                    f"of such batches. Received: {type(data).__name__}")


def segmentation_metrics(model: Any, data: Any, *, predict=None) -> dict:
    """Mean IoU, per-class IoU and Dice, pixel accuracy of `model` on `data`.

    Args:
        model: a multiclass `SegmentationModel` (for `num_classes`,
            `class_names`; and to predict unless `predict` is given).
        data: `(images, masks)` arrays or a dataset of such batches.
        predict: `images -> probabilities (n, h, w, classes)`, e.g. an
            `OnnxPredictor`'s `predict`. Defaults to the Keras model.

    Returns:
        `{"mean_iou", "pixel_accuracy", "per_class": {name: {"iou", "dice",
        "pixels"}}}`.
    """
    import keras

    num_classes = int(model.num_classes)
    names = list(model.class_names)
    mean_iou = keras.metrics.MeanIoU(num_classes, sparse_y_pred=False)
    per_class = [keras.metrics.IoU(num_classes, [i], sparse_y_pred=False)
                 for i in range(num_classes)]
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    pixels = np.zeros(num_classes, dtype=np.int64)
    if predict is None:
        def predict(images):
            return np.asarray(model(images, training=False))
    for images, masks in _batches(data):
        probabilities = predict(images)
        masks = masks[..., 0] if masks.ndim == 4 else masks
        for metric in (mean_iou, *per_class, accuracy):
            metric.update_state(masks, probabilities)
        pixels += np.bincount(masks.astype(np.int64).ravel(), minlength=num_classes)
    ious = [float(m.result()) for m in per_class]
    return {
        "mean_iou": float(mean_iou.result()),
        "pixel_accuracy": float(accuracy.result()),
        "per_class": {name: {"iou": iou, "dice": 2 * iou / (1 + iou) if iou else 0.0,
                             "pixels": int(count)}
                      for name, iou, count in zip(names, ious, pixels, strict=True)},
    }


def format_segmentation_report(metrics: dict) -> str:
    """The per-class IoU/Dice table as text."""
    width = max([len("class"), *map(len, metrics["per_class"])])
    lines = [f"{'class':>{width}}    IoU   Dice    pixels"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:>{width}}  {row['iou']:.3f}  {row['dice']:.3f}  "
                     f"{row['pixels']:>8d}")
    lines.append("")
    lines.append(f"{'mean IoU':>{width}}  {metrics['mean_iou']:.3f}")
    lines.append(f"{'pixel accuracy':>{width}}  {metrics['pixel_accuracy']:.3f}")
    return "\n".join(lines) + "\n"


def plot_overlays(images, masks, predictions, path: str, num_classes: int,
                  count: int = 4) -> str:
    """Image | ground truth | prediction, one row per image, as a PNG."""
    from kerastransfer.report.plots import pyplot, save_figure

    plt = pyplot()
    count = min(count, len(images))
    figure, axes = plt.subplots(count, 3, figsize=(6, 2 * count), squeeze=False)
    for row in range(count):
        panels = (np.clip(images[row], 0, 255).astype("uint8"), masks[row],
                  predictions[row])
        for col, (panel, title) in enumerate(zip(
                panels, ("image", "truth", "prediction"), strict=True)):
            axis = axes[row][col]
            if col:
                axis.imshow(panel, cmap="tab20", vmin=0, vmax=max(1, num_classes - 1),
                            interpolation="nearest")
            else:
                axis.imshow(panel)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(title)
    figure.tight_layout()
    return save_figure(figure, path, dpi=80)


def write_segmentation_report(model: Any, validation_data: Any, report_dir: str,
                              summary: dict) -> dict[str, str]:
    """Writes the per-class table and overlays; adds the metrics to `summary`."""
    written = {}
    if model.task != "multiclass":
        return written
    metrics = segmentation_metrics(model, validation_data)
    summary.update(metrics)
    path = os.path.join(report_dir, "segmentation_report.txt")
    atomic_write_text(path, format_segmentation_report(metrics))
    written["segmentation_report"] = path
    images, masks = next(_batches(validation_data))
    predictions = np.asarray(model(images[:4], training=False)).argmax(axis=-1)
    written["overlays"] = plot_overlays(
        images[:4], masks[:4], predictions, os.path.join(report_dir, "overlays.png"),
        model.num_classes)
    return written
