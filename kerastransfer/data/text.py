"""Text data: CSV files and lists of strings -> `TextData` (texts, labels,
class names, a seeded split), with bad rows reported, not silently dropped.

No TensorFlow or Keras here (plain `csv` and numpy).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kerastransfer.data.split import split_indices
from kerastransfer.errors import DataError

__all__ = ["TextData", "fit_inputs", "load_text_csv", "text_data_from_lists"]

logger = logging.getLogger("kerastransfer.data")


@dataclass
class TextData:
    """Texts and labels, split for training.

    Attributes:
        train: `(texts, labels)`: a list of str and an int array `(n,)`
            (multiclass) or a 0/1 float array `(n, classes)` (multilabel).
        validation: the same for the validation split, or `None`.
        class_names: the class names, in label order.
        task: `"multiclass"` or `"multilabel"`.
        skipped: `(row number, reason)` of every row left out.
    """

    train: tuple
    validation: tuple | None
    class_names: list[str]
    task: str = "multiclass"
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def fit_inputs(x, y, validation_data) -> tuple:
    """`(x, y, validation_data)` of a text task's `fit`: a `TextData` given as
    `x` becomes its training texts and labels, and its validation split unless
    `validation_data` is given; anything else passes through."""
    if isinstance(x, TextData):
        if validation_data is None and x.validation is not None:
            validation_data = x.validation
        x, y = x.train
    return x, y, validation_data


def _labels_to_array(labels: list, class_names, multilabel: bool, separator: str
                     ) -> tuple[np.ndarray, list[str]]:
    if multilabel:
        lists = [[p.strip() for p in (lab.split(separator) if isinstance(lab, str)
                                      else lab) if str(p).strip()] for lab in labels]
        names = list(class_names) if class_names is not None else sorted(
            {str(p) for parts in lists for p in parts})
        index = {n: i for i, n in enumerate(names)}
        y = np.zeros((len(lists), len(names)), dtype="float32")
        for row, parts in enumerate(lists):
            for part in parts:
                if str(part) not in index:
                    raise DataError(
                        f"Label {part!r} is not in class_names. Add it or fix the "
                        f"row. Received: class_names={names}")
                y[row, index[str(part)]] = 1.0
        return y, names
    labels = [str(lab) for lab in labels]
    names = list(class_names) if class_names is not None else sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"Labels {unknown[:5]} are not in class_names. Add them or "
                        f"fix those rows. Received: class_names={names}")
    return np.array([index[lab] for lab in labels], dtype="int64"), names


def text_data_from_lists(texts: Sequence, labels: Sequence, *,
                         class_names: Sequence[str] | None = None,
                         validation_split: float = 0.0, seed: int = 0,
                         groups: Sequence | None = None, multilabel: bool = False,
                         label_separator: str = "|") -> TextData:
    """Builds `TextData` from texts and labels (names, or label lists when
    `multilabel`); rows with an empty or non-text text are skipped and reported.

    Args:
        texts: the texts.
        labels: one label per text (a class name or index; with `multilabel`,
            a list of names or a `label_separator`-joined string).
        class_names: the classes, in label order. Defaults to the sorted labels.
        validation_split: share held out for validation, in `[0, 1)`. Defaults
            to `0.0`.
        seed: seed of the split. Defaults to `0`.
        groups: one group key per text: a group's texts all land in the same
            split (no leakage between near-duplicates). Defaults to `None`.
        multilabel: labels are lists of classes. Defaults to `False`.
        label_separator: separator of multilabel strings. Defaults to `"|"`.

    Returns:
        A `TextData`.

    Raises:
        DataError: lengths differ, no usable rows, or labels outside
            `class_names`.
    """
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels) or (groups is not None and len(groups) != len(texts)):
        raise DataError(
            "texts, labels (and groups) need one entry per example. Received: "
            f"{len(texts)} texts, {len(labels)} labels"
            + (f", {len(groups)} groups" if groups is not None else ""))
    keep, skipped = [], []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            skipped.append((i, f"not text ({type(text).__name__})"))
        elif not text.strip():
            skipped.append((i, "empty text"))
        elif labels[i] is None or (
                isinstance(labels[i], str) and not labels[i].strip()):
            skipped.append((i, "no label"))
        else:
            keep.append(i)
    if skipped:
        logger.warning("Skipped %d of %d rows: %s", len(skipped), len(texts),
                       "; ".join(f"row {r}: {why}" for r, why in skipped[:10]))
    if not keep:
        raise DataError(f"No usable rows: every text is empty or not text. "
                        f"Received: {len(texts)} rows, first problems {skipped[:3]}")
    texts = [texts[i] for i in keep]
    y, names = _labels_to_array([labels[i] for i in keep], class_names, multilabel,
                                label_separator)
    task = "multilabel" if multilabel else "multiclass"
    if not validation_split:
        return TextData((texts, y), None, names, task, skipped)
    if groups is None:
        train, val = split_indices(y, validation_split, seed)
    else:  # split the groups, then take their rows
        keys = np.array([str(groups[i]) for i in keep])
        unique = np.unique(keys)
        g_train, g_val = split_indices(np.zeros(len(unique), int), validation_split,
                                       seed)
        val_keys = set(unique[g_val])
        val = np.flatnonzero([k in val_keys for k in keys])
        train = np.flatnonzero([k not in val_keys for k in keys])
    pick = lambda rows: ([texts[i] for i in rows], y[rows])  # noqa: E731
    return TextData(pick(train), pick(val), names, task, skipped)


def load_text_csv(path: str | os.PathLike, *, text_column: str = "text",
                  label_column: str = "label", validation_split: float = 0.0,
                  seed: int = 0, class_names: Sequence[str] | None = None,
                  group_column: str | None = None, multilabel: bool = False,
                  label_separator: str = "|", encoding: str = "utf-8") -> TextData:
    """Reads a CSV file of texts and labels into `TextData`.

    Args:
        path: the CSV file (with a header row).
        text_column: the column holding the text. Defaults to `"text"`.
        label_column: the column holding the label (with `multilabel`:
            `label_separator`-joined class names). Defaults to `"label"`.
        validation_split: share held out for validation. Defaults to `0.0`.
        seed: seed of the split. Defaults to `0`.
        class_names: the classes in label order. Defaults to the sorted labels.
        group_column: a column whose rows with equal values stay in one split.
            Defaults to `None`.
        multilabel: labels are lists of classes. Defaults to `False`.
        label_separator: separator of multilabel labels. Defaults to `"|"`.
        encoding: the file's encoding. Defaults to `"utf-8"`.

    Returns:
        A `TextData` (rows with empty texts or labels are skipped and listed in
        `skipped`, and a warning names them).

    Raises:
        DataError: the file is missing, not UTF-8 text, lacks a column, or has
            no usable rows.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"The CSV file does not exist. Check the path. "
                        f"Received: path={path!r}")
    try:
        with open(path, newline="", encoding=encoding) as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as error:
        raise DataError(f"The CSV file is not {encoding} text. Save it as UTF-8 or "
                        f"pass encoding=. Received: path={path!r}") from error
    columns = list(rows[0]) if rows else []
    needed = [text_column, label_column] + ([group_column] if group_column else [])
    for column in needed:
        if column not in columns:
            raise DataError(
                f"The CSV file has no column {column!r}. Pass text_column=/"
                f"label_column= naming one of its columns. Received: columns={columns}")
    return text_data_from_lists(
        [r[text_column] for r in rows], [r[label_column] for r in rows],
        class_names=class_names, validation_split=validation_split, seed=seed,
        groups=[r[group_column] for r in rows] if group_column else None,
        multilabel=multilabel, label_separator=label_separator)
