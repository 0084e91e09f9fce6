"""Image lists: a CSV file, a list of dicts or a DataFrame -> paths and labels.

Labels may be class names (sorted into label order unless `class_names` is
given) or integer indices. Relative paths are taken from `root`, else from the
CSV file's folder, else from the working directory. pandas is not required: a
DataFrame is read through its `to_dict("records")`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence

import numpy as np

from kerastransfer.data.checks import check_label_range
from kerastransfer.errors import DataError

__all__ = ["read_image_list"]


def read_image_list(source, *, path_column: str = "path", label_column: str = "label",
                    root: str | None = None,
                    class_names: Sequence[str] | None = None,
                    ) -> tuple[list[str], np.ndarray, list[str], str]:
    """Reads the paths and labels of an image list (no file is opened).

    Args:
        source: a CSV path (with a header row), a list of dicts, or a DataFrame.
        path_column: the column holding file paths. Defaults to `"path"`.
        label_column: the column holding labels. Defaults to `"label"`.
        root: folder that relative paths start from. Defaults to `None`.
        class_names: the class names in label order. Defaults to `None` (sorted
            unique string labels, or `"0"..."n-1"` for integer labels).

    Returns:
        `(paths, labels, class_names, base)`: full paths, int32 labels, the
        class names, and the folder relative paths were taken from.

    Raises:
        DataError: no rows, a missing column, or an unknown label.
        TypeError: `source` is none of the above.
    """
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
    check_label_range(labels, len(class_names))
    return paths, labels, class_names, base


def _read_records(source) -> tuple[list[dict], str | None]:
    if hasattr(source, "to_dict"):  # a pandas DataFrame, without importing pandas
        return list(source.to_dict("records")), None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise DataError("The CSV file does not exist. Pass the path of an "
                            f"existing CSV file. Received: source={path!r}")
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
