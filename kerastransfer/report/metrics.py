"""Classification metrics for reports and `kerastransfer evaluate`, by scikit-learn.

`classification_metrics` returns per-class precision / recall / F1 / support,
accuracy, macro and weighted averages and the confusion matrix as one JSON-safe
dict (`sklearn.metrics.precision_recall_fscore_support`, `accuracy_score`,
`confusion_matrix`; zero where a denominator is zero). `format_classification_report`
renders it with `sklearn.metrics.classification_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.errors import DataError

__all__ = ["classification_metrics", "format_classification_report"]


def _class_indices(values, n: int, name: str) -> np.ndarray:
    array = np.asarray(values).reshape(-1)
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.size and (not np.issubdtype(array.dtype, np.integer)
                       and not np.all(np.equal(np.mod(array, 1), 0))):
        raise DataError(
            f"{name} must hold class indices (integers). Pass argmax(probabilities) "
            f"or integer labels. Received: {name} of dtype {array.dtype}"
        )
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= n)]
    if bad.size:
        raise DataError(
            f"{name} holds class indices outside [0, {n}) for {n} class names. Pass "
            "one name per class. Received: "
            f"{name} values {sorted(set(bad.tolist()))[:5]}"
        )
    return array


def classification_metrics(y_true, y_pred, class_names: Sequence) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, plus the confusion matrix.

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        class_names: names in label order.

    Returns:
        A JSON-safe dict with `accuracy`, `per_class` (name -> `precision`,
        `recall`, `f1`, `support`), `macro_avg`, `weighted_avg`,
        `confusion_matrix` (rows: true class), `class_names` and `num_samples`.

    Raises:
        DataError: there are no samples, the two lengths differ, or an index is
            not one of the classes.

    Example:

    >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["cat", "dog"])
    >>> m["accuracy"], m["per_class"]["dog"]["recall"]
    (0.6666666666666666, 0.5)
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    names = [str(c) for c in class_names]
    n = len(names)
    y_true = _class_indices(y_true, n, "y_true")
    y_pred = _class_indices(y_pred, n, "y_pred")
    if len(y_true) != len(y_pred):
        raise DataError(
            "y_true and y_pred must have one entry per sample. Received: "
            f"len(y_true)={len(y_true)}, len(y_pred)={len(y_pred)}"
        )
    if not len(y_true):
        raise DataError("There are no samples to score. Pass at least one "
                        "labelled sample. Received: 0 samples")
    labels = np.arange(n)

    def scores(average):
        return precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                               average=average, zero_division=0)

    precision, recall, f1, support = scores(None)
    averages = {}
    for key in ("macro", "weighted"):
        p, r, f, _ = scores(key)
        averages[f"{key}_avg"] = {"precision": float(p), "recall": float(r),
                                  "f1": float(f)}
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(names)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": per_class,
        **averages,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": names,
        "num_samples": int(len(y_true)),
    }


def format_classification_report(metrics: dict, digits: int = 4) -> str:
    """The text table of `classification_metrics`' result.

    The confusion matrix determines every figure, so the table is scikit-learn's
    `classification_report` of the (true, predicted) pairs it counts.

    Args:
        metrics: what `classification_metrics` returned.
        digits: decimals of each figure. Defaults to `4`.

    Returns:
        The table, ending with a newline.
    """
    from sklearn.metrics import classification_report

    matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    n = len(metrics["class_names"])
    pairs = np.repeat(np.arange(n * n), matrix.reshape(-1))
    return classification_report(
        pairs // n, pairs % n, labels=np.arange(n),
        target_names=metrics["class_names"], digits=digits, zero_division=0,
    )
