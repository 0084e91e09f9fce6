"""Segmentation data: image/mask folders and arrays -> `SegmentationData`.

A segmentation folder pairs `images/x.jpg` with `masks/x.png` by file stem. A
mask holds one class index per pixel: a grayscale PNG (value = class) or a
palette PNG (palette index = class, as PASCAL VOC writes them). Everything is
checked up front with Pillow, before training: unreadable images or masks,
images without a mask and masks without an image are listed in one warning and
skipped (`strict=True` raises a `DataError` instead), a mask whose size differs
from its image's is a bad pair, and a mask value outside the classes raises a
`DataError` naming the file. Images are resized bilinearly and masks with
nearest-neighbour (a resized mask keeps class indices) to `image_size`.

The data are held as arrays (segmentation sets are small; masks are uint8) and
served as `tf.data` pipelines of `(images, masks)` batches, the same
`ImageData` interface `fit()` takes for classification.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kerastransfer.data.checks import (
    check_batch_size,
    check_image_size,
    check_validation_split,
)
from kerastransfer.data.images import ImageData
from kerastransfer.data.pipeline import array_pipeline
from kerastransfer.errors import DataError

__all__ = ["SegmentationData", "load_segmentation_folder", "from_segmentation_arrays",
           "read_mask", "MASK_EXTENSIONS"]

logger = logging.getLogger("kerastransfer")

MASK_EXTENSIONS = (".png", ".bmp", ".gif", ".tif", ".tiff")
_MAX_LISTED = 20


@dataclass
class SegmentationData(ImageData):
    """`ImageData` of `(images, masks)` batches, plus the arrays.

    Attributes:
        x_train, y_train: training images `(n, h, w, 3)` float32 in [0, 255]
            and masks `(n, h, w)` uint8 class indices.
        x_val, y_val: the same for validation (empty arrays without a split).
        paths: the image files in array order (train then validation), if
            loaded from a folder.
    """

    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    paths: list[str] | None = None

    def class_pixel_counts(self) -> dict[str, int]:
        """Training pixels per class (for choosing `class_weights`)."""
        counts = np.bincount(self.y_train.ravel(), minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts,
                                                  strict=False)}


def read_mask(path: str, size: Sequence[int] | None = None) -> np.ndarray:
    """Reads a mask file as class indices `(h, w)` uint8.

    Args:
        path: a grayscale or palette image (PNG recommended: lossless).
        size: `(height, width)` to resize to (nearest-neighbour). Defaults to
            `None` (as stored).

    Returns:
        A uint8 array of class indices.

    Raises:
        DataError: a color (RGB) mask whose channels differ: colors are not
            class indices.
    """
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("RGB", "RGBA"):
            array = np.asarray(image.convert("RGB"))
            if not (np.array_equal(array[..., 0], array[..., 1])
                    and np.array_equal(array[..., 0], array[..., 2])):
                raise DataError(
                    "Masks must hold class indices (a grayscale or palette PNG), "
                    "not colors. Convert the colors to indices first. "
                    f"Received: {path} in mode {image.mode}")
            image = Image.fromarray(array[..., 0])
        elif image.mode not in ("L", "P", "1"):
            image = image.convert("L")
        if size is not None and image.size != (int(size[1]), int(size[0])):
            image = image.resize((int(size[1]), int(size[0])), Image.NEAREST)
        return np.asarray(image, dtype=np.uint8)


def _stems(folder: str, extensions) -> dict[str, str]:
    found = {}
    for file in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file)
        if not file.startswith(".") and (extensions is None
                                         or ext.lower() in extensions):
            found.setdefault(stem, os.path.join(folder, file))
    return found


def _pair(directory, images, masks):
    image_dir, mask_dir = (os.path.join(directory, images),
                           os.path.join(directory, masks))
    for folder, what in ((image_dir, "images"), (mask_dir, "masks")):
        if not os.path.isdir(folder):
            raise DataError(
                f"A segmentation folder needs an {what!r} subfolder ({images}/x.jpg "
                f"with {masks}/x.png). Create it or pass {what}=<subfolder>. "
                f"Received: {what}={folder!r}")
    image_files, mask_files = _stems(image_dir, None), _stems(mask_dir, None)
    pairs, problems = [], []
    for stem, path in image_files.items():
        if stem in mask_files:
            pairs.append((path, mask_files[stem]))
        else:
            problems.append((path, f"no mask {masks}/{stem}.png"))
    for stem, path in mask_files.items():
        if stem not in image_files:
            problems.append((path, f"no image {images}/{stem}.*"))
    return pairs, problems


def _report(problems, total, strict):
    if not problems:
        return
    listing = "\n".join(f"  {p}: {r}" for p, r in problems[:_MAX_LISTED])
    more = (f"\n  ... and {len(problems) - _MAX_LISTED} more"
            if len(problems) > _MAX_LISTED else "")
    if strict:
        raise DataError(
            f"{len(problems)} files of the segmentation folder are unpaired or "
            "unusable. Fix or remove them, or pass strict=False to skip them. "
            f"Received: these files:\n{listing}{more}")
    logger.warning("Skipping %d unpaired or unusable files (of %d):\n%s%s",
                   len(problems), total, listing, more)


def load_segmentation_folder(
    directory: str | os.PathLike,
    *,
    image_size: Sequence[int] = (224, 224),
    images: str = "images",
    masks: str = "masks",
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    validation_split: float = 0.0,
    seed: int = 1337,
    shuffle: bool = True,
    strict: bool = False,
) -> SegmentationData:
    """Loads `images/x.jpg` + `masks/x.png` pairs.

    Args:
        directory: the folder holding the two subfolders.
        image_size: `(height, width)` images and masks are resized to.
            Defaults to `(224, 224)`.
        images: the images subfolder. Defaults to `"images"`.
        masks: the masks subfolder. Defaults to `"masks"`.
        class_names: class names in index order (index 0 is usually the
            background). Defaults to `None` (`"0"`, `"1"`, ...).
        num_classes: number of classes. Defaults to `len(class_names)`, else
            the largest mask value + 1 (at least 2).
        batch_size: pairs per batch. Defaults to `8`.
        validation_split: share held out for validation (random, seeded).
            Defaults to `0.0`.
        seed: seed of the split and the shuffling. Defaults to `1337`.
        shuffle: reshuffle the training pairs every epoch. Defaults to `True`.
        strict: raise a `DataError` for unpaired or unreadable files instead
            of skipping them. Defaults to `False`.

    Returns:
        A `SegmentationData`.

    Raises:
        DataError: missing subfolders, no usable pair, a mask value outside the
            classes (the file is named), or (`strict=True`) unpaired or
            unreadable files.

    Example:

    >>> data = load_segmentation_folder("cells/", image_size=(64, 64),
    ...                                 validation_split=0.2)  # doctest: +SKIP
    >>> model.fit(data, epochs=5)  # doctest: +SKIP
    """
    from PIL import Image

    size = check_image_size(image_size)
    check_batch_size(batch_size)
    check_validation_split(validation_split)
    directory = os.fspath(directory)
    pairs, problems = _pair(directory, images, masks)
    x, y, paths = [], [], []
    for image_path, mask_path in pairs:
        try:
            with Image.open(image_path) as image:
                image_hw = (image.height, image.width)
                picture = np.asarray(image.convert("RGB").resize(
                    (size[1], size[0]), Image.BILINEAR), dtype=np.float32)
        except Exception as error:  # noqa: BLE001 - PIL raises many types
            problems.append((image_path, f"not a readable image "
                                         f"({type(error).__name__}: {error})"))
            continue
        try:
            mask = read_mask(mask_path)
        except DataError:
            raise
        except Exception as error:  # noqa: BLE001
            problems.append((mask_path, f"not a readable mask "
                                        f"({type(error).__name__}: {error})"))
            continue
        if mask.shape != image_hw:
            problems.append((mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} "
                                        f"but its image is {image_hw[1]}x"
                                        f"{image_hw[0]}"))
            continue
        x.append(picture)
        y.append(read_mask(mask_path, size))
        paths.append(image_path)
    _report(problems, 2 * len(pairs) + len(problems), strict)
    if not x:
        raise DataError(
            "The segmentation folder holds no usable image/mask pair. Put images "
            f"in {images}/ and same-named masks in {masks}/. "
            f"Received: directory={directory!r}")
    y = np.stack(y)
    num_classes = _num_classes(class_names, num_classes, y)
    for path, mask in zip(paths, y, strict=True):
        if int(mask.max()) >= num_classes:
            raise DataError(
                f"A mask has value {int(mask.max())} but there are {num_classes} "
                f"classes (values 0..{num_classes - 1}). Fix the mask or pass "
                f"num_classes/class_names. Received: mask of {path}")
    data = from_segmentation_arrays(
        np.stack(x), y, class_names=class_names, num_classes=num_classes,
        batch_size=batch_size, validation_split=validation_split, seed=seed,
        shuffle=shuffle)
    data.skipped = list(problems)
    order = _split(len(paths), validation_split, seed)
    data.paths = [paths[i] for i in np.concatenate(order)]
    return data


def _num_classes(class_names, num_classes, y) -> int:
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise DataError(
                "num_classes and class_names disagree. Pass one of them. "
                f"Received: num_classes={num_classes}, class_names={class_names}")
        return len(class_names)
    if num_classes is not None:
        return int(num_classes)
    return max(2, int(y.max()) + 1)


def _split(count: int, validation_split: float, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    cut = int(round(validation_split * count))
    if validation_split > 0 and cut == 0 and count > 1:
        cut = 1
    return np.sort(order[cut:]), np.sort(order[:cut])


def from_segmentation_arrays(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    validation_split: float = 0.0,
    seed: int = 1337,
    shuffle: bool = True,
) -> SegmentationData:
    """`SegmentationData` from arrays `(n, h, w, 3)` and masks `(n, h, w)`.

    Raises:
        DataError: masks of another size than the images, values outside the
            classes, or different counts.
    """
    check_batch_size(batch_size)
    check_validation_split(validation_split)
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if images.ndim != 4 or masks.ndim != 3 or len(images) != len(masks):
        raise DataError(
            "Pass images (n, height, width, channels) and masks (n, height, width) "
            f"with one mask per image. Received: images.shape={images.shape}, "
            f"masks.shape={masks.shape}")
    if images.shape[1:3] != masks.shape[1:3]:
        raise DataError(
            "Masks must have the images' height and width. Resize them "
            "(nearest-neighbour). Received: "
            f"images.shape={images.shape}, masks.shape={masks.shape}")
    num_classes = _num_classes(class_names, num_classes, masks)
    if masks.min() < 0 or masks.max() >= num_classes:
        raise DataError(
            f"Mask values must be class indices in [0, {num_classes - 1}]. Fix the "
            "masks or pass num_classes. Received: values in "
            f"[{masks.min()}, {masks.max()}]")
    masks = masks.astype(np.uint8 if num_classes <= 256 else np.int32)
    train, val = _split(len(images), validation_split, seed)
    names = ([str(c) for c in class_names] if class_names is not None
             else [str(i) for i in range(num_classes)])
    data = SegmentationData(
        train=array_pipeline(images[train], masks[train], batch_size=batch_size,
                             shuffle=shuffle, seed=seed),
        validation=(array_pipeline(images[val], masks[val], batch_size=batch_size,
                                   shuffle=False, seed=seed) if len(val) else None),
        class_names=names, num_train=int(len(train)), num_validation=int(len(val)),
        x_train=images[train], y_train=masks[train], x_val=images[val],
        y_val=masks[val])
    data.class_counts = data.class_pixel_counts()
    return data
