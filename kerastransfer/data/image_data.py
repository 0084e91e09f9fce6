"""`ImageData`, what every image source gives, and the in-memory sources.

`ImageData` holds `tf.data` pipelines of `(images, labels)` batches (images RGB
float32 in [0, 255]) with the class names, counts and files behind them. Files
become one in `kerastransfer/data/images.py` (folders, CSV/record lists: scanned
and checked first); arrays and existing datasets here, with nothing to scan:
`from_arrays` (seeded stratified split) and `from_dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerastransfer.data.checks import (
    check_batch_size,
    check_inputs,
    check_label_range,
    check_validation_split,
)
from kerastransfer.data.pipeline import array_pipeline
from kerastransfer.data.split import (
    balanced_class_weight,
    class_counts,
    dataset_labels,
    split_indices,
)
from kerastransfer.errors import DataError

__all__ = ["ImageData", "from_arrays", "from_dataset"]


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
        train_files: the training image paths (file sources), to audit the split.
        validation_files: the validation image paths (file sources).
    """

    train: Any
    validation: Any
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    num_train: int = 0
    num_validation: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    train_labels: np.ndarray | None = None
    train_files: list[str] = field(default_factory=list)
    validation_files: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_weight(self) -> dict[int, float]:
        """The `"balanced"` class weights of the training split."""
        return balanced_class_weight(self.train_labels, self.num_classes)



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
        DataError: x is empty, not numbers, holds NaN/Inf, has not one label per
            image, or a label is outside `class_names`.
        ValueError: a bad `batch_size` or `validation_split`.
    """
    check_batch_size(batch_size)
    check_validation_split(validation_split)
    x, y = np.asarray(x), np.asarray(y)
    check_inputs(x, y)
    x = x.astype(np.float32, copy=False)
    if y.ndim == 1:
        y = y.astype(np.int32)
        num = len(class_names) if class_names else int(y.max()) + 1
        check_label_range(y, num)
    else:
        y = y.astype(np.float32)
        num = y.shape[1]
        if class_names and len(class_names) != num:
            raise DataError(
                f"class_names has {len(class_names)} names but the label rows have "
                f"{num} columns. Pass one name per column. "
                f"Received: class_names={list(class_names)}"
            )
    class_names = [str(c) for c in class_names] if class_names else [
        str(i) for i in range(num)]
    train_idx, val_idx = split_indices(y, validation_split, seed)
    train = array_pipeline(x[train_idx], y[train_idx], batch_size=batch_size,
                           shuffle=shuffle, seed=seed)
    validation = (array_pipeline(x[val_idx], y[val_idx], batch_size=batch_size,
                                 shuffle=False, seed=seed) if len(val_idx) else None)
    return ImageData(train=train, validation=validation, class_names=class_names,
                     num_train=len(train_idx), num_validation=len(val_idx),
                     class_counts=class_counts(y[train_idx], class_names),
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
                     class_counts=class_counts(labels, [str(c) for c in class_names]),
                     train_labels=labels)
