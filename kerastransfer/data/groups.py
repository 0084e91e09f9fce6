"""Patient-safe splits: no group (e.g. patient id) in both training and validation.

`group_split_indices` uses scikit-learn: `StratifiedGroupKFold` (multiclass labels:
stratified as far as the groups allow, `n_splits = round(1 / validation_split)`,
the first fold held out) or `GroupShuffleSplit` (multilabel rows). `folder_leaks`
finds patient-id patterns shared by the two sides of a split that was made without
groups (a folder split), so the loaders can warn.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from kerastransfer.data.checks import check_validation_split

__all__ = ["group_split_indices", "folder_leaks", "read_group_column",
           "PATIENT_ID_PATTERN"]

# A file name's patient part: the leading letters+digits id before a separator,
# e.g. "patient0042_slice003.png" -> "patient0042", "P17-left.dcm" -> "P17".
PATIENT_ID_PATTERN = r"^([A-Za-z]*\d+)[_\-. ]"


def group_split_indices(labels, groups: Sequence, validation_split: float, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of example indices that keeps each group on one side.

    Args:
        labels: integer labels `(n,)`, or multilabel rows `(n, classes)`.
        groups: one group id per example (e.g. patient id), length n.
        validation_split: share held out for validation, in `(0, 1)`.
        seed: seed of the split.

    Returns:
        `(train, validation)`: sorted int64 index arrays; no group is in both.

    Raises:
        ValueError: `groups` of the wrong length, fewer than two groups, or
            `validation_split` of 0.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    validation_split = check_validation_split(validation_split)
    labels = np.asarray(labels)
    groups = np.asarray([str(g) for g in groups])
    if len(groups) != len(labels):
        raise ValueError(
            "groups must have one entry per image. Pass a group (e.g. patient id) "
            f"for every image. Received: len(groups)={len(groups)}, "
            f"images={len(labels)}")
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(
            "A grouped split needs at least two groups: with one group every image "
            "would be on the same side. Add images of other patients or pass "
            f"validation_split=0. Received: groups={unique.tolist()}")
    if validation_split == 0:
        raise ValueError("groups need validation_split > 0 (there is nothing to "
                         "split otherwise). Received: validation_split=0")
    index = np.arange(len(labels))
    if labels.ndim == 1:
        n_splits = int(min(max(2, round(1.0 / validation_split)), len(unique)))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True,
                                        random_state=seed)
        train, val = next(splitter.split(index, labels, groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=validation_split,
                                     random_state=seed)
        train, val = next(splitter.split(index, groups=groups))
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def folder_leaks(train_files: Sequence[str], validation_files: Sequence[str],
                 pattern: str = PATIENT_ID_PATTERN) -> list[str]:
    """Patient ids (by file-name `pattern`) found on both sides of a split.

    Args:
        train_files: the training file paths.
        validation_files: the validation file paths.
        pattern: a regular expression whose first group is the id in a file's
            base name. Defaults to `PATIENT_ID_PATTERN`.

    Returns:
        The sorted ids present in both lists (empty when none match).
    """
    regex = re.compile(pattern)

    def ids(files):
        found = (regex.match(os.path.basename(str(f))) for f in files)
        return {m.group(1) for m in found if m}

    return sorted(ids(train_files) & ids(validation_files))


def read_group_column(source, column: str) -> list[str]:
    """The group of each row (row order) of a CSV file, list of dicts or DataFrame.

    Raises:
        ValueError: the column is missing.
    """
    from kerastransfer.data.records import _read_records

    records, _ = _read_records(source)
    if records and column not in records[0]:
        raise ValueError(
            f"The image list has no column {column!r}. Pass the column that holds "
            f"the patient/group id. Received: columns={sorted(records[0])}")
    return [str(r[column]) for r in records]
