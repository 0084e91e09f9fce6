"""Decisions from probabilities, and test-time augmentation views (numpy only).

Shared by `TransferModel` (Keras) and `OnnxPredictor` (onnxruntime), so that a
threshold chosen on validation data decides the same way in both. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["decide", "tta_views"]


def decide(probabilities, task: str, threshold: float | Sequence[float] | None = None):
    """Turns predicted probabilities into decisions.

    Args:
        probabilities: `(n, num_classes)` model outputs.
        task: `"multiclass"` or `"multilabel"`.
        threshold: `None` (argmax for multiclass, 0.5 for multilabel); a float:
            for a 2-class multiclass model, class 1 when its probability is
            >= threshold; for multilabel, each label's threshold; or one float
            per class (multilabel). Defaults to `None`.

    Returns:
        `(n,)` class indices (multiclass) or `(n, num_classes)` 0/1 ints
        (multilabel).

    Raises:
        ValueError: a task without decisions, or a threshold that does not fit.
    """
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim != 2:
        raise ValueError("probabilities must be (n, num_classes). "
                         f"Received: probabilities.shape={p.shape}")
    if task == "multilabel":
        t = 0.5 if threshold is None else np.asarray(threshold, dtype="float64")
        return (p >= t).astype("int64")
    if task != "multiclass":
        raise ValueError("Decisions apply to multiclass or multilabel outputs. "
                         f"Received: task={task!r}")
    if threshold is None:
        return np.argmax(p, axis=1)
    if p.shape[1] != 2 or np.ndim(threshold) != 0:
        raise ValueError(
            "A multiclass threshold needs a 2-class model and a single float. "
            f"Received: probabilities.shape={p.shape}, threshold={threshold!r}")
    return (p[:, 1] >= float(threshold)).astype("int64")


def tta_views(images) -> list[np.ndarray]:
    """The test-time augmentation views: the images, flipped left-right and
    flipped up-down (channels last).

    Args:
        images: `(n, h, w, c)` images.

    Returns:
        A list of three arrays of the same shape.

    Raises:
        ValueError: `images` is not a rank-4 array.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError("Test-time augmentation needs a batch of images "
                         f"(n, h, w, c). Received: images.shape={x.shape}")
    return [x, x[:, :, ::-1], x[:, ::-1]]
