"""Letterboxing (numpy + PIL only): the one implementation of how a detection
model sees an image of another size than its input.

`load_detection_data` letterboxes every training image (as YOLO does): the
image is resized bilinearly by `scale = min(H / h, W / w)` (aspect ratio
kept) to `round(h * scale) x round(w * scale)`, centred (`pad = (size -
new) // 2`) and the rest of the canvas is filled with gray `LETTERBOX_FILL`.
Prediction must show the model the same thing, so `DetectionModel.predict`,
`DetectionPredictor`, the CLI and the edge service all call these functions,
and map boxes back with `unletterbox_boxes` (`(box - pad) / scale`). This
module lives in the runtime because the runtime must not import
`kerastransfer.data` (TensorFlow-free); `kerastransfer.data.detection`
re-exports it.

An image already at the model's size has `(scale, pad_x, pad_y) = (1, 0, 0)`
and its values are unchanged (no resize, no padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LETTERBOX_FILL", "letterbox_geometry", "letterbox_array",
           "unletterbox_boxes"]

LETTERBOX_FILL = 114  # YOLO's gray: the padding is neither black nor white


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool)
                   or s < 1 for s in image_size)):
        raise ValueError("image_size must be (height, width) in pixels. Pass e.g. "
                         f"image_size=(224, 224). Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def letterbox_geometry(image_hw: Sequence[int], image_size: Sequence[int]
                       ) -> tuple[float, int, int, int, int]:
    """Where an image of `image_hw` lands when letterboxed into `image_size`.

    Args:
        image_hw: the image's own `(height, width)`.
        image_size: the model's `(height, width)`.

    Returns:
        `(scale, new_h, new_w, pad_x, pad_y)`: the resize factor, the resized
        picture's size and its offset in the canvas.

    Raises:
        ValueError: `image_size` is not two positive ints.

    Example:

    >>> letterbox_geometry((24, 40), (40, 40))
    (1.0, 24, 40, 0, 8)
    """
    height, width = _check_size(image_size)
    h, w = int(image_hw[0]), int(image_hw[1])
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    return float(scale), new_h, new_w, (width - new_w) // 2, (height - new_h) // 2


def letterbox_array(image, image_size, *, scale: float | None = None
                    ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Letterboxes one image of any number of channels (float values): what a
    model trained on `load_detection_data` is shown at prediction time.

    Args:
        image: `(h, w)` or `(h, w, c)` pixel values in [0, 255].
        image_size: the model's `(height, width)`.
        scale: the scale of an image already resized by the caller (the edge
            service decodes uploads straight to the letterboxed size); the
            image is then only padded. Defaults to `None` (computed, and the
            image resized bilinearly as training resizes it, see `_resize`).

    Returns:
        `(array, (scale, pad_x, pad_y))`: float32 `(H, W, c)` filled with
        `LETTERBOX_FILL` outside the picture, and the mapping
        `unletterbox_boxes` takes.

    Raises:
        ValueError: `image_size` is not two positive ints.

    Example:

    >>> boxed, letterbox = letterbox_array(np.zeros((24, 40, 3)), (40, 40))
    >>> boxed.shape, letterbox
    ((40, 40, 3), (1.0, 0.0, 8.0))
    """
    height, width = _check_size(image_size)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if scale is None:
        scale, new_h, new_w, _, _ = letterbox_geometry(array.shape[:2],
                                                       (height, width))
        if (new_h, new_w) != array.shape[:2]:
            array = _resize(array, new_h, new_w)
    new_h, new_w = array.shape[:2]
    pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
    canvas = np.full((height, width, array.shape[-1]), LETTERBOX_FILL, np.float32)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = array
    return canvas, (float(scale), float(pad_x), float(pad_y))


def _resize(array: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Bilinear resize as training's `letterbox_image` does it.

    Pixel values that are bytes (uint8, or whole numbers in [0, 255], as
    images read from files are) with 1 or 3 channels are resized in one PIL
    call in mode "L" / "RGB": the same call on the same values as training,
    so the result is identical to the training image. Other values (fractional
    floats, other channel counts) are resized channel by channel as float
    planes (mode "F"), keeping their precision (within 1 of the uint8 path on
    whole numbers: PIL rounds its 8-bit result).
    """
    from PIL import Image

    size = (new_w, new_h)
    as_bytes = _as_bytes(array) if array.shape[-1] in (1, 3) else None
    if as_bytes is not None:
        mode = "L" if array.shape[-1] == 1 else "RGB"
        planes = as_bytes[..., 0] if mode == "L" else as_bytes
        resized = np.asarray(Image.fromarray(planes, mode=mode)
                             .resize(size, Image.BILINEAR), dtype=np.float32)
        return resized.reshape(new_h, new_w, array.shape[-1])
    array = array.astype(np.float32, copy=False)
    return np.stack([np.asarray(Image.fromarray(array[..., c], mode="F")
                                .resize(size, Image.BILINEAR))
                     for c in range(array.shape[-1])], axis=-1)


def _as_bytes(array: np.ndarray) -> np.ndarray | None:
    """The image as uint8 when that is exact (whole numbers in [0, 255]),
    else `None`."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "uif" or array.size == 0:
        return None
    first = array[0]  # fractional images are usually told by one row, cheaply
    if np.any(first != np.round(first)):
        return None
    if not (array.min() >= 0 and array.max() <= 255):  # NaN fails too
        return None
    as_bytes = array.astype(np.uint8)
    return as_bytes if np.array_equal(as_bytes, array) else None


def unletterbox_boxes(boxes, letterbox, image_hw: Sequence[int] | None = None
                      ) -> np.ndarray:
    """Maps xyxy boxes from letterboxed pixels back to the original image's.

    Args:
        boxes: `(k, 4)` xyxy in letterboxed pixels.
        letterbox: `(scale, pad_x, pad_y)` of that image (as `letterbox_array`
            returns, or a row of `DetectionData.letterbox`).
        image_hw: the original image's `(height, width)`: boxes are clipped to
            it (a box may reach into the padding). Defaults to `None` (not
            clipped).

    Returns:
        float32 `(k, 4)` xyxy in the original image's pixels.

    Example:

    >>> unletterbox_boxes([[0, 8, 20, 28]], (1.0, 0.0, 8.0)).tolist()
    [[0.0, 0.0, 20.0, 20.0]]
    """
    scale, pad_x, pad_y = (float(v) for v in letterbox)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale
    if image_hw is not None:
        h, w = float(image_hw[0]), float(image_hw[1])
        boxes = np.clip(boxes, 0.0, [w, h, w, h])
    return boxes.astype(np.float32)
