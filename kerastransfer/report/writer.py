"""`write_report`: the files a training run leaves behind.

`write_report(model, history, validation_data, report_dir)` writes

* `learning_curves.png`: every metric per epoch (train and validation), with a
  dashed line where each phase after the first starts;
* `confusion_matrix.png` (multiclass): counts, rows = true class;
* `metrics.json`: per-class precision / recall / F1 / support, accuracy, macro
  and weighted averages, the confusion matrix and the phases;
* `classification_report.txt`: the same table as text;
* `gradcam.png` (image classifiers with a convolutional backbone): Grad-CAM
  overlays of a few validation images per class (`report/explain.py`).

Every file is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from kerastransfer.errors import DataError
from kerastransfer.io import atomic_write_text
from kerastransfer.report.metrics import (
    classification_metrics,
    format_classification_report,
)
from kerastransfer.report.plots import plot_confusion_matrix, plot_learning_curves

__all__ = ["write_report"]

logger = logging.getLogger("kerastransfer")


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


def write_report(model, history, validation_data, report_dir: str, *,
                 bootstrap: int = 1000, gradcam_per_class: int = 2) -> dict[str, str]:
    """Writes learning curves, confusion matrix and per-class metrics.

    A 2-class model also gets the clinical metrics in `metrics.json`
    (`"clinical"`: ROC/PR AUC, sensitivity/specificity at its threshold, CIs,
    calibration) and `roc.png`, `pr.png`, `calibration.png`; a multilabel model
    the same per label (at each label's threshold) and macro, with one curve
    per label in the PNGs (and its per-class and macro ROC/PR AUC as `"auc"`).
    An image classifier with a convolutional backbone also gets `gradcam.png`:
    Grad-CAM overlays of `gradcam_per_class` validation images per class.

    Args:
        model: the trained `TransferModel`.
        history: the `PhasedHistory` that `fit` returned (or `None`).
        validation_data: `(x, y)` or a `tf.data.Dataset` to evaluate on, or
            `None` (then only the learning curves are written).
        report_dir: the folder (created if missing).
        bootstrap: resamples of the clinical confidence intervals. Defaults to
            `1000`.
        gradcam_per_class: validation images per class in `gradcam.png`
            (the first 12 classes); `0` for none. Defaults to `2`.

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
    elif hasattr(model, "report_validation"):  # a task with its own tables/plots
        written.update(model.report_validation(validation_data, report_dir, summary))
    elif getattr(model, "task", "multiclass") == "regression":
        labels, predictions = _predict(model, validation_data)
        error = np.abs(predictions.reshape(len(labels), -1) -
                       labels.reshape(len(labels), -1))
        summary["mae"] = float(error.mean())
    else:
        labels, predictions = _predict(model, validation_data)
        class_names = list(getattr(model, "class_names", range(predictions.shape[-1])))
        # Decisions at the model's stored threshold (argmax / 0.5 without one),
        # as `model.decide`, `OnnxPredictor.decide` and `kerastransfer evaluate`.
        from kerastransfer.runtime.postprocess import decide

        threshold = getattr(model, "threshold", None)
        if getattr(model, "task", "multiclass") == "multilabel":
            per_class = {}
            truth = labels > 0.5
            guess = decide(predictions, "multilabel", threshold) == 1
            for i, name in enumerate(class_names):
                metrics = classification_metrics(truth[:, i], guess[:, i],
                                                 ["no", "yes"])
                per_class[str(name)] = metrics["per_class"]["yes"]
            summary["per_class"] = per_class
            from kerastransfer.report.clinical import auc_scores

            summary["auc"] = auc_scores(truth.astype(int), predictions, class_names)
            from kerastransfer.report import clinical

            summary["clinical"] = clinical.multilabel_clinical_report(
                truth.astype(int), predictions, class_names,
                threshold=threshold, n_resamples=bootstrap)
            written.update(clinical.plot_clinical_curves(
                truth.astype(int), predictions, report_dir,
                name=[str(n) for n in class_names]))
        else:
            if labels.ndim == 2 and labels.shape[-1] > 1:
                labels = labels.argmax(axis=-1)
            metrics = classification_metrics(
                labels, decide(predictions, "multiclass", threshold), class_names)
            summary.update(metrics)
            written["confusion_matrix"] = plot_confusion_matrix(
                metrics["confusion_matrix"], metrics["class_names"],
                os.path.join(report_dir, "confusion_matrix.png"))
            path = os.path.join(report_dir, "classification_report.txt")
            atomic_write_text(path, format_classification_report(metrics))
            written["classification_report"] = path
            if len(class_names) == 2:  # binary: clinical metrics, ROC/PR/reliability
                from kerastransfer.report import clinical

                summary["clinical"] = clinical.clinical_report(
                    labels, predictions,
                    threshold=0.5 if threshold is None else threshold,
                    n_resamples=bootstrap)
                if len(np.unique(labels)) == 2:  # what a stated rule would store
                    summary["clinical"]["thresholds_by_rule"] = {
                        "youden": clinical.choose_threshold(labels, predictions[:, 1]),
                        "sensitivity_0.95": clinical.choose_threshold(
                            labels, predictions[:, 1], "sensitivity", 0.95)}
                written.update(clinical.plot_clinical_curves(
                    labels, predictions[:, 1], report_dir, name=str(class_names[1])))
        if gradcam_per_class:
            from kerastransfer.report.explain import plot_class_overlays

            path = plot_class_overlays(model, validation_data,
                                       os.path.join(report_dir, "gradcam.png"),
                                       per_class=gradcam_per_class)
            if path is not None:
                written["gradcam"] = path
    path = os.path.join(report_dir, "metrics.json")
    atomic_write_text(path, json.dumps(summary, indent=2, default=str))
    written["metrics"] = path
    logger.info("Report written to %s: %s", report_dir, ", ".join(sorted(written)))
    return written
