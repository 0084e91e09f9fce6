"""Report figures: learning curves (phase starts marked) and the confusion matrix.

matplotlib (Agg backend) is imported only here, inside the functions; the
confusion matrix is drawn by `sklearn.metrics.ConfusionMatrixDisplay`. Every PNG
is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kerastransfer.errors import DataError

__all__ = ["plot_learning_curves", "plot_confusion_matrix", "pyplot", "save_figure"]

# Above this many classes the counts are not written in the cells (unreadable).
MAX_ANNOTATED_CLASSES = 30


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (no display needed): every
    report figure is drawn through it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 100) -> str:
    """Writes a figure as a PNG atomically and closes it, even when writing
    fails: every report and demo figure is saved through here."""
    from kerastransfer.io import atomic_path

    plt = pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
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
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_confusion_matrix(matrix, class_names: Sequence, path: str) -> str:
    """Draws a confusion matrix (rows: true class) with counts; writes a PNG.

    Args:
        matrix: the `(n, n)` counts, rows the true class.
        class_names: the `n` names in label order.
        path: the `.png` file.

    Returns:
        `path`.

    Raises:
        DataError: the matrix is not `(n, n)` for `n` class names.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    matrix = np.asarray(matrix)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise DataError(
            "The confusion matrix must be (n, n) for n class names. Pass the "
            f"matrix of these classes. Received: shape={matrix.shape}, "
            f"{n} class names"
        )
    plt = pyplot()
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=[str(c) for c in class_names]).plot(
        ax=ax, cmap="Blues", xticks_rotation=45, values_format="d",
        include_values=n <= MAX_ANNOTATED_CLASSES, colorbar=True,
    )
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return save_figure(fig, path)
