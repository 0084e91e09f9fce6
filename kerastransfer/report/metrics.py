"""Training reports: learning curves, confusion matrix, per-class metrics.

`write_report(model, history, validation_data, report_dir)` writes

* `learning_curves.png`: every metric per epoch (train and validation), with a
  dashed line where each phase after the first starts;
* `confusion_matrix.png` (multiclass): counts, rows = true class;
* `metrics.json`: per-class precision / recall / F1 / support, accuracy, macro
  and weighted averages, the confusion matrix and the phases;
* `classification_report.txt`: the same table as text.

Every file is written atomically. matplotlib (Agg backend) is imported only here.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from kerastransfer.errors import DataError

__all__ = ["write_report", "classification_metrics", "plot_learning_curves",
           "plot_confusion_matrix", "format_classification_report"]

logger = logging.getLogger("kerastransfer")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    from kerastransfer.io import atomic_path

    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_learning_curves(history, path: str) -> str:
    """Plots each metric per epoch, phase starts marked; writes a PNG.

    Args:
        history: a `PhasedHistory` (or any `keras.callbacks.History`).
        path: the `.png` file.

    Returns:
        `path`.

    Raises:
        DataError: the history has no epochs.
    """
    plt = _pyplot()
    import matplotlib
    import matplotlib.ticker  # noqa: F401  (integer epoch ticks)

    values = {k: v for k, v in history.history.items() if not k.startswith("val_")}
    if not history.history or not history.epoch:
        raise DataError("The history has no epochs to plot. Train first. "
                        "Received: an empty history")
    names = [k for k in values if k not in ("learning_rate",)] or list(values)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8),
                             squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    boundaries = list(getattr(history, "phase_boundaries", []))
    phases = list(getattr(history, "phases", []))
    for ax, name in zip(axes[0], names, strict=False):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            series = history.history.get(key)
            if series is None:
                continue
            points = [(e, v) for e, v in zip(epochs, series, strict=False)
                      if v is not None]
            if points:
                ax.plot(*zip(*points, strict=False), marker="o", label=label)
        for i, boundary in enumerate(boundaries):
            ax.axvline(boundary + 0.5, color="gray", linestyle="--",
                       label="phase start" if i == 0 else None)
        for phase in phases:
            ax.annotate(phase["name"], xy=(phase["start_epoch"] + 1, 1.0),
                        xycoords=("data", "axes fraction"), va="top", fontsize=8,
                        color="gray")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def classification_metrics(y_true, y_pred, class_names) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, plus the confusion matrix.

    Matches `sklearn.metrics.precision_recall_fscore_support` (zero where a
    denominator is zero).

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        class_names: names in label order.

    Returns:
        A JSON-safe dict.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    per_class = {
        str(name): {"precision": float(precision[i]), "recall": float(recall[i]),
                    "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    total = support.sum()
    weights = support / total if total else np.zeros(n)
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "per_class": per_class,
        "macro_avg": {"precision": float(precision.mean()),
                      "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted_avg": {"precision": float((precision * weights).sum()),
                         "recall": float((recall * weights).sum()),
                         "f1": float((f1 * weights).sum())},
        "confusion_matrix": matrix.tolist(),
        "class_names": [str(c) for c in class_names],
        "num_samples": int(total),
    }


def format_classification_report(metrics: dict) -> str:
    """A text table of `classification_metrics`' result."""
    width = max([len(n) for n in metrics["per_class"]] + [12])
    lines = [f"{'':<{width}}  precision  recall  f1-score  support"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}"
                     f"  {row['f1']:8.4f}  {row['support']:7d}")
    lines.append("")
    lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {metrics['accuracy']:8.4f}"
                 f"  {metrics['num_samples']:7d}")
    for key in ("macro_avg", "weighted_avg"):
        row = metrics[key]
        lines.append(f"{key.replace('_', ' '):<{width}}  {row['precision']:9.4f}  "
                     f"{row['recall']:6.4f}  {row['f1']:8.4f}  "
                     f"{metrics['num_samples']:7d}")
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(matrix, class_names, path: str) -> str:
    """Draws a confusion matrix (rows: true class) with counts; writes a PNG."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black",
                        fontsize=8)
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return _save(fig, path)


def _predict(model, validation_data):
    if hasattr(validation_data, "element_spec"):
        labels, predictions = [], []
        for element in validation_data:
            predictions.append(np.asarray(model(element[0], training=False)))
            labels.append(np.asarray(element[1]))
        return np.concatenate(labels), np.concatenate(predictions)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        x, y = validation_data[0], validation_data[1]
        return np.asarray(y), model.predict(np.asarray(x), verbose=0)
    raise DataError("validation_data must be (x, y) or a tf.data.Dataset of "
                    f"(images, labels). Received: {type(validation_data).__name__}")


def write_report(model, history, validation_data, report_dir: str) -> dict[str, str]:
    """Writes learning curves, confusion matrix and per-class metrics.

    Args:
        model: the trained `TransferModel`.
        history: the `PhasedHistory` that `fit` returned (or `None`).
        validation_data: `(x, y)` or a `tf.data.Dataset` to evaluate on, or
            `None` (then only the learning curves are written).
        report_dir: the folder (created if missing).

    Returns:
        A dict `what -> path` of the files written.

    Example:

    >>> history = model.fit(x, y, epochs=2, validation_data=(xv, yv))  # doctest: +SKIP
    >>> write_report(model, history, (xv, yv), "report/")  # doctest: +SKIP
    """
    report_dir = os.fspath(report_dir)
    os.makedirs(report_dir, exist_ok=True)
    written: dict[str, str] = {}
    if history is not None and history.epoch:
        written["learning_curves"] = plot_learning_curves(
            history, os.path.join(report_dir, "learning_curves.png"))
    summary: dict[str, Any] = {"task": getattr(model, "task", None)}
    if history is not None:
        summary["phases"] = list(getattr(history, "phases", []))
        summary["history"] = history.history
    if validation_data is None:
        logger.info("No validation data: the report has learning curves only.")
    elif getattr(model, "task", "multiclass") == "regression":
        labels, predictions = _predict(model, validation_data)
        error = np.abs(predictions.reshape(len(labels), -1) -
                       labels.reshape(len(labels), -1))
        summary["mae"] = float(error.mean())
    else:
        labels, predictions = _predict(model, validation_data)
        class_names = list(getattr(model, "class_names", range(predictions.shape[-1])))
        if getattr(model, "task", "multiclass") == "multilabel":
            per_class = {}
            truth, guess = labels > 0.5, predictions > 0.5
            for i, name in enumerate(class_names):
                metrics = classification_metrics(truth[:, i], guess[:, i],
                                                 ["no", "yes"])
                per_class[str(name)] = metrics["per_class"]["yes"]
            summary["per_class"] = per_class
        else:
            if labels.ndim == 2 and labels.shape[-1] > 1:
                labels = labels.argmax(axis=-1)
            metrics = classification_metrics(labels, predictions.argmax(axis=-1),
                                             class_names)
            summary.update(metrics)
            written["confusion_matrix"] = plot_confusion_matrix(
                metrics["confusion_matrix"], metrics["class_names"],
                os.path.join(report_dir, "confusion_matrix.png"))
            from kerastransfer.io import atomic_write_text

            path = os.path.join(report_dir, "classification_report.txt")
            atomic_write_text(path, format_classification_report(metrics))
            written["classification_report"] = path
    from kerastransfer.io import atomic_write_text

    path = os.path.join(report_dir, "metrics.json")
    atomic_write_text(path, json.dumps(summary, indent=2, default=str))
    written["metrics"] = path
    logger.info("Report written to %s: %s", report_dir, ", ".join(sorted(written)))
    return written
