"""FCOS training targets, encoded in numpy (no TensorFlow, no Keras).

A `DetectionModel` predicts at every location of every pyramid level (one row
per location, levels shallowest first, row-major within a level, exactly as
`keras.layers.Reshape((h * w, k))` flattens an NHWC map). `encode_targets` turns
the KerasHub-style targets, one dict per image
`{"boxes": (k, 4) xyxy pixels, "labels": (k,) ints}`, into one float32 array
`(n, locations, num_classes + 5)` laid out like the model's output:

* `[:num_classes]`: one-hot class of the object the location is assigned to
  (all zeros: background);
* `[num_classes:num_classes + 4]`: that object's box, xyxy in input pixels;
* `[-1]`: its centerness target `sqrt(min(l, r) / max(l, r) * min(t, b) /
  max(t, b))` from the location's distances to the box sides.

Assignment follows FCOS (Tian et al., 2019, and its "center sampling"
improvement): a location is positive for a box when its center lies inside the
box, within `radius * stride` of the box center (that window clipped to the
box), and the largest of its four distances falls in the level's size range
(FCOS: `[0, 64]`, `[64, 128]`, ... for strides 8, 16, ...: `8 * stride` per
level, the last level unbounded); a location inside several boxes takes the
smallest. A box that gets no location this way (smaller than the grid spacing)
falls back to the location nearest its center inside it, so no labelled object
is silently dropped from training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["grid_locations", "default_size_ranges", "encode_targets",
           "check_target_structure"]

SIZE_FACTOR = 8  # FCOS: level with stride s takes objects up to 8 s (P3: 64 px)


def grid_locations(level_shapes: Sequence[Sequence[int]],
                   image_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray,
                                                       np.ndarray]:
    """The center of every output location, in input pixels.

    Args:
        level_shapes: `(height, width)` of each pyramid level, shallowest first.
        image_size: `(height, width)` of the model's input.

    Returns:
        `(centers, strides, levels)`: float32 `(L, 2)` centers `(x, y)`,
        float32 `(L,)` strides (the level's pixel spacing, the larger of its
        two axes) and int32 `(L,)` level indices. The spacing is
        `image_size / level_size` per axis, so valid-padding backbones whose
        maps are a few pixels smaller than `size / stride` stay aligned.
    """
    height, width = (float(s) for s in image_size)
    centers, strides, levels = [], [], []
    for index, (h, w) in enumerate(level_shapes):
        sy, sx = height / int(h), width / int(w)
        ys, xs = np.meshgrid((np.arange(int(h)) + 0.5) * sy,
                             (np.arange(int(w)) + 0.5) * sx, indexing="ij")
        centers.append(np.stack([xs.ravel(), ys.ravel()], axis=-1))
        strides.append(np.full(int(h) * int(w), max(sx, sy)))
        levels.append(np.full(int(h) * int(w), index))
    return (np.concatenate(centers).astype("float32"),
            np.concatenate(strides).astype("float32"),
            np.concatenate(levels).astype("int32"))


def default_size_ranges(strides: Sequence[float]) -> list[tuple[float, float]]:
    """FCOS's per-level object size ranges: `(8 s_{i-1}, 8 s_i)`, the first
    level from 0 and the last unbounded (`inf`)."""
    bounds = [SIZE_FACTOR * float(s) for s in strides[:-1]]
    lows = [0.0, *bounds]
    highs = [*bounds, float("inf")]
    return list(zip(lows, highs, strict=True))


def check_target_structure(targets, count: int | None = None) -> list[dict]:
    """Checks the form of the targets (one dict per image) and returns them
    as float32 boxes `(k, 4)` and int32 labels `(k,)`.

    Value checks (x2 < x1, boxes outside the image, class ids) are
    `kerastransfer.data.detection.check_detection_targets`'s.

    Raises:
        ValueError: not a list of dicts with "boxes" `(k, 4)` and "labels"
            `(k,)`, or not one per image.
    """
    if isinstance(targets, dict) or not isinstance(targets, Sequence):
        raise ValueError(
            "targets must be a list with one dict per image, "
            '{"boxes": (k, 4) xyxy pixels, "labels": (k,) class ids}. '
            f"Received: targets of type {type(targets).__name__}")
    if count is not None and len(targets) != count:
        raise ValueError(
            f"Pass one target dict per image: {count} images but {len(targets)} "
            f"targets. Received: len(targets)={len(targets)}")
    out = []
    for i, target in enumerate(targets):
        if not isinstance(target, dict) or "boxes" not in target \
                or "labels" not in target:
            raise ValueError(
                f'Target {i} must be a dict with "boxes" and "labels". '
                f"Received: targets[{i}]={target!r}")
        boxes = np.asarray(target["boxes"], dtype="float32")
        labels = np.asarray(target["labels"])
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"Target {i}: boxes must be (k, 4) xyxy pixels. "
                f"Received: boxes.shape={boxes.shape}")
        labels = labels.reshape(-1) if labels.ndim == 0 or labels.size == 0 \
            else labels
        if labels.ndim != 1 or len(labels) != len(boxes):
            raise ValueError(
                f"Target {i}: labels must be (k,), one per box ({len(boxes)} "
                f"boxes). Received: labels.shape={labels.shape}")
        if labels.size and (labels.dtype.kind not in "iu" and not np.all(
                np.mod(labels, 1) == 0)):
            raise ValueError(
                f"Target {i}: labels must be integer class ids. "
                f"Received: labels={labels.tolist()}")
        if not np.all(np.isfinite(boxes)):
            raise ValueError(
                f"Target {i}: boxes contain NaN or Inf. Received: "
                f"boxes={boxes.tolist()}")
        out.append({"boxes": boxes, "labels": labels.astype("int32")})
    return out


def _encode_one(boxes, labels, centers, strides, lows, highs, num_classes,
                radius) -> np.ndarray:
    out = np.zeros((len(centers), num_classes + 5), dtype="float32")
    if len(boxes) == 0:
        return out
    cx, cy = centers[:, 0:1], centers[:, 1:2]  # (L, 1) against (k,)
    x1, y1, x2, y2 = (boxes[:, j] for j in range(4))
    ltrb = np.stack([cx - x1, cy - y1, x2 - cx, y2 - cy], axis=-1)  # (L, k, 4)
    inside = ltrb.min(axis=-1) > 0
    largest = ltrb.max(axis=-1)
    in_range = (largest >= lows[:, None]) & (largest <= highs[:, None])
    ok = inside & in_range
    if radius:
        bx, by = (x1 + x2) / 2, (y1 + y2) / 2
        reach = radius * strides[:, None]
        ok &= ((cx > np.maximum(bx - reach, x1)) & (cx < np.minimum(bx + reach, x2))
               & (cy > np.maximum(by - reach, y1)) & (cy < np.minimum(by + reach, y2)))
    area = (x2 - x1) * (y2 - y1)
    cost = np.where(ok, area[None, :], np.inf)
    # Boxes no location took: the inside location nearest the box center.
    for j in np.flatnonzero(~ok.any(axis=0)):
        candidates = np.flatnonzero(inside[:, j])
        if len(candidates):
            distance = (cx[candidates, 0] - (x1[j] + x2[j]) / 2) ** 2 + (
                cy[candidates, 0] - (y1[j] + y2[j]) / 2) ** 2
            nearest = candidates[np.argmin(distance)]
            cost[nearest, j] = min(cost[nearest, j], area[j])
    best = np.argmin(cost, axis=1)
    positive = np.isfinite(cost[np.arange(len(cost)), best])
    rows = np.flatnonzero(positive)
    chosen = best[rows]
    out[rows, labels[chosen]] = 1.0
    out[rows, num_classes:num_classes + 4] = boxes[chosen]
    d = ltrb[rows, chosen]  # (p, 4): l, t, r, b
    lr = np.minimum(d[:, 0], d[:, 2]) / np.maximum(d[:, 0], d[:, 2])
    tb = np.minimum(d[:, 1], d[:, 3]) / np.maximum(d[:, 1], d[:, 3])
    out[rows, -1] = np.sqrt(lr * tb)
    return out


def encode_targets(targets, level_shapes: Sequence[Sequence[int]],
                   image_size: Sequence[int], num_classes: int, *,
                   size_ranges: Sequence[Sequence[float]] | None = None,
                   center_radius: float | None = 1.5) -> np.ndarray:
    """Encodes targets for the FCOS head (see the module docstring).

    Args:
        targets: one dict per image, `{"boxes": (k, 4) xyxy pixels of the
            model's input, "labels": (k,) ints}`.
        level_shapes: `(height, width)` of each level, shallowest first.
        image_size: the model's input `(height, width)`.
        num_classes: the number of object classes.
        size_ranges: `(low, high)` object sizes per level (the largest
            location-to-side distance). Defaults to `default_size_ranges`.
        center_radius: center sampling radius in strides, or `None`/0 for the
            whole box. Defaults to `1.5` (FCOS).

    Returns:
        float32 `(n, locations, num_classes + 5)`.

    Raises:
        ValueError: badly formed targets (`check_target_structure`).
    """
    targets = check_target_structure(targets)
    centers, strides, levels = grid_locations(level_shapes, image_size)
    if size_ranges is None:
        nominal = [float(strides[levels == i][0]) for i in range(len(level_shapes))]
        size_ranges = default_size_ranges(nominal)
    lows = np.asarray([r[0] for r in size_ranges], "float32")[levels]
    highs = np.asarray([r[1] for r in size_ranges], "float32")[levels]
    out = np.zeros((len(targets), len(centers), num_classes + 5), dtype="float32")
    for i, target in enumerate(targets):
        out[i] = _encode_one(target["boxes"], target["labels"], centers, strides,
                             lows, highs, num_classes, center_radius)
    return out
