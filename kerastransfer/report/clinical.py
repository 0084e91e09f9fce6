"""The metrics medical users report, from scikit-learn.

ROC AUC and PR AUC (average precision) per class and macro; sensitivity and
specificity at an operating threshold chosen on validation data by a stated rule
(Youden's J, or the lowest threshold reaching a target sensitivity); percentile
bootstrap confidence intervals; calibration (reliability curve, expected
calibration error from `sklearn.calibration.calibration_curve`'s bins); ROC, PR and
reliability PNGs (`RocCurveDisplay`, `PrecisionRecallDisplay`,
`CalibrationDisplay`). `clinical_report` covers a 2-class model,
`multilabel_clinical_report` every label of a multilabel one (each at its own
stored threshold) with macro averages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["choose_threshold", "sensitivity_specificity", "auc_scores", "bootstrap_ci",
           "calibration", "clinical_report", "multilabel_clinical_report",
           "plot_clinical_curves"]


def _binary(y_true, scores):
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype="float64").ravel()
    if len(y) != len(s) or len(y) == 0:
        raise ValueError("y_true and scores must be non-empty and of one length. "
                         f"Received: len(y_true)={len(y)}, len(scores)={len(s)}")
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("Binary labels must be 0 or 1. "
                         f"Received: labels={np.unique(y).tolist()}")
    return y, s


def choose_threshold(y_true, scores, rule: str = "youden",
                     target_sensitivity: float = 0.95) -> float:
    """Chooses the operating threshold on validation data.

    Args:
        y_true: 0/1 labels.
        scores: predicted probabilities of the positive class.
        rule: `"youden"` (maximizes sensitivity + specificity - 1) or
            `"sensitivity"` (the highest threshold whose sensitivity is at least
            `target_sensitivity`). Defaults to `"youden"`.
        target_sensitivity: for `rule="sensitivity"`. Defaults to `0.95`.

    Returns:
        The threshold: predict positive when `score >= threshold`.

    Raises:
        ValueError: an unknown rule, or labels of one class only.
    """
    from sklearn.metrics import roc_curve

    y, s = _binary(y_true, scores)
    if len(np.unique(y)) < 2:
        raise ValueError("Choosing a threshold needs positive and negative examples. "
                         f"Received: labels={np.unique(y).tolist()}")
    fpr, tpr, thresholds = roc_curve(y, s)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    if rule == "sensitivity":
        if not 0 < target_sensitivity <= 1:
            raise ValueError("target_sensitivity must be in (0, 1]. "
                             f"Received: target_sensitivity={target_sensitivity!r}")
        return float(thresholds[int(np.argmax(tpr >= target_sensitivity))])
    raise ValueError("rule must be 'youden' or 'sensitivity'. "
                     f"Received: rule={rule!r}")


def sensitivity_specificity(y_true, scores, threshold: float) -> tuple[float, float]:
    """Sensitivity (recall of positives) and specificity at `score >= threshold`."""
    from sklearn.metrics import confusion_matrix

    y, s = _binary(y_true, scores)
    tn, fp, fn, tp = confusion_matrix(y, (s >= threshold).astype(int),
                                      labels=[0, 1]).ravel()
    return (float(tp / (tp + fn)) if tp + fn else float("nan"),
            float(tn / (tn + fp)) if tn + fp else float("nan"))


def auc_scores(y_true, probabilities, class_names: Sequence[str] | None = None) -> dict:
    """ROC AUC and PR AUC (average precision) per class (one-vs-rest) and macro.

    Args:
        y_true: class indices `(n,)` or multilabel 0/1 rows `(n, classes)`.
        probabilities: `(n, classes)` predicted probabilities.
        class_names: names for the per-class keys. Defaults to `"0"`, `"1"`, ...

    Returns:
        `{"roc_auc": {name: v, ..., "macro": v}, "pr_auc": {...}}`.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    p = np.asarray(probabilities, dtype="float64")
    y = np.asarray(y_true)
    onehot = y if y.ndim == 2 else np.eye(p.shape[1], dtype=int)[y.astype(int)]
    names = list(class_names or [str(i) for i in range(p.shape[1])])
    out = {"roc_auc": {}, "pr_auc": {}}
    for k, name in enumerate(names):
        if len(np.unique(onehot[:, k])) < 2:
            out["roc_auc"][name] = out["pr_auc"][name] = float("nan")
            continue
        out["roc_auc"][name] = float(roc_auc_score(onehot[:, k], p[:, k]))
        out["pr_auc"][name] = float(average_precision_score(onehot[:, k], p[:, k]))
    for key in out:
        out[key]["macro"] = float(np.nanmean(list(out[key].values())))
    return out


def bootstrap_ci(metric: Callable, y_true, scores, *, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `metric(y_true, scores)`.

    Resamples (with replacement) where the metric is undefined (e.g. one class
    only) are skipped.

    Returns:
        `(low, high)`; `(nan, nan)` when the metric is undefined on every
        resample.
    """
    values = _bootstrap_values(metric, y_true, scores, n_resamples=n_resamples,
                               seed=seed)
    return _percentiles(values, confidence)


def _percentiles(values, confidence: float = 0.95) -> tuple[float, float]:
    values = np.asarray(values)[np.isfinite(values)]
    if not len(values):  # every resample undefined (e.g. a single positive)
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))


def _bootstrap_values(metric: Callable, y_true, scores, *, n_resamples: int,
                      seed: int) -> np.ndarray:
    """`metric` on each resample (NaN where undefined); a given seed draws the
    same resamples for any metric of data of one length, so per-class values
    can be combined resample by resample (the macro CIs)."""
    import warnings

    import sklearn
    from sklearn.exceptions import UndefinedMetricWarning

    y, s = np.asarray(y_true), np.asarray(scores)
    rng = np.random.default_rng(seed)
    values = np.full(n_resamples, np.nan)
    # The inputs were checked once; sklearn's per-call validation dominated the
    # time (30 s for 4 x 1000 resamples of 24 scores on a loaded 2-core machine).
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True), \
            warnings.catch_warnings():
        # A resample with one class makes the AUCs undefined: skipped.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for i in range(n_resamples):
            idx = rng.integers(0, len(y), len(y))
            try:
                values[i] = float(metric(y[idx], s[idx]))
            except ValueError:
                continue
    return values


def _average_precision(y_true, scores) -> float:
    """`average_precision_score`, undefined (ValueError, so a bootstrap skips
    the resample) without a positive: scikit-learn returns 0 there with a
    warning, which pulled the PR AUC's interval down once per such resample."""
    from sklearn.metrics import average_precision_score

    if not np.any(np.asarray(y_true) == 1):
        raise ValueError("average precision is undefined without a positive")
    return average_precision_score(y_true, scores)


def _rate_cis(y, decided, *, n_resamples: int, seed: int, confidence: float = 0.95):
    """Bootstrap CIs of sensitivity and specificity, all resamples at once.

    The same resamples and percentile rule as `bootstrap_ci` (same seed), but
    the two rates are counts of the resampled decisions, so they are computed
    for every resample in one numpy step (a confusion matrix per resample
    through sklearn took seconds).
    """
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, len(y), len(y)) for _ in range(n_resamples)])
    truth, guess = y[idx] == 1, decided[idx]
    alpha = (1 - confidence) / 2
    out = []
    for positive in (True, False):
        cases = truth == positive
        hits = (guess == positive) & cases
        count = cases.sum(axis=1)
        rates = hits.sum(axis=1)[count > 0] / count[count > 0]
        out.append((float(np.quantile(rates, alpha)),
                    float(np.quantile(rates, 1 - alpha))))
    return out


def calibration(y_true, scores, n_bins: int = 10) -> dict:
    """Reliability curve and expected calibration error (uniform bins).

    Returns:
        `{"prob_true", "prob_pred", "counts", "ece"}`: sklearn's
        `calibration_curve` per non-empty bin, the bin sizes, and the ECE
        (the bins' |accuracy - confidence| weighted by their sizes).
    """
    from sklearn.calibration import calibration_curve

    y, s = _binary(y_true, scores)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=n_bins, strategy="uniform")
    bins = np.linspace(0.0, 1.0, n_bins + 1)
    # calibration_curve's own binning (searchsorted, side "left"): a score on
    # a bin edge, such as 0.3, goes to the lower bin there, so here too.
    counts = np.bincount(np.searchsorted(bins[1:-1], s), minlength=n_bins)
    counts = counts[counts > 0]
    ece = float(np.sum(counts * np.abs(prob_true - prob_pred)) / len(y))
    return {"prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist(),
            "counts": counts.tolist(), "ece": ece}


def clinical_report(y_true, probabilities, *, threshold: float | None = None,
                    validation: tuple | None = None, rule: str = "youden",
                    target_sensitivity: float = 0.95, n_resamples: int = 1000,
                    seed: int = 0) -> dict:
    """The binary clinical metrics of a 2-class model (positive = class 1).

    Args:
        y_true: 0/1 labels of the evaluation set.
        probabilities: `(n, 2)` probabilities or `(n,)` positive scores.
        threshold: the operating threshold. Defaults to `None`: chosen on
            `validation` (`(y, scores)`) by `rule`, else on this data (stated in
            the result as `"threshold_source"`).
        validation, rule, target_sensitivity: see `choose_threshold`.
        n_resamples, seed: the bootstrap.

    Returns:
        A JSON-safe dict: threshold, its rule and source, sensitivity,
        specificity, ROC AUC, PR AUC (each with a 95% CI), calibration.
    """
    p = np.asarray(probabilities, dtype="float64")
    scores = p[:, 1] if p.ndim == 2 else p
    y, scores = _binary(y_true, scores)
    source = "given"
    if threshold is None:
        vy, vs = validation if validation is not None else (y, scores)
        vs = np.asarray(vs)
        vs = vs[:, 1] if vs.ndim == 2 else vs
        threshold = choose_threshold(vy, vs, rule, target_sensitivity)
        source = "validation" if validation is not None else "evaluation data"
    report, _ = _at_threshold(y, scores, threshold, n_resamples, seed)
    return {"threshold": report.pop("threshold"), "threshold_rule": rule,
            "threshold_source": source, **report}


def _at_threshold(y, scores, threshold, n_resamples: int, seed: int):
    """`clinical_report`'s metrics at a given threshold, and the bootstrap values
    of the AUCs (`{"roc_auc": array, "pr_auc": array}`, for macro CIs)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    sens, spec = sensitivity_specificity(y, scores, threshold)
    ci = dict(n_resamples=n_resamples, seed=seed)
    sens_ci, spec_ci = _rate_cis(y, scores >= threshold, **ci)
    values = {key: _bootstrap_values(metric, y, scores, **ci) for key, metric in
              (("roc_auc", roc_auc_score), ("pr_auc", _average_precision))}
    return {
        "threshold": float(threshold),
        "sensitivity": sens, "sensitivity_ci": sens_ci,
        "specificity": spec, "specificity_ci": spec_ci,
        "roc_auc": float(roc_auc_score(y, scores)),
        "roc_auc_ci": _percentiles(values["roc_auc"]),
        "pr_auc": float(average_precision_score(y, scores)),
        "pr_auc_ci": _percentiles(values["pr_auc"]),
        "calibration": calibration(y, scores),
    }, values


def multilabel_clinical_report(y_true, probabilities,
                               class_names: Sequence[str] | None = None, *,
                               threshold=None, n_resamples: int = 1000,
                               seed: int = 0) -> dict:
    """The clinical metrics of a multilabel model: every label, and macro.

    Args:
        y_true: 0/1 label rows `(n, classes)`.
        probabilities: `(n, classes)` predicted probabilities.
        class_names: names for the per-class keys. Defaults to `"0"`, `"1"`, ...
        threshold: the operating threshold: one float for every label, one per
            label, or `None` (0.5, the multilabel default decision).
        n_resamples, seed: the bootstrap.

    Returns:
        A JSON-safe dict: `"per_class"`: `clinical_report` of each label at its
        threshold (a label with one class only in `y_true` gets its positives
        count and `None` metrics: AUCs are undefined); `"macro"`: ROC AUC and
        PR AUC (scikit-learn's `average="macro"` over the defined labels, each
        with a 95% bootstrap CI), and the mean sensitivity, specificity and ECE.

    Raises:
        ValueError: shapes that do not match, or a threshold per label of the
            wrong length.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.asarray(probabilities, dtype="float64")
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError("Multilabel metrics need label rows and probabilities of "
                         "one shape (n, classes). Received: "
                         f"y_true.shape={y.shape}, probabilities.shape={p.shape}")
    names = [str(c) for c in (class_names or range(p.shape[1]))]
    thresholds = np.asarray(0.5 if threshold is None else threshold,
                            dtype="float64").ravel()
    if thresholds.size == 1:
        thresholds = np.repeat(thresholds, p.shape[1])
    if thresholds.size != p.shape[1] or len(names) != p.shape[1]:
        raise ValueError("Pass one threshold (or one per label) and one name per "
                         f"label. Received: threshold={threshold!r}, "
                         f"class_names={names}, labels={p.shape[1]}")
    per_class, defined, values = {}, [], []
    for k, name in enumerate(names):
        if len(np.unique(y[:, k])) < 2:
            per_class[name] = {"threshold": float(thresholds[k]),
                               "positives": int(y[:, k].sum()), "roc_auc": None,
                               "pr_auc": None, "sensitivity": None,
                               "specificity": None}
            continue
        defined.append(k)
        per_class[name], class_values = _at_threshold(
            y[:, k], p[:, k], thresholds[k], n_resamples, seed)
        values.append(class_values)
    macro: dict = {"classes": [names[k] for k in defined]}
    if defined:
        yd, pd = y[:, defined], p[:, defined]
        for key, metric in (("roc_auc", roc_auc_score),
                            ("pr_auc", average_precision_score)):
            macro[key] = float(metric(yd, pd, average="macro"))
            # One seed draws the same resamples for every label, so the mean of
            # the labels' values on a resample is sklearn's macro average there
            # (NaN when a label is undefined on it, as sklearn would refuse).
            macro[f"{key}_ci"] = _percentiles(
                np.mean([v[key] for v in values], axis=0))
        for key in ("sensitivity", "specificity"):
            macro[key] = float(np.nanmean([per_class[names[k]][key] for k in defined]))
        macro["ece"] = float(np.mean([per_class[names[k]]["calibration"]["ece"]
                                      for k in defined]))
    return {"per_class": per_class, "macro": macro,
            "threshold_source": "given" if threshold is not None else "default: 0.5"}


def plot_clinical_curves(y_true, scores, out_dir: str,
                         name: str | Sequence[str] = "positive") -> dict:
    """Writes `roc.png`, `pr.png` and `calibration.png` into `out_dir`.

    Args:
        y_true: 0/1 labels `(n,)`, or multilabel rows `(n, classes)` (one curve
            per label that has both values).
        scores: the positive probabilities, of the same shape.
        out_dir: the folder.
        name: the curve's legend name, or one per label. Defaults to
            `"positive"`.

    Returns:
        `{"roc": path, "pr": path, "calibration": path}`.
    """
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    from kerastransfer.report.plots import pyplot, save_figure

    plt = pyplot()

    if np.ndim(scores) == 2:
        y_all, s_all = np.asarray(y_true).astype(int), np.asarray(scores)
        names = [str(n) for n in name] if not isinstance(name, str) else [
            f"{name} {k}" for k in range(s_all.shape[1])]
        curves = [(*_binary(y_all[:, k], s_all[:, k]), names[k])
                  for k in range(s_all.shape[1]) if len(np.unique(y_all[:, k])) == 2]
    else:
        curves = [(*_binary(y_true, scores), str(name))]
    paths = {}
    for key, display in (("roc", RocCurveDisplay), ("pr", PrecisionRecallDisplay),
                         ("calibration", CalibrationDisplay)):
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        for y, s, label in curves:
            display.from_predictions(y, s, ax=ax, name=label)
        paths[key] = save_figure(fig, os.path.join(out_dir, f"{key}.png"))
    return paths
