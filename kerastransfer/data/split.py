"""Labels: the seeded stratified split, class counts and balanced class weights.

The split depends only on the labels and the seed (numpy's `default_rng`), so
the same seed gives the same split on every run and machine. Multiclass labels
are split per class (stratified: every class keeps its share, and a class with
at least two examples always has one in validation when `validation_split > 0`);
multilabel rows are split at random.
"""

from __future__ import annotations

import numpy as np

from kerastransfer.data.checks import check_label_range, check_validation_split
from kerastransfer.errors import DataError

__all__ = ["split_indices", "class_counts", "dataset_labels", "balanced_class_weight"]


def split_indices(labels, validation_split: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded split of example indices.

    Args:
        labels: integer labels `(n,)`, or multilabel rows `(n, classes)`.
        validation_split: share held out for validation, in `[0, 1)`.
        seed: seed of the split.

    Returns:
        `(train, validation)`: sorted int64 index arrays that together hold
        every index once.

    Raises:
        ValueError: `validation_split` outside `[0, 1)`.

    Example:

    >>> train, val = split_indices([0, 0, 0, 0, 1, 1, 1, 1], 0.25, seed=0)
    >>> len(train), len(val)
    (6, 2)
    """
    validation_split = check_validation_split(validation_split)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if labels.ndim > 1:  # multilabel: plain random split
        order = rng.permutation(len(labels))
        count = int(round(validation_split * len(labels)))
        return np.sort(order[count:]), np.sort(order[:count])
    train, val = [], []
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


def class_counts(labels, class_names: list[str]) -> dict[str, int]:
    """Class name -> number of examples (multilabel rows count in every class).

    Args:
        labels: integer labels `(n,)`, or multilabel rows `(n, classes)`.
        class_names: the class names in label order.

    Returns:
        A dict with one entry per class name, in label order.
    """
    labels = np.asarray(labels)
    if labels.ndim > 1:
        sums = labels.sum(axis=0)
        return {name: int(sums[i]) for i, name in enumerate(class_names)}
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def dataset_labels(dataset) -> np.ndarray:
    """All labels of a finite `tf.data.Dataset` of `(x, y[, w])` (batched or not).

    Args:
        dataset: the dataset.

    Returns:
        The labels, batches concatenated: `(n,)`, or `(n, classes)` for rows.

    Raises:
        DataError: the dataset repeats forever.
    """
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


def balanced_class_weight(labels_or_dataset, num_classes: int) -> dict[int, float]:
    """Class weights inversely proportional to class frequency.

    `weight[c] = n_samples / (num_classes * count[c])`, as scikit-learn's
    `compute_class_weight("balanced")`: every class then contributes the same
    total weight to the loss. A class with no samples gets weight 1.0 (it never
    occurs, so its weight has no effect).

    Args:
        labels_or_dataset: integer labels, one-hot rows, an `ImageData` (its
            training labels), or a finite `tf.data.Dataset` of
            `(images, labels)`.
        num_classes: the number of classes.

    Returns:
        A dict `class index -> weight` for `fit(class_weight=...)`.

    Raises:
        DataError: no labels, or labels outside `[0, num_classes)`.

    Example:

    >>> balanced_class_weight([0, 0, 0, 1], 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    if hasattr(labels_or_dataset, "train_labels"):  # an ImageData
        labels = labels_or_dataset.train_labels
    elif hasattr(labels_or_dataset, "element_spec"):
        labels = dataset_labels(labels_or_dataset)
    else:
        labels = np.asarray(labels_or_dataset)
    if labels is None or labels.size == 0:
        raise DataError("No labels to compute class weights from. Pass the training "
                        "labels. Received: 0 labels")
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1).astype(np.int64)
    check_label_range(labels, num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    total = float(len(labels))
    return {int(c): (total / (num_classes * float(counts[c])) if counts[c] else 1.0)
            for c in range(num_classes)}
