"""Image files: listing, decoding, file prediction and top-k (no TensorFlow).

`IMAGE_EXTENSIONS` is what the runtime (Pillow) decodes and what folders are
searched for; `TF_IMAGE_EXTENSIONS` is the subset that the training pipelines'
`tf.io.decode_image` decodes (JPEG, PNG, GIF, BMP). `kerastransfer.data` imports
both from here, so the deployment side and the training side agree.

One decoder (`decode_image`) and one top-k ranking (`rank_classes`) serve
`OnnxPredictor.predict_files`, the CLI's `.keras` predictor and the edge service,
so the three answer the same for the same file. Decoding reads the header
first (the pixel count is checked before any pixel is decoded), asks JPEG
decoders for a reduced draft when the image is at least twice the model's size
(DCT scaling: a 4000x3000 photo for a 224 px model decodes at 1/8 size, 64x less
memory), then converts to RGB and resizes (bilinear, which in Pillow averages
over the whole source footprint when shrinking).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "TF_IMAGE_EXTENSIONS",
    "ImageTooLargeError",
    "list_image_files",
    "open_image",
    "decode_image",
    "decode_images",
    "rank_classes",
    "predict_image_files",
]

logger = logging.getLogger("kerastransfer.runtime")

# Lower-case, with the dot, for `name.lower().endswith(IMAGE_EXTENSIONS)`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# What folders are searched for: the images and DICOM/NIfTI files, which
# `runtime/medical.py` reads (with TIFF and 16-bit PNG) in their own units.
FILE_EXTENSIONS = IMAGE_EXTENSIONS + (".dcm", ".dicom", ".nii", ".nii.gz")
# `tf.io.decode_image` decodes JPEG, PNG, GIF and BMP only (not WebP or TIFF).
TF_IMAGE_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS
                            if e in (".jpg", ".jpeg", ".png", ".gif", ".bmp"))


class ImageTooLargeError(ValueError):
    """An image has more pixels than allowed (checked from its header).

    Attributes:
        pixels: width x height from the header, or `None` when Pillow refused
            the header itself (its decompression-bomb limit).
        limit: the limit that was exceeded.
    """

    def __init__(self, message: str, pixels: int | None, limit: int):
        super().__init__(message)
        self.pixels = pixels
        self.limit = limit


def list_image_files(paths_or_folder: Any) -> list[str]:
    """Expands a folder (recursively, sorted) or a list of paths into file paths.

    Args:
        paths_or_folder: a folder, one file path, or a sequence of file paths.

    Returns:
        The file paths, in order; inside folders only files with an image,
        DICOM or NIfTI extension (`FILE_EXTENSIONS`).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(paths_or_folder, (str, os.PathLike)):
        items = [os.fspath(paths_or_folder)]
    else:
        items = [os.fspath(p) for p in paths_or_folder]
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(FILE_EXTENSIONS):
                        paths.append(os.path.join(root, name))
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(
                f"No such image file or folder. Check the path. Received: path={item!r}"
            )
    return paths


def open_image(source: Any, size: Sequence[int], max_pixels: int | None = None):
    """Opens an image lazily: header read, size checked, JPEG draft requested.

    No pixel is decoded yet; `decode_image` finishes the work. Callers that
    bound memory (the service) read `image.size` in between: after the draft it
    is the size that will be decoded.

    Args:
        source: a path or a binary file object.
        size: `(height, width)` the image will be resized to.
        max_pixels: refuse images with more pixels (width x height, from the
            header). Defaults to `None` (only Pillow's own bomb limit).

    Returns:
        An open `PIL.Image.Image` (close it, or use it as a context manager).

    Raises:
        ImageTooLargeError: over `max_pixels`, or over Pillow's
            `Image.MAX_IMAGE_PIXELS` decompression-bomb limit.
        OSError: data Pillow does not recognize.
    """
    from PIL import Image

    try:
        image = Image.open(source)  # reads the header only
    except Image.DecompressionBombError:
        limit = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
        raise ImageTooLargeError(
            f"Image too large: more than {limit} pixels. Resize it before "
            f"sending. Received: pixels > {limit}", None, limit) from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"Image too large: {width}x{height} pixels; the limit is {max_pixels} "
            f"pixels. Resize it before sending. Received: pixels={width * height}",
            width * height, max_pixels)
    target_h, target_w = int(size[0]), int(size[1])
    if image.format == "JPEG" and width >= 2 * target_w and height >= 2 * target_h:
        # DCT scaling: decodes at 1/2, 1/4 or 1/8, never below the target size.
        image.draft("RGB", (target_w, target_h))
    return image


def decode_image(image: Any, size: Sequence[int]) -> np.ndarray:
    """Decodes an image from `open_image` to float32 RGB `(height, width, 3)`.

    Args:
        image: an open `PIL.Image.Image` (from `open_image`).
        size: `(height, width)`.

    Returns:
        float32 RGB pixels in [0, 255].
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if image.mode in ("RGB", "L") and image.size != (width, height):
        # Channel-wise modes: shrink first, so RGB conversion copies few pixels.
        image = image.resize((width, height), Image.BILINEAR)
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype="float32")


def decode_images(
    paths: Sequence[Any], size: Sequence[int], max_pixels: int | None = None,
    channels: int = 3,
) -> tuple[np.ndarray, list[tuple[Any, str]]]:
    """Decodes image files with Pillow: RGB, resized (bilinear) to `size`.

    DICOM, NIfTI, TIFF and 16-bit PNG files are read in their own units by
    `kerastransfer.runtime.medical.read_image` (as in training), not cut to
    8-bit RGB.

    Args:
        paths: image file paths (or binary file objects).
        size: `(height, width)`.
        max_pixels: skip images with more pixels. Defaults to `None`.
        channels: the channels the model takes (1: 8-bit images become
            luminance). Defaults to `3`.

    Returns:
        `(images, failed)`: float32 `(n, height, width, channels)` for the
        readable files, in order, and `[(path, reason), ...]` for the others.
    """
    from kerastransfer.runtime.medical import (
        load_for_model,
        needs_numpy_decode,
        to_channels,
    )

    height, width = int(size[0]), int(size[1])
    images, failed = [], []
    for path in paths:
        try:
            if needs_numpy_decode(path):
                images.append(load_for_model(path, size, channels))
                continue
            with open_image(path, size, max_pixels) as image:
                images.append(to_channels(decode_image(image, size), channels, path))
        except Exception as error:  # noqa: BLE001 - Pillow raises many types
            failed.append((path, f"{type(error).__name__}: {error}"))
    array = (np.stack(images) if images
             else np.zeros((0, height, width, channels), dtype="float32"))
    return array, failed


def rank_classes(
    scores: np.ndarray, class_names: Sequence[str], top_k: int
) -> list[tuple[int, str, float]]:
    """The `top_k` best classes of one output row, best first.

    Ties keep class order (a stable sort). Outputs beyond `class_names` are
    named by their index.

    Args:
        scores: one row of model outputs `(num_classes,)`.
        class_names: class names in output order.
        top_k: how many classes (capped at the number of outputs).

    Returns:
        `[(index, class_name, score), ...]`.
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(int(i), class_names[i] if i < len(class_names) else str(i),
             float(scores[i])) for i in order]


def predict_image_files(
    predict: Callable[[np.ndarray], np.ndarray],
    paths_or_folder: Any,
    *,
    image_size: Sequence[int],
    class_names: Sequence[str],
    top_k: int = 5,
    batch_size: int = 32,
    channels: int = 3,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Decodes image files in batches, predicts them and ranks the classes.

    Shared by `OnnxPredictor.predict_files` and the CLI's `.keras` predictor.

    Args:
        predict: a function from float32 images `(n, h, w, 3)` to outputs.
        paths_or_folder: a folder (searched recursively), a file, or a list.
        image_size: `(height, width)` of the model input.
        class_names: class names in output order.
        top_k: how many best classes per image. Defaults to `5`.
        batch_size: images decoded and predicted at once. Defaults to `32`.
        channels: the channels the model takes. Defaults to `3`.

    Returns:
        `(results, skipped)`: one dict per readable image, `{"path", "top_k":
        [(class_name, score), ...], "probabilities": np.ndarray}`, and
        `[(path, reason), ...]` for unreadable files (also logged as one warning).

    Raises:
        ValueError: a bad `top_k` or `batch_size`, or no fixed `image_size`.
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    if (isinstance(batch_size, bool) or not isinstance(batch_size, int)
            or batch_size < 1):
        raise ValueError(
            f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    if len(image_size) < 2 or None in tuple(image_size[:2]):
        raise ValueError(
            "The model has no fixed input size, so files cannot be resized for "
            f"it. Use predict() on arrays. Received: image_size={tuple(image_size)}"
        )
    paths = list_image_files(paths_or_folder)
    results: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, failed = decode_images(chunk, image_size[:2], channels=channels)
        skipped.extend(failed)
        bad = {p for p, _ in failed}
        good = [p for p in chunk if p not in bad]
        if not good:
            continue
        outputs = np.asarray(predict(images))
        for path, scores in zip(good, outputs, strict=True):
            results.append({
                "path": path,
                "top_k": [(name, score) for _, name, score
                          in rank_classes(scores, class_names, top_k)],
                "probabilities": scores,
            })
    if skipped:
        logger.warning(
            "Skipped %d unreadable file(s): %s", len(skipped),
            "; ".join(f"{p} ({r})" for p, r in skipped[:10]),
        )
    return results, skipped
