"""Choosing a model's operating threshold on validation data, by a stated rule.

`choose_model_threshold(model, validation_data, rule)` predicts the validation
data, picks the threshold with `kerastransfer.report.clinical.choose_threshold`
(Youden's J, or a target sensitivity; scikit-learn's ROC curve) and stores it in
the model, so it travels in the `.keras` file and the ONNX metadata.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_model_threshold"]


def choose_model_threshold(model, validation_data, rule: str = "youden",
                           target_sensitivity: float = 0.95):
    """Chooses a model's operating threshold on validation data and stores it.

    The threshold (one per label for a multilabel model) is chosen by
    `choose_threshold` on the model's predictions of `validation_data`, then set
    as `model.threshold`: it is saved in the `.keras` file and the ONNX metadata,
    and `model.decide`, `OnnxPredictor.decide` and `kerastransfer evaluate` use it.

    Args:
        model: a 2-class or multilabel `TransferModel`.
        validation_data: `(x, y)` or a dataset of `(images, labels)`, not the
            test data the model is finally reported on.
        rule, target_sensitivity: see `choose_threshold`.

    Returns:
        The stored threshold: a float, or a list of floats (multilabel).

    Raises:
        ValueError: a model that is neither 2-class nor multilabel, or labels of
            one class only (for some label).

    Example:

    >>> choose_model_threshold(model, (x_val, y_val), "sensitivity")  # doctest: +SKIP
    >>> model.save("model.keras")  # doctest: +SKIP
    """
    from kerastransfer.report.clinical import choose_threshold
    from kerastransfer.report.writer import _predict
    from kerastransfer.tasks.classifier import _check_threshold

    task = getattr(model, "task", "multiclass")
    labels, p = _predict(model, validation_data)
    p = np.asarray(p, dtype="float64")
    if task == "multilabel":
        y = np.asarray(labels).reshape(p.shape) > 0.5
        chosen = [choose_threshold(y[:, k], p[:, k], rule, target_sensitivity)
                  for k in range(p.shape[1])]
    elif task == "multiclass" and p.shape[-1] == 2:
        y = np.asarray(labels)
        y = y.argmax(axis=-1) if y.ndim == 2 else y.reshape(-1)
        chosen = choose_threshold(y, p[:, 1], rule, target_sensitivity)
    else:
        raise ValueError(
            "A decision threshold applies to 2-class or multilabel models. Received: "
            f"task={task!r}, outputs={p.shape[-1]}")
    # roc_curve's thresholds are scores, which can reach 0 or 1 exactly.
    chosen = np.clip(chosen, 1e-7, 1 - 1e-7).tolist()
    model.threshold = _check_threshold(chosen, task, p.shape[-1])
    return model.threshold
