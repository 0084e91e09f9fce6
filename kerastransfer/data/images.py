"""Image files -> `ImageData`: folders and CSV/record lists.

Every builder returns an `ImageData` (`kerastransfer/data/image_data.py`, with
the in-memory sources `from_arrays` and `from_dataset`, re-exported here):
`tf.data` pipelines of `(images, labels)` batches where images are RGB float32
in [0, 255] (what a `TransferModel` takes), plus the class names in label
order, the counts per class and the files that were skipped. Files are checked
up front with Pillow (`checks.scan_images`), so a corrupt or non-image file is
reported before training starts instead of crashing it half-way (`strict=True`
turns that into a `DataError`). The split is `split.split_indices` (seeded,
stratified); the pipelines are in `pipeline.py`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from kerastransfer.data.checks import (
    check_batch_size,
    check_image_size,
    check_validation_split,
    scan_images,
)
from kerastransfer.data.image_data import ImageData, from_arrays, from_dataset
from kerastransfer.data.pipeline import cache_for, file_pipeline
from kerastransfer.data.records import read_image_list
from kerastransfer.data.split import class_counts, split_indices
from kerastransfer.errors import DataError

__all__ = ["ImageData", "load_image_folder", "load_image_list", "from_arrays",
           "from_dataset"]

logger = logging.getLogger("kerastransfer")


def _check_arguments(image_size, batch_size, validation_split,
                     channels=3) -> tuple[int, int]:
    """Checks the loaders' arguments before any file is read; returns image_size."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError("channels must be a positive int (1 for grayscale, 3 for "
                         f"RGB). Received: channels={channels!r}")
    check_batch_size(batch_size)
    check_validation_split(validation_split)
    return check_image_size(image_size)


def _build_from_files(paths, labels, class_names, skipped, *, image_size, batch_size,
                      validation_split, seed, shuffle, cache, groups=None,
                      channels=3) -> ImageData:
    labels = np.asarray(labels)
    if groups is not None:  # patient-safe: kerastransfer/data/groups.py
        from kerastransfer.data.groups import group_split_indices

        train_idx, val_idx = group_split_indices(labels, groups, validation_split, seed)
    else:
        train_idx, val_idx = split_indices(labels, validation_split, seed)
    paths = np.asarray(paths)
    train = file_pipeline(paths[train_idx], labels[train_idx], image_size=image_size,
                          batch_size=batch_size, shuffle=shuffle, seed=seed,
                          cache=cache_for(cache, "train"), channels=channels)
    validation = None
    if len(val_idx):
        validation = file_pipeline(paths[val_idx], labels[val_idx],
                                   image_size=image_size, batch_size=batch_size,
                                   shuffle=False, seed=seed,
                                   cache=cache_for(cache, "validation"),
                                   channels=channels)
    return ImageData(
        train=train, validation=validation, class_names=list(class_names),
        skipped=list(skipped), num_train=int(len(train_idx)),
        num_validation=int(len(val_idx)),
        class_counts=class_counts(labels[train_idx], list(class_names)),
        train_labels=labels[train_idx],
        train_files=[str(p) for p in paths[train_idx]],
        validation_files=[str(p) for p in paths[val_idx]],
    )


def load_image_folder(
    directory: str | os.PathLike,
    *,
    image_size: Sequence[int] = (224, 224),
    batch_size: int = 32,
    validation_split: float = 0.0,
    seed: int = 1337,
    shuffle: bool = True,
    strict: bool = False,
    cache: bool | str = True,
    channels: int = 3,
) -> ImageData:
    """Loads an image folder with one subfolder per class.

    Class names are the subfolder names in sorted order (label `i` is the `i`-th
    name), as `keras.utils.image_dataset_from_directory` does. Every file is
    decoded once with Pillow first: unreadable files are skipped and logged (or
    rejected with `strict=True`). The split is stratified per class and depends
    only on `seed`.

    Args:
        directory: the folder holding one subfolder per class.
        image_size: `(height, width)` every image is resized to. Defaults to
            `(224, 224)`.
        batch_size: images per batch. Defaults to `32`.
        validation_split: share of each class held out for validation.
            Defaults to `0.0`.
        seed: seed of the split and of the shuffling. Defaults to `1337`.
        shuffle: reshuffle the training set every epoch. Defaults to `True`.
        strict: raise a `DataError` for any unreadable file instead of
            skipping it. Defaults to `False`.
        cache: cache decoded images in memory (`True`), in files with this
            path prefix (a string), or not at all (`False`). Defaults to `True`.
        channels: the channels the model takes: 3 (RGB), 1 (grayscale) or more
            (multi-channel DICOM, NIfTI or TIFF files). DICOM, NIfTI, TIFF and
            16-bit PNG files keep their own units (`kerastransfer.data.read_image`;
            map them with the model's `window=`). Defaults to `3`.

    Returns:
        An `ImageData`.

    Raises:
        DataError: the folder is missing or empty, has a single class, holds no
            usable image, or (`strict=True`) holds an unreadable file.

    Example:

    >>> data = load_image_folder("flowers/", image_size=(96, 96),
    ...                          validation_split=0.2)  # doctest: +SKIP
    >>> model.fit(data.train, validation_data=data.validation)  # doctest: +SKIP
    """
    image_size = _check_arguments(image_size, batch_size, validation_split, channels)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(
            "The image folder does not exist. Pass a folder with one subfolder per "
            f"class. Received: directory={directory!r}"
        )
    class_names = sorted(
        entry for entry in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, entry)) and not entry.startswith(".")
    )
    if not class_names:
        raise DataError(
            "The image folder has no class subfolders. Put the images of each class "
            f"in their own subfolder (e.g. {directory}/cat/1.jpg). "
            f"Received: directory={directory!r}"
        )
    if len(class_names) == 1:
        raise DataError(
            "The image folder has a single class subfolder; classification needs at "
            "least two. Add a subfolder per class. "
            f"Received: directory={directory!r} with class {class_names[0]!r}"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        for root, dirs, files in os.walk(os.path.join(directory, name)):
            dirs.sort()
            for file in sorted(files):
                if not file.startswith("."):
                    paths.append(os.path.join(root, file))
                    labels.append(label)
    if not paths:
        raise DataError(
            f"The class subfolders of the image folder hold no files. Add images "
            f"(JPEG, PNG, GIF or BMP). Received: directory={directory!r}"
        )
    good, skipped = scan_images(paths, image_size=image_size, strict=strict,
                                channels=None if channels == 3 else channels)
    if not good:
        raise DataError(
            f"The image folder holds no usable image ({len(paths)} files, none "
            f"readable). Add JPEG, PNG, GIF or BMP images. "
            f"Received: directory={directory!r}"
        )
    paths = [paths[i] for i in good]
    labels = np.asarray([labels[i] for i in good], dtype=np.int32)
    empty = [name for i, name in enumerate(class_names) if not np.any(labels == i)]
    if empty:
        logger.warning("Classes with no usable image: %s", ", ".join(empty))
    data = _build_from_files(
        paths, labels, class_names, skipped, image_size=image_size,
        batch_size=batch_size, validation_split=validation_split, seed=seed,
        shuffle=shuffle, cache=cache, channels=channels,
    )
    logger.info("Found %d images in %d classes (%d train, %d validation, %d skipped).",
                len(paths), len(class_names), data.num_train, data.num_validation,
                len(skipped))
    from kerastransfer.data.groups import folder_leaks

    leaks = folder_leaks(data.train_files, data.validation_files)
    if leaks:
        logger.warning(
            "The folder split may leak: %d patient-like id(s) are in both training "
            "and validation (e.g. %s). Split by patient with load_image_list(..., "
            "groups=...) or group_column=.", len(leaks), ", ".join(leaks[:3]))
    return data


def load_image_list(
    source,
    *,
    path_column: str = "path",
    label_column: str = "label",
    root: str | None = None,
    class_names: Sequence[str] | None = None,
    image_size: Sequence[int] = (224, 224),
    batch_size: int = 32,
    validation_split: float = 0.0,
    seed: int = 1337,
    shuffle: bool = True,
    strict: bool = False,
    cache: bool | str = True,
    groups: Sequence | None = None,
    group_column: str | None = None,
    channels: int = 3,
) -> ImageData:
    """Loads images listed in a CSV file, a list of dicts or a pandas DataFrame.

    Labels may be class names (sorted into label order unless `class_names` is
    given) or integer indices. Relative paths are taken from `root`, else from the
    CSV file's folder, else from the working directory. pandas is not required.

    Args:
        source: a CSV path (with a header row), a list of dicts, or a DataFrame.
        path_column: the column holding file paths. Defaults to `"path"`.
        label_column: the column holding labels. Defaults to `"label"`.
        root: folder that relative paths start from. Defaults to `None`.
        class_names: the class names in label order. Defaults to `None` (sorted
            unique string labels, or `"0"..."n-1"` for integer labels).
        image_size: `(height, width)`. Defaults to `(224, 224)`.
        batch_size: images per batch. Defaults to `32`.
        validation_split: share held out (stratified). Defaults to `0.0`.
        seed: seed of the split and shuffling. Defaults to `1337`.
        shuffle: reshuffle the training set each epoch. Defaults to `True`.
        strict: raise for unreadable files instead of skipping. Defaults to
            `False`.
        cache: as for `load_image_folder`. Defaults to `True`.
        groups: one group id per row (e.g. patient id): no group is in both
            training and validation (`kerastransfer/data/groups.py`). Defaults to
            `None`.
        group_column: the column holding the group ids, instead of `groups`.
            Defaults to `None`.
        channels: as for `load_image_folder`. Defaults to `3`.

    Returns:
        An `ImageData`.

    Raises:
        DataError: no rows, a missing column, an unknown label, or no usable image.
        ValueError: groups of the wrong length, or a single group.

    Example:

    >>> rows = [{"path": "a.png", "label": "cat"}, {"path": "b.png", "label": "dog"}]
    >>> data = load_image_list(rows, image_size=(64, 64))  # doctest: +SKIP
    """
    image_size = _check_arguments(image_size, batch_size, validation_split, channels)
    paths, labels, class_names, base = read_image_list(
        source, path_column=path_column, label_column=label_column, root=root,
        class_names=class_names)
    if group_column is not None:
        from kerastransfer.data.groups import read_group_column

        groups = read_group_column(source, group_column)
    if groups is not None and len(groups) != len(paths):
        raise ValueError(
            "groups must have one entry per listed image. Pass a group (e.g. "
            f"patient id) for every row. Received: len(groups)={len(groups)}, "
            f"rows={len(paths)}")
    good, skipped = scan_images(paths, image_size=image_size, strict=strict,
                                channels=None if channels == 3 else channels)
    if not good:
        raise DataError(f"None of the {len(paths)} listed files is a usable image. "
                        f"Check the paths (relative to {base!r}). "
                        f"Received: first path={paths[0]!r}")
    return _build_from_files(
        [paths[i] for i in good], labels[good], class_names, skipped,
        image_size=image_size, batch_size=batch_size,
        validation_split=validation_split, seed=seed, shuffle=shuffle, cache=cache,
        groups=None if groups is None else [groups[i] for i in good],
        channels=channels,
    )
