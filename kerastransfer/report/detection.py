"""Detection metrics (COCO mAP by pycocotools) and report figures.

`detection_metrics` builds in-memory COCO ground-truth and detection objects
from KerasHub-style targets and predictions and runs the reference
`pycocotools.cocoeval.COCOeval` (bbox): mAP@[.5:.95] (`"map"`, the mean over
the 10 IoU thresholds 0.50, 0.55, ..., 0.95 of the 101-point interpolated AP),
mAP@.5, mAP@.75 and per-class AP@[.5:.95]. COCO's conventions hold: at most
100 detections per image (the highest scores), areas of every size, and a
class without any ground-truth box has no AP (`None` in `per_class_ap`;
its detections are not counted against the mean). pycocotools' progress
prints are suppressed.

`plot_pr_curves` draws the precision-recall curve of each class at one IoU
threshold from COCOeval's interpolated precision array; `draw_detections`
draws true (green) and predicted (red, with label and score) boxes on an
image. Both write their PNG atomically.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from kerastransfer.errors import DataError
from kerastransfer.io import atomic_path

__all__ = ["detection_metrics", "coco_evaluation", "plot_pr_curves",
           "draw_detections", "format_detection_report"]

_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _as_arrays(item, where: str, scores: bool):
    if not isinstance(item, dict) or "boxes" not in item or "labels" not in item \
            or (scores and "scores" not in item):
        keys = "'boxes', 'labels' and 'scores'" if scores else "'boxes' and 'labels'"
        found = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise DataError(f"Each {where} must be a dict with {keys}. Received: "
                        f"{found}")
    boxes = np.asarray(item["boxes"], dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(item["labels"]).reshape(-1).astype(np.int64)
    values = np.asarray(item["scores"], dtype=np.float64).reshape(-1) if scores \
        else np.ones(len(boxes))
    if not len(boxes) == len(labels) == len(values):
        raise DataError(f"A {where} needs one label (and score) per box. Received: "
                        f"{len(boxes)} boxes, {len(labels)} labels, {len(values)} "
                        "scores")
    return boxes, labels, values


def _coco_objects(targets, predictions, num_classes: int):
    """`(ground truth COCO, detections COCO)` built from the dicts."""
    from pycocotools.coco import COCO

    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    images = [{"id": i + 1} for i in range(len(targets))]
    truth, detections = [], []
    for i, (target, prediction) in enumerate(zip(targets, predictions, strict=True)):
        for rows, item, where, scored in ((truth, target, "target", False),
                                          (detections, prediction, "prediction",
                                           True)):
            boxes, labels, scores = _as_arrays(item, where, scored)
            for box, label, score in zip(boxes, labels, scores, strict=True):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                row = {"id": len(rows) + 1, "image_id": i + 1,
                       "category_id": int(label) + 1, "area": w * h, "iscrowd": 0,
                       "bbox": [float(box[0]), float(box[1]), w, h]}
                if scored:
                    row["score"] = float(score)
                rows.append(row)
    labels = {a["category_id"] - 1 for a in truth + detections}
    if labels and not (min(labels) >= 0 and max(labels) < num_classes):
        raise DataError(f"Labels must be in [0, {num_classes}) (one per class "
                        f"name). Received: labels {sorted(labels)}")
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth, results = COCO(), COCO()
        ground_truth.dataset = {"images": images, "categories": categories,
                                "annotations": truth}
        # Built like COCO.loadRes, which cannot take an empty result list.
        results.dataset = {"images": images, "categories": categories,
                           "annotations": detections}
        ground_truth.createIndex()
        results.createIndex()
    return ground_truth, results


def coco_evaluation(targets: Sequence[dict], predictions: Sequence[dict],
                    num_classes: int):
    """Runs COCOeval (bbox) and returns it, evaluated and accumulated.

    Args:
        targets: one `{"boxes", "labels"}` dict per image (xyxy pixels).
        predictions: one `{"boxes", "labels", "scores"}` dict per image.
        num_classes: the number of classes (category `k + 1` is label `k`).

    Returns:
        A `pycocotools.cocoeval.COCOeval` after `evaluate()`,
        `accumulate()` and `summarize()` (its `stats` and `eval["precision"]`
        `[T, R, K, A, M]` are filled).

    Raises:
        DataError: targets and predictions of different lengths or malformed.
    """
    from pycocotools.cocoeval import COCOeval

    targets, predictions = list(targets), list(predictions)
    if len(targets) != len(predictions):
        raise DataError("targets and predictions must have one entry per image. "
                        f"Received: {len(targets)} targets, {len(predictions)} "
                        "predictions")
    ground_truth, results = _coco_objects(targets, predictions, num_classes)
    evaluator = COCOeval(ground_truth, results, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _mean_valid(values) -> float | None:
    values = np.asarray(values)
    values = values[values > -1]  # -1: no ground truth (COCOeval's marker)
    return float(values.mean()) if values.size else None


def _num_classes(targets, predictions, class_names):
    if class_names is not None:
        return len(class_names), [str(n) for n in class_names]
    labels = [int(np.max(item["labels"])) for item in [*targets, *predictions]
              if isinstance(item, dict) and len(np.asarray(item.get("labels", [])))]
    count = max(labels, default=0) + 1
    return count, [str(k) for k in range(count)]


def detection_metrics(targets: Sequence[dict], predictions: Sequence[dict],
                      class_names: Sequence[str] | None = None) -> dict:
    """COCO mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP, by pycocotools.

    Args:
        targets: one `{"boxes": (k, 4) xyxy, "labels": (k,)}` per image.
        predictions: one `{"boxes", "labels", "scores"}` per image, in the
            same pixels as the targets.
        class_names: names in label order. Defaults to `None` (`"0"`,
            `"1"`, ... up to the largest label).

    Returns:
        `{"map", "map50", "map75", "per_class_ap": {name: AP@[.5:.95] or
        None}}`; `None` marks a class without ground truth (and `"map"` etc.
        are `None` when no class has any).

    Raises:
        DataError: malformed or mismatched targets/predictions, a label
            outside `class_names`.

    Example:

    >>> truth = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> found = [{"boxes": [[0, 0, 10, 10]], "labels": [0], "scores": [0.9]}]
    >>> round(detection_metrics(truth, found)["map"], 6)  # COCOeval's eps
    1.0
    """
    num_classes, names = _num_classes(targets, predictions, class_names)
    evaluator = coco_evaluation(targets, predictions, num_classes)
    # precision: [IoU threshold, recall point, class, area range, max dets];
    # area "all" is index 0 and 100 detections the last max-dets index.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    iou = evaluator.params.iouThrs

    def at(threshold):
        return _mean_valid(precision[np.argmin(np.abs(iou - threshold))])

    return {"map": _mean_valid(precision), "map50": at(0.5), "map75": at(0.75),
            "per_class_ap": {name: _mean_valid(precision[:, :, k])
                             for k, name in enumerate(names)}}


def format_detection_report(metrics: dict) -> str:
    """The mAP lines and the per-class AP table as text."""
    def text(value):
        return "  n/a" if value is None else f"{value:.3f}"

    width = max([len("class"), *map(len, metrics["per_class_ap"])])
    lines = [f"{'class':>{width}}  AP@[.5:.95]"]
    lines += [f"{name:>{width}}  {text(ap)}"
              for name, ap in metrics["per_class_ap"].items()]
    lines += ["", f"mAP@[.5:.95] {text(metrics['map'])}",
              f"mAP@.5       {text(metrics['map50'])}",
              f"mAP@.75      {text(metrics['map75'])}"]
    return "\n".join(lines) + "\n"


def plot_pr_curves(targets: Sequence[dict], predictions: Sequence[dict], path: str,
                   *, class_names: Sequence[str] | None = None,
                   iou_threshold: float = 0.5) -> str:
    """Writes the precision-recall curve of every class at one IoU as a PNG.

    The curves are COCOeval's interpolated precision at its 101 recall points
    (the numbers whose mean is the AP), one panel per class, the AP in the
    title; a class without ground truth gets an empty panel marked so.

    Args:
        targets, predictions: as for `detection_metrics`.
        path: the PNG to write (atomically).
        class_names: names in label order. Defaults to `None`.
        iou_threshold: one of 0.5, 0.55, ..., 0.95. Defaults to `0.5`.

    Returns:
        `path`.

    Raises:
        ValueError: an `iou_threshold` COCOeval does not evaluate.
    """
    if not np.any(np.isclose(_IOU_THRESHOLDS, iou_threshold)):
        raise ValueError("iou_threshold must be one of COCO's thresholds 0.5, 0.55, "
                         f"..., 0.95. Received: iou_threshold={iou_threshold!r}")
    from kerastransfer.report.plots import pyplot, save_figure

    plt = pyplot()
    num_classes, names = _num_classes(targets, predictions, class_names)
    evaluator = coco_evaluation(targets, predictions, num_classes)
    t = int(np.argmin(np.abs(evaluator.params.iouThrs - iou_threshold)))
    recall = evaluator.params.recThrs
    columns = min(4, num_classes)
    rows = -(-num_classes // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.6 * rows),
                                squeeze=False)
    for k in range(rows * columns):
        axis = axes[k // columns][k % columns]
        if k >= num_classes:
            axis.set_axis_off()
            continue
        curve = evaluator.eval["precision"][t, :, k, 0, -1]
        if np.all(curve < 0):
            axis.set_title(f"{names[k]}: no ground truth", fontsize=9)
        else:
            axis.plot(recall, curve, color="tab:blue")
            axis.set_title(f"{names[k]}: AP@{iou_threshold:g} {curve.mean():.3f}",
                           fontsize=9)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("recall", fontsize=8)
        axis.set_ylabel("precision", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path, dpi=80)


def draw_detections(image, prediction: dict | None, target: dict | None, path: str,
                    *, class_names: Sequence[str] | None = None,
                    score_threshold: float = 0.0, scale: int = 1) -> str:
    """Writes an image with its true (green) and predicted (red) boxes as a PNG.

    Args:
        image: `(H, W, 3)` or `(H, W, 1)` pixel values 0-255.
        prediction: `{"boxes", "labels", "scores"}` or `None`.
        target: `{"boxes", "labels"}` or `None`.
        path: the PNG to write (atomically).
        class_names: names in label order for the captions. Defaults to `None`
            (label numbers).
        score_threshold: predictions scored below are not drawn. Defaults to
            `0.0`.
        scale: integer upscaling of small images (nearest) so captions fit.
            Defaults to `1`.

    Returns:
        `path`.
    """
    from PIL import Image, ImageDraw

    array = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    picture = Image.fromarray(array).convert("RGB")
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    draw = ImageDraw.Draw(picture)

    def name(label):
        label = int(label)
        return class_names[label] if class_names is not None else str(label)

    if target is not None:
        boxes, labels, _ = _as_arrays(target, "target", False)
        for box, label in zip(boxes, labels, strict=True):
            draw.rectangle(list(box * scale), outline=(0, 200, 0), width=1)
            draw.text((box[0] * scale + 1, box[3] * scale - 11), name(label),
                      fill=(0, 200, 0))
    if prediction is not None:
        boxes, labels, scores = _as_arrays(prediction, "prediction", True)
        for box, label, score in zip(boxes, labels, scores, strict=True):
            if score < score_threshold:
                continue
            draw.rectangle(list(box * scale), outline=(230, 0, 0), width=1)
            draw.text((box[0] * scale + 1, box[1] * scale + 1),
                      f"{name(label)} {score:.2f}", fill=(230, 0, 0))
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")
    return path
