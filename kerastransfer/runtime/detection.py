"""Detection decoding in numpy, and `DetectionPredictor` (onnxruntime, no TensorFlow).

A `DetectionModel` (and its ONNX export) outputs, per image, one row per
location: `num_classes` class logits, the box `x1, y1, x2, y2` in the model's
input pixels (already decoded from the FCOS distances inside the graph: a
constant grid plus `softplus * stride`, exact in ONNX) and a centerness logit.
`decode_detections` turns that into detections — the ONE implementation used
by both `DetectionModel.predict` (Keras) and `DetectionPredictor` (ONNX), so
their agreement reduces to the raw outputs' agreement, and the thresholds are
arguments of every call (no re-export to change them):

1. score of (location, class) = `sqrt(sigmoid(class logit) *
   sigmoid(centerness logit))` (FCOS ranks by class probability times
   centerness; the square root keeps the score on the probability's scale so
   `score_threshold` reads like one), kept above `score_threshold`, the best
   `pre_nms_top_k` of them;
2. boxes clipped to the input, then greedy non-maximum suppression per class
   (a box suppresses lower-scored boxes of its class with IoU >
   `iou_threshold`), ties broken by position (stable sort: deterministic);
3. the best `max_detections`, by descending score, mapped from the model's
   input to each image's own pixels and clipped to it. Images of another size
   are letterboxed before the model exactly as `load_detection_data`
   letterboxes training images (`kerastransfer.runtime.letterbox`: aspect
   ratio kept, bilinear, centred on gray 114), so a model predicts on an
   image of any size as it was trained, and the boxes are mapped back by
   `(box - pad) / scale`; the letterbox of an image follows from its size
   alone, so `image_sizes` is all the decoding needs. Images already at the
   input size are not touched (scale 1, no padding).

Why the decoding is not inside the ONNX graph: the thresholds would be frozen
into the file and ONNX `NonMaxSuppression` returns a variable number of boxes
that tf2onnx produces only from TensorFlow's NMS ops, which a Keras functional
model does not contain; the numpy decoding is ~100 lines and shared, so parity
is exact by construction once the head outputs agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.runtime.images import OnnxPredictor
from kerastransfer.runtime.letterbox import (
    letterbox_array,
    letterbox_geometry,
    unletterbox_boxes,
)

__all__ = ["DetectionPredictor", "decode_detections", "nms", "prepare_images",
           "detections_to_json", "check_decoding_args"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float64")
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def check_decoding_args(score_threshold: float, iou_threshold: float,
                        max_detections: int) -> None:
    """Raises `ValueError` for thresholds outside [0, 1] or a bad count."""
    for name, value in (("score_threshold", score_threshold),
                        ("iou_threshold", iou_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= float(value) <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1]. "
                             f"Received: {name}={value!r}")
    if isinstance(max_detections, bool) or not isinstance(
            max_detections, (int, np.integer)) or max_detections < 1:
        raise ValueError("max_detections must be a positive int. "
                         f"Received: max_detections={max_detections!r}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (one class).

    Args:
        boxes: `(k, 4)` xyxy.
        scores: `(k,)`.
        iou_threshold: suppress boxes overlapping a kept box by more than this.

    Returns:
        Indices of the kept boxes, by descending score (ties: lower index first).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = np.asarray(boxes, dtype="float64")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(
        boxes[:, 3] - boxes[:, 1], 0)
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(boxes[i, 2], boxes[rest, 2])
                       - np.maximum(boxes[i, 0], boxes[rest, 0]), 0)
        h = np.maximum(np.minimum(boxes[i, 3], boxes[rest, 3])
                       - np.maximum(boxes[i, 1], boxes[rest, 1]), 0)
        overlap = w * h
        iou = overlap / np.maximum(areas[i] + areas[rest] - overlap, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype="int64")


def decode_detections(outputs: np.ndarray, num_classes: int, input_size: Sequence[int],
                      *, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                      max_detections: int = 100, pre_nms_top_k: int = 1000,
                      image_sizes: Sequence[Sequence[int]] | None = None) -> list[dict]:
    """Raw head outputs -> one detection dict per image (see the module docstring).

    Args:
        outputs: `(n, locations, num_classes + 5)` raw model outputs.
        num_classes: the number of classes.
        input_size: the model's input `(height, width)`.
        score_threshold: the lowest score kept. Defaults to `0.05`.
        iou_threshold: the NMS overlap threshold. Defaults to `0.5`.
        max_detections: detections per image at most. Defaults to `100`.
        pre_nms_top_k: candidates per image entering NMS. Defaults to `1000`.
        image_sizes: each image's own `(height, width)`, letterboxed into
            the input by `prepare_images`: boxes are mapped back to its pixels
            (`unletterbox_boxes`) and clipped to it. Defaults to `None` (boxes
            in the input's pixels).

    Returns:
        A list of `{"boxes": float32 (k, 4) xyxy, "scores": float32 (k,),
        "labels": int32 (k,)}`, sorted by descending score.

    Raises:
        ValueError: outputs of the wrong shape, or bad thresholds.
    """
    check_decoding_args(score_threshold, iou_threshold, max_detections)
    outputs = np.asarray(outputs)
    if outputs.ndim != 3 or outputs.shape[-1] != num_classes + 5:
        raise ValueError(
            f"Detection outputs must be (n, locations, {num_classes + 5}). "
            f"Received: outputs.shape={outputs.shape}")
    height, width = float(input_size[0]), float(input_size[1])
    results = []
    for i, out in enumerate(outputs):
        scores = np.sqrt(_sigmoid(out[:, :num_classes])
                         * _sigmoid(out[:, num_classes + 4])[:, None]).ravel()
        candidates = np.flatnonzero(scores > score_threshold)
        if len(candidates) > pre_nms_top_k:
            best = np.argsort(-scores[candidates], kind="stable")[:pre_nms_top_k]
            candidates = np.sort(candidates[best])
        locations, labels = np.divmod(candidates, num_classes)
        boxes = out[locations, num_classes:num_classes + 4].astype("float64")
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        kept_scores = scores[candidates]
        keep = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            keep.extend(members[nms(boxes[members], kept_scores[members],
                                    iou_threshold)])
        keep = np.asarray(keep, dtype="int64")
        keep = keep[np.lexsort((keep, -kept_scores[keep]))][:max_detections]
        boxes = boxes[keep]
        if image_sizes is not None and tuple(image_sizes[i][:2]) != (height, width):
            scale, _, _, pad_x, pad_y = letterbox_geometry(
                image_sizes[i][:2], (int(height), int(width)))
            boxes = unletterbox_boxes(boxes, (scale, pad_x, pad_y),
                                      image_sizes[i][:2]).astype("float64")
        results.append({"boxes": boxes.astype("float32").reshape(-1, 4),
                        "scores": kept_scores[keep].astype("float32"),
                        "labels": labels[keep].astype("int32")})
    return results


def prepare_images(images: Any, input_shape: Sequence[int]
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Images of any sizes -> a float32 batch at the model's size
    (letterboxed as in training, `letterbox_array`; images at the model's
    size unchanged), and each image's own `(height, width)` (what
    `decode_detections(image_sizes=...)` maps the boxes back with).

    Args:
        images: one image `(h, w, c)`, a batch `(n, h, w, c)` or a list of
            images of any sizes; uint8 or float pixel values in [0, 255].
        input_shape: the model's `(height, width, channels)`.

    Returns:
        `(batch, sizes)`.

    Raises:
        ValueError: not numeric, wrong rank or channel count.
    """
    height, width, channels = (int(s) for s in input_shape)
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        batch = [images] if images.ndim == 3 else list(images)
    elif isinstance(images, (list, tuple)):
        batch = [np.asarray(image) for image in images]
    else:
        raise ValueError(
            "images must be one image (height, width, channels), a batch (n, "
            "height, width, channels) or a list of images. Received: "
            f"images of shape {np.shape(images)}")
    out = np.empty((len(batch), height, width, channels), dtype="float32")
    sizes = []
    for i, image in enumerate(batch):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.dtype.kind not in "uif" or \
                image.shape[-1] != channels:
            raise ValueError(
                f"Each image must be (height, width, {channels}) numbers in "
                f"[0, 255]. Received: image {i} of shape {image.shape} and dtype "
                f"{image.dtype}")
        sizes.append((int(image.shape[0]), int(image.shape[1])))
        if sizes[-1] != (height, width):
            image, _ = letterbox_array(image, (height, width))
        out[i] = image
    return out, sizes


def detections_to_json(prediction: dict, class_names: Sequence[str]) -> list[dict]:
    """One image's detections as JSON-ready dicts: `box` (xyxy pixels),
    `score`, `label` (class index) and `class_name`."""
    return [{"box": [round(float(v), 2) for v in box], "score": float(score),
             "label": int(label), "class_name": str(class_names[int(label)])}
            for box, score, label in zip(prediction["boxes"], prediction["scores"],
                                         prediction["labels"], strict=True)]


class DetectionPredictor(OnnxPredictor):
    """Detections of an exported `DetectionModel`, with onnxruntime only.

    `OnnxPredictor(path)` becomes one for a file whose metadata says
    `kind = "detection"`; it can also be built directly (same arguments).

    Example:

    >>> predictor = DetectionPredictor("det.onnx")  # doctest: +SKIP
    >>> predictor.predict(images, score_threshold=0.3)[0]["boxes"]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, providers=None, **kwargs):
        super().__init__(path, providers, **kwargs)
        if self.metadata.get("kind") != "detection":
            raise ValueError(
                "The file is not an exported DetectionModel (its metadata kind is "
                f"{self.metadata.get('kind')!r}). Open it with OnnxPredictor. "
                f"Received: path={self.path!r}")
        self._init_kind()

    def _init_kind(self) -> None:
        self.kind = "detection"
        self.num_classes = len(self.class_names)

    def predict_raw(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """The raw head outputs `(n, locations, num_classes + 5)` (images of
        any size are letterboxed to the model's input, `prepare_images`)."""
        batch, _ = prepare_images(images, self.input_shape)
        return OnnxPredictor.predict(self, batch, batch_size=batch_size)

    def predict(self, images: Any, batch_size: int = 32, *,
                score_threshold: float = 0.05, iou_threshold: float = 0.5,
                max_detections: int = 100) -> list[dict]:
        """Detects objects; boxes in each input image's own pixels (images
        of another size are letterboxed as in training, see the module
        docstring, and the boxes mapped back and clipped).

        Args:
            images: one image, a batch or a list of images of any sizes (RGB,
                or the channels the model was built with; [0, 255]).
            batch_size: images per onnxruntime call. Defaults to `32`.
            score_threshold: the lowest score kept. Defaults to `0.05`.
            iou_threshold: the per-class NMS threshold. Defaults to `0.5`.
            max_detections: detections per image at most. Defaults to `100`.

        Returns:
            One dict per image: `{"boxes": (k, 4) xyxy, "scores": (k,),
            "labels": (k,)}`, by descending score.

        Raises:
            ValueError: bad images or thresholds.
        """
        check_decoding_args(score_threshold, iou_threshold, max_detections)
        batch, sizes = prepare_images(images, self.input_shape)
        raw = OnnxPredictor.predict(self, batch, batch_size=batch_size)
        return decode_detections(
            raw, self.num_classes, self.input_shape[:2],
            score_threshold=score_threshold, iou_threshold=iou_threshold,
            max_detections=max_detections, image_sizes=sizes)

    def predict_files(self, paths_or_folder: Any, batch_size: int = 8,
                      score_threshold: float = 0.05, iou_threshold: float = 0.5,
                      max_detections: int = 100, **unused: Any) -> list[dict]:
        """Detects objects in image files (unreadable files are skipped and
        listed in `self.skipped`).

        Returns:
            One dict per readable image: `{"path", "height", "width",
            "detections": [{"box", "score", "label", "class_name"}, ...]}`.
        """
        from PIL import Image

        from kerastransfer.runtime.files import list_image_files

        mode = "L" if self.input_shape[-1] == 1 else "RGB"
        results, self.skipped = [], []
        paths = list_image_files(paths_or_folder)
        for start in range(0, len(paths), batch_size):
            images, good = [], []
            for path in paths[start:start + batch_size]:
                try:
                    with Image.open(path) as image:
                        images.append(np.asarray(image.convert(mode), "float32"))
                    good.append(path)
                except Exception as error:  # noqa: BLE001 - PIL raises many types
                    self.skipped.append((path, f"{type(error).__name__}: {error}"))
            if not images:
                continue
            predictions = self.predict(images, score_threshold=score_threshold,
                                       iou_threshold=iou_threshold,
                                       max_detections=max_detections)
            for path, image, prediction in zip(good, images, predictions, strict=True):
                results.append({"path": path, "height": image.shape[0],
                                "width": image.shape[1],
                                "detections": detections_to_json(
                                    prediction, self.class_names)})
        return results
