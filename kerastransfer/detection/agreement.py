"""How far two detectors agree: the share of reference boxes matched by the other.

Used to measure an int8 export against its float32 model (docs/detection.md):
per image and class, reference detections (by descending score) are matched
greedily one-to-one to the other detector's boxes of the same class at IoU >=
`iou_threshold`; the agreement is matched reference boxes / reference boxes.
Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_agreement"]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def box_agreement(reference: list[dict], other: list[dict], *,
                  iou_threshold: float = 0.5) -> float:
    """The share of `reference` boxes that `other` finds (same class, IoU >= t).

    Args:
        reference: detections per image, `{"boxes", "labels", "scores"}` as
            `DetectionModel.predict` returns them (e.g. the float32 model's).
        other: the same images' detections by the other model (e.g. int8).
        iou_threshold: the IoU a match needs. Defaults to `0.5`.

    Returns:
        A float in [0, 1]; `1.0` when `reference` holds no box.

    Raises:
        ValueError: the two lists cover different numbers of images.

    Example:

    >>> import numpy as np
    >>> a = [{"boxes": np.asarray([[0, 0, 10, 10]]), "labels": np.asarray([1]),
    ...       "scores": np.asarray([0.9])}]
    >>> box_agreement(a, a)
    1.0
    """
    if len(reference) != len(other):
        raise ValueError("Pass the detections of the same images to both. "
                         f"Received: {len(reference)} and {len(other)} images")
    total = matched = 0
    for ref, cand in zip(reference, other, strict=True):
        ref_boxes = np.asarray(ref["boxes"], "float64").reshape(-1, 4)
        cand_boxes = np.asarray(cand["boxes"], "float64").reshape(-1, 4)
        ref_labels = np.asarray(ref["labels"]).reshape(-1)
        cand_labels = np.asarray(cand["labels"]).reshape(-1)
        order = np.argsort(-np.asarray(ref.get("scores", np.zeros(len(ref_boxes)))),
                           kind="stable")
        free = np.ones(len(cand_boxes), bool)
        for i in order:
            total += 1
            candidates = np.flatnonzero(free & (cand_labels == ref_labels[i]))
            if not len(candidates):
                continue
            overlap = _iou(ref_boxes[i], cand_boxes[candidates])
            best = int(np.argmax(overlap))
            if overlap[best] >= iou_threshold:
                matched += 1
                free[candidates[best]] = False
    return 1.0 if total == 0 else matched / total
