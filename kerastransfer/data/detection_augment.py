"""Detection augmentation in numpy: boxes move with the image.

`augment_detection` applies one random zoom (`scale`), placed at a random
position (`crop`: a zoom-in crops the image, a zoom-out shrinks it onto a gray
canvas) and a random horizontal flip to one image and its boxes. Boxes are
transformed with the same affine map, clipped to the image, and dropped when
what is left is under `MIN_VISIBLE` of their transformed area or under
`MIN_SIDE` pixels wide or high (a sliver of an object is not a target a
detector can learn from). It runs in the training input pipeline only (the
detector calls it per example before encoding targets), never in the model.
"""

from __future__ import annotations

import numpy as np

from kerastransfer.data.detection import LETTERBOX_FILL

__all__ = ["augment_detection", "MIN_VISIBLE", "MIN_SIDE"]

MIN_VISIBLE = 0.25
MIN_SIDE = 2.0


def _check_scale(scale):
    if scale is None:
        return 1.0, 1.0
    if (not isinstance(scale, (tuple, list)) or len(scale) != 2
            or not 0 < float(scale[0]) <= float(scale[1])):
        raise ValueError("scale must be (low, high) zoom factors with 0 < low <= "
                         "high, e.g. (0.75, 1.25), or None. "
                         f"Received: scale={scale!r}")
    return float(scale[0]), float(scale[1])


def _warp(image: np.ndarray, zoom: float, tx: float, ty: float) -> np.ndarray:
    """`out(x, y) = image((x - tx) / zoom, (y - ty) / zoom)`, bilinear, gray fill."""
    from PIL import Image

    height, width = image.shape[:2]
    coefficients = (1 / zoom, 0.0, -tx / zoom, 0.0, 1 / zoom, -ty / zoom)
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[2]):
        # Mode "F" keeps float pixels exactly (no uint8 rounding of float input).
        channel = Image.fromarray(np.ascontiguousarray(image[..., c], np.float32),
                                  mode="F")
        out[..., c] = np.asarray(channel.transform(
            (width, height), Image.AFFINE, coefficients, resample=Image.BILINEAR,
            fillcolor=float(LETTERBOX_FILL)))
    return out


def augment_detection(image, boxes, labels, rng: np.random.Generator, *,
                      flip: bool = True, scale=(0.75, 1.25), crop: bool = True):
    """Randomly zooms, crops/places and flips one image with its boxes.

    Args:
        image: `(H, W, C)` uint8 or float array of pixel values 0-255.
        boxes: `(k, 4)` xyxy boxes in the image's pixels.
        labels: `(k,)` class ids.
        rng: a `numpy.random.Generator` (seed it for reproducible epochs).
        flip: flip left-right with probability 0.5. Defaults to `True`.
        scale: `(low, high)` range of the zoom factor, or `None` for no
            zoom. Defaults to `(0.75, 1.25)`.
        crop: place the zoomed image at a random position (a zoom-in then
            shows a random crop); with `False` it stays centred. Defaults to
            `True`.

    Returns:
        `(image, boxes, labels)`: the image with the input's shape and dtype,
        float32 `(m, 4)` boxes clipped to it, int32 `(m,)` labels, `m <= k`
        (boxes left with under 25% of their area or 2 px are dropped).

    Raises:
        ValueError: a bad `scale`, or boxes and labels of different lengths.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> image, boxes, labels = augment_detection(
    ...     np.zeros((64, 64, 3), "uint8"), [[8, 8, 40, 40]], [2], rng)
    >>> image.shape, boxes.shape[1]
    ((64, 64, 3), 4)
    """
    low, high = _check_scale(scale)
    image = np.asarray(image)
    squeeze = image.ndim == 2
    work = image[..., None] if squeeze else image
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError("boxes and labels must have one label per box. Received: "
                         f"{len(boxes)} boxes and {len(labels)} labels")
    height, width = work.shape[:2]
    zoom = float(rng.uniform(low, high)) if high > low else low
    # The zoomed image spans zoom * W; its left edge may be anywhere that keeps
    # it covering (zoom-in) or inside (zoom-out) the output.
    span_x, span_y = width - zoom * width, height - zoom * height
    if crop:
        tx = float(rng.uniform(min(0.0, span_x), max(0.0, span_x)))
        ty = float(rng.uniform(min(0.0, span_y), max(0.0, span_y)))
    else:
        tx, ty = span_x / 2, span_y / 2
    out = work.astype(np.float32)
    if zoom != 1.0 or tx != 0.0 or ty != 0.0:
        out = _warp(out, zoom, tx, ty)
    moved = boxes * zoom + [tx, ty, tx, ty]
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
        moved = np.stack([width - moved[:, 2], moved[:, 1], width - moved[:, 0],
                          moved[:, 3]], axis=1)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    clipped = np.clip(moved, 0, [width, height, width, height])
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w >= MIN_SIDE) & (h >= MIN_SIDE) & (w * h >= MIN_VISIBLE * area)
    if np.issubdtype(image.dtype, np.integer):
        out = np.clip(np.rint(out), 0, 255)
    out = np.ascontiguousarray(out.astype(image.dtype))
    return ((out[..., 0] if squeeze else out), clipped[keep].astype(np.float32),
            labels[keep].astype(np.int32))
