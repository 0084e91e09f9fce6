"""Data pipelines: image folders, CSV/record lists, arrays, any `tf.data.Dataset`.

Every builder returns an `ImageData`: `tf.data` pipelines of `(images, labels)`
batches where images are RGB float32 in [0, 255] (what a `TransferModel` takes),
plus the class names in label order, the counts per class and the files that
were skipped. Files are checked up front with Pillow (a real decode, not just
the extension), so a corrupt or non-image file is reported before training
starts instead of crashing it half-way (`strict=True` turns that into a
`DataError`).

Pipelines decode in parallel, cache the decoded images (in memory, or in a
file when `cache` is a path), shuffle after the cache (so every epoch has a new
order) and prefetch with `AUTOTUNE`. Augmentation (`augment_dataset`) is a
`tf.data` map of Keras preprocessing layers: it runs only while training and is
never part of the model that gets saved or exported.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerastransfer.errors import DataError

__all__ = [
    "ImageData",
    "IMAGE_EXTENSIONS",
    "AUGMENTATION_PRESETS",
    "load_image_folder",
    "load_image_list",
    "from_arrays",
    "from_dataset",
    "balanced_class_weight",
    "augmentation_layers",
    "augment_dataset",
    "scan_images",
    "check_image_file",
]

logger = logging.getLogger("kerastransfer")

# Formats that `tf.io.decode_image` decodes (the pipeline decodes in TensorFlow).
_TF_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# Augmentation presets: (layer class name, kwargs), images in [0, 255].
AUGMENTATION_PRESETS: dict[str, list[tuple[str, dict]]] = {
    "light": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.03}),
    ],
    "medium": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.08}),
        ("RandomZoom", {"height_factor": 0.15}),
        ("RandomContrast", {"factor": 0.2, "value_range": (0, 255)}),
    ],
    "heavy": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.15}),
        ("RandomZoom", {"height_factor": 0.25}),
        ("RandomTranslation", {"height_factor": 0.1, "width_factor": 0.1}),
        ("RandomContrast", {"factor": 0.35, "value_range": (0, 255)}),
        ("RandomBrightness", {"factor": 0.2, "value_range": (0, 255)}),
    ],
}


@dataclass
class ImageData:
    """Training (and validation) pipelines with what is known about them.

    Attributes:
        train: a `tf.data.Dataset` of `(images, labels)` batches: float32 RGB
            images in [0, 255], int32 labels (float32 rows for multilabel).
        validation: the same for the validation split, or `None`.
        class_names: class names in label order.
        skipped: `(path, reason)` for every file that was left out.
        num_train: number of training images.
        num_validation: number of validation images.
        class_counts: class name -> number of training images.
        train_labels: the training labels (numpy), for `class_weight`.
    """

    train: Any
    validation: Any
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    num_train: int = 0
    num_validation: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    train_labels: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_weight(self) -> dict[int, float]:
        """The `"balanced"` class weights of the training split."""
        return balanced_class_weight(self.train_labels, self.num_classes)


# --- Checking files ---------------------------------------------------------


def check_image_file(path: str, image_size: Sequence[int] | None = None) -> str | None:
    """Decodes `path` with Pillow; returns why it cannot be used, or `None`.

    Args:
        path: the file.
        image_size: the target `(height, width)`: JPEGs are decoded at reduced
            scale close to it, which makes the check fast. Defaults to `None`.

    Returns:
        `None` for a usable image, otherwise a short reason.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            kind = image.format
            if kind not in _TF_FORMATS:
                return (f"unsupported format {kind} (use JPEG, PNG, GIF or BMP)")
            if image_size is not None and kind == "JPEG":
                image.draft("RGB", (int(image_size[1]), int(image_size[0])))
            image.load()  # a real decode: truncated files fail here
            if image.width < 1 or image.height < 1:
                return "empty image"
    except Exception as error:  # PIL raises many types for bad files
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


def scan_images(paths: Sequence[str], *, image_size=None, strict: bool = False,
                ) -> tuple[list[int], list[tuple[str, str]]]:
    """Checks every file; returns the indices of good files and the skipped ones.

    Raises:
        DataError: `strict=True` and at least one file is not a usable image.
    """
    good, skipped = [], []
    for index, path in enumerate(paths):
        reason = check_image_file(path, image_size)
        if reason is None:
            good.append(index)
        else:
            skipped.append((path, reason))
    if skipped:
        listing = "\n".join(f"  {p}: {r}" for p, r in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        if strict:
            raise DataError(
                f"{len(skipped)} of {len(paths)} files are not usable images. "
                "Remove or fix them, or pass strict=False to skip them. "
                f"Received: these files:\n{listing}{more}"
            )
        logger.warning("Skipping %d of %d files that are not usable images:\n%s%s",
                       len(skipped), len(paths), listing, more)
    return good, skipped


# --- Splitting and pipelines ------------------------------------------------


def _split(labels: np.ndarray, validation_split: float, seed: int):
    """A stratified, seeded split: indices of (train, validation)."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(
            "validation_split must be in [0, 1). "
            f"Received: validation_split={validation_split!r}"
        )
    rng = np.random.default_rng(seed)
    train, val = [], []
    if labels.ndim > 1:  # multilabel: plain random split
        order = rng.permutation(len(labels))
        count = int(round(validation_split * len(labels)))
        return np.sort(order[count:]), np.sort(order[:count])
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        count = int(round(validation_split * len(members)))
        if validation_split > 0 and count == 0 and len(members) > 1:
            count = 1
        val.extend(members[:count])
        train.extend(members[count:])
    return (np.sort(np.array(train, dtype=np.int64)),
            np.sort(np.array(val, dtype=np.int64)))


def _decode_fn(image_size):
    import tensorflow as tf

    height, width = int(image_size[0]), int(image_size[1])

    def decode(path, label):
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, (height, width))  # float32, [0, 255]
        return image, label

    return decode


def _file_pipeline(paths, labels, *, image_size, batch_size, shuffle, seed, cache):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths), labels))
    if shuffle and not cache:  # cheap: shuffle file names before decoding
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_decode_fn(image_size), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
        if shuffle:  # after the cache, so every epoch has a new order
            dataset = dataset.shuffle(len(paths), seed=seed,
                                      reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _array_pipeline(x, y, *, batch_size, shuffle, seed):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _check_batch_size(batch_size):
    if (not isinstance(batch_size, int) or isinstance(batch_size, bool)
            or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int. Received: "
                         f"batch_size={batch_size!r}")


def _counts(labels: np.ndarray, class_names: list[str]) -> dict[str, int]:
    if labels.ndim > 1:
        sums = labels.sum(axis=0)
        return {name: int(sums[i]) for i, name in enumerate(class_names)}
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def _cache_for(cache, suffix):
    if isinstance(cache, (str, os.PathLike)) and cache:
        return f"{os.fspath(cache)}.{suffix}"
    return bool(cache)


def _build_from_files(paths, labels, class_names, skipped, *, image_size, batch_size,
                      validation_split, seed, shuffle, cache) -> ImageData:
    _check_batch_size(batch_size)
    labels = np.asarray(labels)
    train_idx, val_idx = _split(labels, validation_split, seed)
    paths = np.asarray(paths)
    train = _file_pipeline(paths[train_idx], labels[train_idx], image_size=image_size,
                           batch_size=batch_size, shuffle=shuffle, seed=seed,
                           cache=_cache_for(cache, "train"))
    validation = None
    if len(val_idx):
        validation = _file_pipeline(paths[val_idx], labels[val_idx],
                                    image_size=image_size, batch_size=batch_size,
                                    shuffle=False, seed=seed,
                                    cache=_cache_for(cache, "validation"))
    return ImageData(
        train=train, validation=validation, class_names=list(class_names),
        skipped=list(skipped), num_train=int(len(train_idx)),
        num_validation=int(len(val_idx)),
        class_counts=_counts(labels[train_idx], list(class_names)),
        train_labels=labels[train_idx],
    )


def _check_image_size(image_size):
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or any(not isinstance(s, int) or s < 1 for s in image_size)):
        raise ValueError("image_size must be (height, width) in pixels. "
                         f"Received: image_size={image_size!r}")
    return tuple(image_size)


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
    image_size = _check_image_size(image_size)
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
    good, skipped = scan_images(paths, image_size=image_size, strict=strict)
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
        shuffle=shuffle, cache=cache,
    )
    logger.info("Found %d images in %d classes (%d train, %d validation, %d skipped).",
                len(paths), len(class_names), data.num_train, data.num_validation,
                len(skipped))
    return data


def _read_records(source) -> tuple[list[dict], str | None]:
    if hasattr(source, "to_dict"):  # a pandas DataFrame, without importing pandas
        return list(source.to_dict("records")), None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise DataError(f"The CSV file does not exist. Received: source={path!r}")
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f)), os.path.dirname(os.path.abspath(path))
    if isinstance(source, Iterable):
        records = list(source)
        if not all(isinstance(r, dict) for r in records):
            kind = type(next(r for r in records if not isinstance(r, dict))).__name__
            raise TypeError("source must be a CSV path, a DataFrame or a list of "
                            f"dicts. Received: an item of type {kind}")
        return records, None
    raise TypeError("source must be a CSV path, a DataFrame or a list of dicts. "
                    f"Received: source={source!r}")


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

    Returns:
        An `ImageData`.

    Raises:
        DataError: no rows, a missing column, an unknown label, or no usable image.

    Example:

    >>> rows = [{"path": "a.png", "label": "cat"}, {"path": "b.png", "label": "dog"}]
    >>> data = load_image_list(rows, image_size=(64, 64))  # doctest: +SKIP
    """
    image_size = _check_image_size(image_size)
    records, csv_dir = _read_records(source)
    if not records:
        raise DataError("The image list is empty. Add rows with a path and a label. "
                        f"Received: {len(records)} rows")
    for column in (path_column, label_column):
        if column not in records[0]:
            raise DataError(
                f"The image list has no {column!r} column. Name the columns with "
                f"path_column=/label_column=. Received: columns={list(records[0])}"
            )
    base = root or csv_dir or os.getcwd()
    paths = [os.path.join(base, str(r[path_column])) for r in records]
    raw = [r[label_column] for r in records]
    as_int = []
    for value in raw:
        try:
            as_int.append(int(value))
        except (TypeError, ValueError):
            as_int = None
            break
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if as_int is not None and not all(str(v) in class_names for v in raw):
            labels = as_int
        else:
            unknown = sorted({str(v) for v in raw} - set(class_names))
            if unknown:
                raise DataError(f"Labels not in class_names: {unknown}. Add them to "
                                f"class_names. Received: class_names={class_names}")
            labels = [class_names.index(str(v)) for v in raw]
    elif as_int is not None:
        class_names = [str(i) for i in range(max(as_int) + 1)]
        labels = as_int
    else:
        class_names = sorted({str(v) for v in raw})
        labels = [class_names.index(str(v)) for v in raw]
    labels = np.asarray(labels, dtype=np.int32)
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(f"Integer labels must be in [0, {len(class_names) - 1}]. "
                        f"Received: labels in [{labels.min()}, {labels.max()}]")
    good, skipped = scan_images(paths, image_size=image_size, strict=strict)
    if not good:
        raise DataError(f"None of the {len(paths)} listed files is a usable image. "
                        f"Check the paths (relative to {base!r}). "
                        f"Received: first path={paths[0]!r}")
    return _build_from_files(
        [paths[i] for i in good], labels[good], class_names, skipped,
        image_size=image_size, batch_size=batch_size,
        validation_split=validation_split, seed=seed, shuffle=shuffle, cache=cache,
    )


def from_arrays(
    x,
    y,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 32,
    validation_split: float = 0.0,
    seed: int = 1337,
    shuffle: bool = True,
) -> ImageData:
    """Wraps numpy images and labels in an `ImageData` (seeded stratified split).

    Args:
        x: images, `(n, height, width, 3)`, RGB in [0, 255].
        y: integer labels `(n,)` or multilabel rows `(n, classes)`.
        class_names: class names. Defaults to `"0"..."n-1"`.
        batch_size: images per batch. Defaults to `32`.
        validation_split: share held out. Defaults to `0.0`.
        seed: seed of the split and shuffling. Defaults to `1337`.
        shuffle: reshuffle the training set each epoch. Defaults to `True`.

    Returns:
        An `ImageData`.

    Raises:
        DataError: x and y do not match, or x is empty.
    """
    _check_batch_size(batch_size)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise DataError("x must be non-empty with one label per image. "
                        f"Received: {len(x)} images and {len(y)} labels")
    if y.ndim == 1:
        y = y.astype(np.int32)
        num = int(y.max()) + 1
    else:
        y = y.astype(np.float32)
        num = y.shape[1]
    class_names = [str(c) for c in class_names] if class_names else [
        str(i) for i in range(num)]
    train_idx, val_idx = _split(y, validation_split, seed)
    train = _array_pipeline(x[train_idx], y[train_idx], batch_size=batch_size,
                            shuffle=shuffle, seed=seed)
    validation = (_array_pipeline(x[val_idx], y[val_idx], batch_size=batch_size,
                                  shuffle=False, seed=seed) if len(val_idx) else None)
    return ImageData(train=train, validation=validation, class_names=class_names,
                     num_train=len(train_idx), num_validation=len(val_idx),
                     class_counts=_counts(y[train_idx], class_names),
                     train_labels=y[train_idx])


def from_dataset(dataset, *, class_names: Sequence[str], validation=None) -> ImageData:
    """Wraps an existing batched `tf.data.Dataset` of `(images, labels)`.

    Counts are read by iterating the labels once (finite datasets only).

    Args:
        dataset: the training dataset.
        class_names: the class names in label order.
        validation: a validation dataset. Defaults to `None`.

    Returns:
        An `ImageData`.
    """
    labels = dataset_labels(dataset)
    count_val = len(dataset_labels(validation)) if validation is not None else 0
    return ImageData(train=dataset, validation=validation,
                     class_names=[str(c) for c in class_names],
                     num_train=len(labels), num_validation=count_val,
                     class_counts=_counts(labels, [str(c) for c in class_names]),
                     train_labels=labels)


def dataset_labels(dataset) -> np.ndarray:
    """All labels of a finite `tf.data.Dataset` of `(x, y[, w])` (batched or not)."""
    import tensorflow as tf

    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DataError("The dataset repeats forever, so its labels cannot be "
                        "counted. Pass a finite dataset (no .repeat()). "
                        "Received: an infinite dataset")
    chunks = []
    for element in dataset.map(lambda *e: e[1]).as_numpy_iterator():
        element = np.asarray(element)
        chunks.append(element.reshape(-1) if element.ndim <= 1 else element)
    if not chunks:
        return np.zeros((0,), dtype=np.int32)
    return np.concatenate(chunks)


# --- Class weights ----------------------------------------------------------


def balanced_class_weight(labels_or_dataset, num_classes: int) -> dict[int, float]:
    """Class weights inversely proportional to class frequency.

    `weight[c] = n_samples / (num_classes * count[c])`, as scikit-learn's
    `compute_class_weight("balanced")`: every class then contributes the same
    total weight to the loss. A class with no samples gets weight 1.0 (it never
    occurs, so its weight has no effect).

    Args:
        labels_or_dataset: integer labels, one-hot rows, an `ImageData`, or a
            finite `tf.data.Dataset` of `(images, labels)`.
        num_classes: the number of classes.

    Returns:
        A dict `class index -> weight` for `fit(class_weight=...)`.

    Raises:
        DataError: no labels, or labels outside `[0, num_classes)`.

    Example:

    >>> balanced_class_weight([0, 0, 0, 1], 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    if isinstance(labels_or_dataset, ImageData):
        labels = labels_or_dataset.train_labels
    elif hasattr(labels_or_dataset, "element_spec"):
        labels = dataset_labels(labels_or_dataset)
    else:
        labels = np.asarray(labels_or_dataset)
    if labels is None or labels.size == 0:
        raise DataError("No labels to compute class weights from. Pass the training "
                        "labels. Received: 0 labels")
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1).astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(
            f"Labels must be in [0, {num_classes - 1}]. Fix the labels or num_classes. "
            f"Received: labels in [{labels.min()}, {labels.max()}]"
        )
    counts = np.bincount(labels, minlength=num_classes)
    total = float(len(labels))
    return {int(c): (total / (num_classes * float(counts[c])) if counts[c] else 1.0)
            for c in range(num_classes)}


# --- Augmentation -----------------------------------------------------------


def augmentation_layers(preset: str | Sequence | None, seed: int | None = None):
    """The Keras preprocessing layers of an augmentation preset.

    Args:
        preset: `"light"`, `"medium"`, `"heavy"`, `None`, or a list of Keras
            layers used as given.
        seed: seed of the random layers. Defaults to `None`.

    Returns:
        A `keras.Sequential` (or `None` for `preset=None`).

    Raises:
        ValueError: an unknown preset name.
    """
    import keras

    if preset is None:
        return None
    if isinstance(preset, keras.Layer):
        return preset
    if isinstance(preset, str):
        if preset not in AUGMENTATION_PRESETS:
            raise ValueError(
                f"Unknown augmentation preset. Use one of "
                f"{sorted(AUGMENTATION_PRESETS)} or None. Received: "
                f"augmentation={preset!r}"
            )
        layers = [getattr(keras.layers, name)(**kwargs, seed=None if seed is None
                                               else seed + i)
                  for i, (name, kwargs) in enumerate(AUGMENTATION_PRESETS[preset])]
        return keras.Sequential(layers, name=f"augmentation_{preset}")
    if isinstance(preset, Sequence):
        return keras.Sequential(list(preset), name="augmentation")
    raise TypeError("augmentation must be a preset name, a list of Keras layers or "
                    f"None. Received: augmentation={preset!r}")


def augment_dataset(dataset, preset, *, seed: int | None = None):
    """Applies an augmentation preset to the images of a `(x, y[, w])` dataset.

    The layers run in the `tf.data` pipeline with `training=True`, so they never
    become part of the model (nothing to strip before export).

    Args:
        dataset: a batched `tf.data.Dataset`.
        preset: as for `augmentation_layers`.
        seed: seed of the random layers. Defaults to `None`.

    Returns:
        The augmented dataset (the same dataset for `preset=None`).
    """
    import tensorflow as tf

    layers = augmentation_layers(preset, seed)
    if layers is None:
        return dataset

    def apply(x, *rest):
        return (layers(x, training=True), *rest)

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


# --- fit() integration ------------------------------------------------------


def prepare_fit_inputs(model, x, y, *, augmentation=None, seed: int | None = None,
                       **fit_kwargs):
    """Turns what `TransferModel.fit` was given into what Keras's `fit` takes.

    * an `ImageData` becomes its training dataset (its validation split is used
      unless `validation_data` is given);
    * `class_weight="balanced"` is computed from the training labels;
    * with `augmentation`, numpy inputs become a shuffled, batched `tf.data`
      pipeline (a `validation_split` is taken first, as Keras would), then the
      augmentation layers are mapped over the training images only.

    Returns:
        `(x, y, fit_kwargs)`.

    Raises:
        DataError: an `ImageData` whose classes do not match the model, or
            `class_weight="balanced"` for a task that is not multiclass.
    """
    import tensorflow as tf

    if isinstance(x, ImageData):
        if x.num_classes != model.num_classes and model.task != "regression":
            raise DataError(
                f"The data has {x.num_classes} classes ({', '.join(x.class_names)}) "
                f"but the model has num_classes={model.num_classes}. Build the model "
                "with class_names=data.class_names. "
                f"Received: class_names={x.class_names}"
            )
        if fit_kwargs.get("validation_data") is None and x.validation is not None:
            fit_kwargs["validation_data"] = x.validation
        x = x.train
    weight = fit_kwargs.get("class_weight")
    if isinstance(weight, str):
        if weight != "balanced":
            raise ValueError("class_weight must be a dict, 'balanced' or None. "
                             f"Received: class_weight={weight!r}")
        if model.task != "multiclass":
            raise DataError("class_weight='balanced' needs a multiclass task. Use "
                            "sample weights for other tasks. "
                            f"Received: task={model.task!r}")
        source = x if hasattr(x, "element_spec") else y
        fit_kwargs["class_weight"] = balanced_class_weight(source, model.num_classes)
        logger.info("Balanced class weights: %s", fit_kwargs["class_weight"])
    if augmentation is None:
        return x, y, fit_kwargs
    if not hasattr(x, "element_spec"):
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        sample_weight = fit_kwargs.pop("sample_weight", None)
        split = fit_kwargs.pop("validation_split", 0.0) or 0.0
        if split and fit_kwargs.get("validation_data") is None:
            cut = int(len(x) * (1.0 - split))  # the last part, as Keras does
            fit_kwargs["validation_data"] = (
                (x[cut:], y[cut:]) if sample_weight is None
                else (x[cut:], y[cut:], sample_weight[cut:]))
            x, y = x[:cut], y[:cut]
            sample_weight = None if sample_weight is None else sample_weight[:cut]
        parts = (x, y) if sample_weight is None else (x, y, sample_weight)
        dataset = tf.data.Dataset.from_tensor_slices(parts)
        if fit_kwargs.pop("shuffle", True):
            dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        batch_size = fit_kwargs.pop("batch_size", None) or 32
        x, y = dataset.batch(batch_size), None
    else:
        fit_kwargs.pop("batch_size", None)
    x = augment_dataset(x, augmentation, seed=seed).prefetch(tf.data.AUTOTUNE)
    return x, y, fit_kwargs
