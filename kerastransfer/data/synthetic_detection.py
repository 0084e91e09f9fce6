"""Synthetic detection canvases: handwritten digits on textured backgrounds.

Offline detection data with known boxes (issue 16's demonstration and CI): each
canvas is a smooth random color texture with fine noise, and 1-3 digits
(scikit-learn's `load_digits` through `kerastransfer.demo.digits.load_target`,
or the vendored MNIST through `load_source`) pasted at random sizes and
positions in a random color contrasting with the background. A digit's box is
the tight box of its strokes (pixels of the resized digit above
`STROKE_THRESHOLD`), its label the digit 0-9. Digits overlap at most
`MAX_IOU` (a placement that overlaps more is drawn again).
"""

from __future__ import annotations

import numpy as np

__all__ = ["digit_canvases", "STROKE_THRESHOLD", "MAX_IOU"]

STROKE_THRESHOLD = 0.3
MAX_IOU = 0.1
_ATTEMPTS = 50


def _pool(pool):
    from kerastransfer.demo import digits

    if isinstance(pool, str):
        if pool not in ("target", "source"):
            raise ValueError('pool must be "target" (scikit-learn digits), "source" '
                             f"(MNIST) or (images, labels). Received: pool={pool!r}")
        images, labels = digits.load_target() if pool == "target" \
            else digits.load_source()
    else:
        images, labels = pool
    images = np.asarray(images, dtype=np.float32)
    return images.reshape(len(images), *images.shape[1:3]), np.asarray(labels)


def _texture(rng, size: int) -> np.ndarray:
    """A smooth random color field (bilinear-upsampled 4x4 noise) plus grain."""
    from PIL import Image

    coarse = rng.uniform(40, 215, (4, 4, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR),
                        dtype=np.float32)
    return smooth + rng.normal(0, 12, (size, size, 3))


def _iou(box, boxes) -> np.ndarray:
    if not boxes:
        return np.zeros(0)
    boxes = np.asarray(boxes, dtype=np.float64)
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    own = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (own + areas - inter)


def _glyph(image: np.ndarray, side: int) -> np.ndarray:
    """The digit cropped to its strokes, resized so its longer side is `side`."""
    from PIL import Image

    rows = np.flatnonzero(image.max(axis=1) > STROKE_THRESHOLD)
    cols = np.flatnonzero(image.max(axis=0) > STROKE_THRESHOLD)
    crop = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    ratio = side / max(h, w)
    size = (max(2, round(w * ratio)), max(2, round(h * ratio)))
    alpha = np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.BILINEAR))
    return np.clip(alpha, 0.0, 1.0)


def digit_canvases(count: int, *, size: int = 64, seed: int = 0, digits=(1, 3),
                   pool="target", digit_size=None):
    """Canvases with 1-3 handwritten digits each, and their boxes.

    Args:
        count: number of canvases.
        size: canvas side in pixels. Defaults to `64`.
        seed: seed of everything drawn. Defaults to `0`.
        digits: `(min, max)` digits per canvas (inclusive). Defaults to
            `(1, 3)`.
        pool: `"target"` (scikit-learn's 1,797 digits), `"source"` (the
            vendored MNIST) or an `(images, labels)` tuple (e.g. one writer
            split for training canvases and another for held-out ones).
            Defaults to `"target"`.
        digit_size: `(min, max)` longer side of a digit in pixels. Defaults to
            `None`: `(size * 3 // 16, size * 7 // 16)`, 12-28 px at 64.

    Returns:
        `(images, targets)`: uint8 `(count, size, size, 3)` and one
        `{"boxes": float32 (k, 4) xyxy, "labels": int32 (k,)}` per canvas.

    Raises:
        ValueError: a bad `pool`, `digits` or `digit_size`.

    Example:

    >>> images, targets = digit_canvases(2, size=48, seed=1)
    >>> images.shape, images.dtype
    ((2, 48, 48, 3), dtype('uint8'))
    """
    low, high = (int(digits[0]), int(digits[1]))
    if digit_size is None:
        digit_size = (size * 3 // 16, size * 7 // 16)
    small, large = int(digit_size[0]), int(digit_size[1])
    if not 1 <= low <= high or not 4 <= small <= large <= size:
        raise ValueError(
            "digits must be (min, max) with 1 <= min <= max and digit_size (min, "
            f"max) with 4 <= min <= max <= size. Received: digits={digits!r}, "
            f"digit_size={digit_size!r}, size={size}")
    images, labels = _pool(pool)
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    targets = []
    for i in range(count):
        canvas = _texture(rng, size)
        background = canvas.mean(axis=(0, 1))
        boxes, classes = [], []
        for _ in range(int(rng.integers(low, high + 1))):
            k = int(rng.integers(len(images)))
            alpha = _glyph(images[k], int(rng.integers(small, large + 1)))
            h, w = alpha.shape
            ys = np.flatnonzero(alpha.max(axis=1) > STROKE_THRESHOLD)
            xs = np.flatnonzero(alpha.max(axis=0) > STROKE_THRESHOLD)
            for _ in range(_ATTEMPTS):
                y = int(rng.integers(0, size - h + 1))
                x = int(rng.integers(0, size - w + 1))
                box = [x + xs[0], y + ys[0], x + xs[-1] + 1, y + ys[-1] + 1]
                if np.all(_iou(box, boxes) <= MAX_IOU):
                    break
            else:
                continue  # no room left on this canvas
            # A stroke color far from the background's mean keeps digits visible.
            color = np.where(background > 127, rng.uniform(0, 60, 3),
                             rng.uniform(195, 255, 3))
            window = canvas[y:y + h, x:x + w]
            window += alpha[..., None] * (color - window)
            boxes.append(box)
            classes.append(int(labels[k]))
        out[i] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        targets.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                        "labels": np.asarray(classes, np.int32)})
    return out, targets
