"""Checks on data and data arguments: image files, arrays, labels, sizes.

One copy of each check, shared by the data builders and by training:

* `check_image_file` / `scan_images`: every file is decoded once with Pillow (a
  real decode, not just the extension), so a corrupt or non-image file is
  reported before training starts instead of crashing it half-way.
* `check_inputs`: numpy inputs that Keras would reject deep inside `fit()`
  (wrong shape, empty, not numeric, NaN/Inf, one label per example).
* `check_label_range`: integer class labels inside `[0, num_classes)`.
* `check_batch_size`, `check_image_size`, `check_validation_split`: arguments.

Errors follow "<what is wrong>. <how to fix>. Received: name=value".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from kerastransfer.errors import DataError
from kerastransfer.runtime.files import TF_IMAGE_EXTENSIONS

__all__ = [
    "check_image_file",
    "scan_images",
    "check_inputs",
    "check_label_range",
    "check_batch_size",
    "check_image_size",
    "check_validation_split",
    "TF_IMAGE_FORMATS",
]

logger = logging.getLogger("kerastransfer")

# Pillow format names of the files `tf.io.decode_image` decodes, i.e. of
# `TF_IMAGE_EXTENSIONS` (the training pipelines decode in TensorFlow).
TF_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
_FORMATS_TEXT = "JPEG, PNG, GIF or BMP"
_MAX_LISTED = 20


def check_image_file(path: str, image_size: Sequence[int] | None = None,
                     channels: int | None = None) -> str | None:
    """Decodes `path` with Pillow; returns why it cannot be used, or `None`.

    DICOM, NIfTI, TIFF and 16-bit PNG files are decoded with
    `kerastransfer.runtime.medical.read_image` instead (as the pipelines do).

    Args:
        path: the file.
        image_size: the target `(height, width)`: JPEGs are decoded at reduced
            scale close to it, which makes the check fast. Defaults to `None`.
        channels: the channels the model takes; `None` or 3 for RGB. Defaults
            to `None`.

    Returns:
        `None` for a usable image, otherwise a short reason.
    """
    from PIL import Image

    from kerastransfer.runtime.medical import load_for_model, needs_numpy_decode

    if needs_numpy_decode(path):
        try:
            image = load_for_model(path, None, channels)
        except Exception as error:  # noqa: BLE001 - pydicom/nibabel raise many types
            return f"not a readable image ({type(error).__name__}: {error})"
        return "empty image" if min(image.shape[:2]) < 1 else None
    if channels not in (None, 1, 3):
        return (f"an 8-bit RGB image cannot feed a {channels}-channel model (use "
                "DICOM, NIfTI or TIFF files with that many channels)")
    try:
        with Image.open(path) as image:
            kind = image.format
            if kind not in TF_IMAGE_FORMATS:
                return (f"unsupported format {kind} (use {_FORMATS_TEXT}: "
                        f"{', '.join(TF_IMAGE_EXTENSIONS)})")
            if image_size is not None and kind == "JPEG":
                image.draft("RGB", (int(image_size[1]), int(image_size[0])))
            image.load()  # a real decode: truncated files fail here
            if image.width < 1 or image.height < 1:
                return "empty image"
    except Exception as error:  # PIL raises many types for bad files
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


def scan_images(paths: Sequence[str], *, image_size: Sequence[int] | None = None,
                strict: bool = False,
                channels: int | None = None) -> tuple[list[int], list[tuple[str, str]]]:
    """Checks every file; returns the indices of good files and the skipped ones.

    Skipped files are listed in one `logging` warning (at most 20 by name).

    Args:
        paths: the files to check.
        image_size: as for `check_image_file`. Defaults to `None`.
        strict: raise instead of skipping unusable files. Defaults to `False`.
        channels: as for `check_image_file`. Defaults to `None`.

    Returns:
        `(good, skipped)`: the indices of usable files, and `(path, reason)` for
        every other file.

    Raises:
        DataError: `strict=True` and at least one file is not a usable image.
    """
    good, skipped = [], []
    for index, path in enumerate(paths):
        reason = (check_image_file(path, image_size) if channels is None
                  else check_image_file(path, image_size, channels))
        if reason is None:
            good.append(index)
        else:
            skipped.append((path, reason))
    if skipped:
        listing = "\n".join(f"  {p}: {r}" for p, r in skipped[:_MAX_LISTED])
        more = (f"\n  ... and {len(skipped) - _MAX_LISTED} more"
                if len(skipped) > _MAX_LISTED else "")
        if strict:
            raise DataError(
                f"{len(skipped)} of {len(paths)} files are not usable images. "
                "Remove or fix them, or pass strict=False to skip them. "
                f"Received: these files:\n{listing}{more}"
            )
        logger.warning("Skipping %d of %d files that are not usable images:\n%s%s",
                       len(skipped), len(paths), listing, more)
    return good, skipped


def check_inputs(x, y=None, *, shape: Sequence[int | None] | None = None) -> None:
    """Clear errors for numpy inputs that Keras would reject deep inside `fit()`.

    Only numpy arrays are checked (datasets and other inputs pass through).

    Args:
        x: the inputs, e.g. images `(n, height, width, channels)`.
        y: the labels, or `None`. Defaults to `None`.
        shape: the expected shape of one example (`None` entries match any
            size), or `None` to accept any shape. Defaults to `None`.

    Raises:
        DataError: a wrong shape, no examples, non-numeric or non-finite
            values, or not one label per example.
    """
    if not isinstance(x, np.ndarray):
        return
    if shape is not None:
        shape = tuple(shape)
        if x.ndim != len(shape) + 1 or any(
                e is not None and a != e
                for a, e in zip(x.shape[1:], shape, strict=True)):
            raise DataError(
                f"Inputs must have shape (batch, {', '.join(map(str, shape))}) for "
                f"this model. Resize them, or build the model with input_shape="
                f"{tuple(x.shape[1:])}. Received: x.shape={x.shape}"
            )
    if len(x) == 0:
        raise DataError(f"The training data is empty. Received: x.shape={x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(
            "Inputs must be real numbers (images: RGB values in [0, 255]). Decode "
            f"or convert them first. Received: x.dtype={x.dtype}"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(
            "The inputs contain NaN or Inf values, which would make the loss NaN. "
            "Clean or drop those examples. Received: "
            f"{int(np.size(x) - np.isfinite(x).sum())} non-finite values"
        )
    if y is None:
        return
    count = len(np.asarray(y))
    if count != len(x):
        raise DataError(
            f"x and y must have one label per example. Received: {len(x)} inputs "
            f"and {count} labels"
        )


def check_label_range(labels, num_classes: int) -> None:
    """Integer class labels must lie in `[0, num_classes)`.

    Args:
        labels: integer class indices (any shape; one-hot rows are not labels:
            take their `argmax` first).
        num_classes: the number of classes.

    Raises:
        DataError: a label outside `[0, num_classes)`.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"Labels must be in [0, {num_classes - 1}] for num_classes={num_classes}. "
            "Fix the labels, or the number of classes (num_classes or "
            f"class_names). Received: labels in [{low}, {high}]"
        )


def check_batch_size(batch_size) -> int:
    """`batch_size` must be a positive int; returns it.

    Raises:
        ValueError: anything else (bools included).
    """
    if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError("batch_size must be a positive int. Pass e.g. batch_size=32. "
                         f"Received: batch_size={batch_size!r}")
    return int(batch_size)


def check_image_size(image_size) -> tuple[int, int]:
    """`image_size` must be `(height, width)` in whole pixels; returns it as a tuple.

    Raises:
        ValueError: anything else.
    """
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1
                   for s in image_size)):
        raise ValueError("image_size must be (height, width) in pixels. Pass e.g. "
                         f"image_size=(224, 224). Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def check_validation_split(validation_split) -> float:
    """`validation_split` must be a number in `[0, 1)`; returns it as a float.

    Raises:
        ValueError: anything else.
    """
    if (isinstance(validation_split, bool)
            or not isinstance(validation_split, (int, float, np.floating))
            or not 0.0 <= float(validation_split) < 1.0):
        raise ValueError(
            "validation_split must be in [0, 1). Pass e.g. validation_split=0.2. "
            f"Received: validation_split={validation_split!r}"
        )
    return float(validation_split)
