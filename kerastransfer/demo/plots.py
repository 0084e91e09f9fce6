"""The demo's time-to-accuracy picture: held-out accuracy against epochs and
against seconds, pretrained vs scratch."""

from __future__ import annotations

import os


def plot_time_to_accuracy(curves: dict, path: str | os.PathLike,
                          title: str = "") -> str:
    """Write a two-panel PNG: accuracy vs epochs and vs wall-clock seconds.

    Args:
        curves: `{label: [(epoch, seconds, accuracy), ...]}`, e.g. the
            `"curve"` of the pretrained and scratch results of `demo.arms`.
        path: the PNG to write (atomically).
        title: figure title. Defaults to `""`.

    Returns:
        `path` as a string.

    Raises:
        ValueError: if `curves` is empty or a curve has no point.
    """
    from kerastransfer.report.plots import pyplot, save_figure

    if not curves or any(not points for points in curves.values()):
        raise ValueError(
            "plot_time_to_accuracy needs at least one point per curve. Record "
            f"held-out accuracy while training. Received: curves={list(curves)}")
    plt = pyplot()
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for label, points in curves.items():
        epochs, seconds, accuracy = zip(*points, strict=True)
        by_epoch.plot(epochs, accuracy, marker="o", markersize=3, label=label)
        by_time.plot(seconds, accuracy, marker="o", markersize=3, label=label)
    by_epoch.set_xlabel("epoch (pretrained: epoch 1 = feature pass + linear probe)")
    by_time.set_xlabel("seconds of training (wall clock)")
    by_epoch.set_ylabel("held-out accuracy (800 images)")
    for axis in (by_epoch, by_time):
        axis.grid(alpha=0.3)
        axis.set_ylim(0, 1)
    by_epoch.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, os.fspath(path))
