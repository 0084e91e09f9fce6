"""Clinical metrics against scikit-learn, thresholds, decisions (issue 13)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from kerastransfer.report import clinical
from kerastransfer.runtime.postprocess import decide, tta_views


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1)
    return y, scores


def test_auc_scores_equal_sklearn():
    y, s = _data()
    probs = np.stack([1 - s, s], 1)
    out = clinical.auc_scores(y, probs, ["well", "sick"])
    assert out["roc_auc"]["sick"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["pr_auc"]["sick"] == pytest.approx(average_precision_score(y, s),
                                                  abs=1e-12)
    assert out["roc_auc"]["macro"] == pytest.approx(
        roc_auc_score(np.eye(2)[y], probs, average="macro"), abs=1e-12)


def test_thresholds_by_rule():
    y, s = _data()
    fpr, tpr, thr = roc_curve(y, s)
    t = clinical.choose_threshold(y, s, "youden")
    assert t == pytest.approx(thr[np.argmax(tpr - fpr)])
    sens, spec = clinical.sensitivity_specificity(y, s, t)
    assert sens == pytest.approx(np.mean(s[y == 1] >= t))
    assert spec == pytest.approx(np.mean(s[y == 0] < t))
    assert sens + spec - 1 == pytest.approx(np.max(tpr - fpr))
    t95 = clinical.choose_threshold(y, s, "sensitivity", 0.95)
    assert clinical.sensitivity_specificity(y, s, t95)[0] >= 0.95
    assert t95 <= t
    with pytest.raises(ValueError, match="rule must be"):
        clinical.choose_threshold(y, s, "f1")


def test_report_ci_and_calibration(tmp_path):
    y, s = _data()
    vy, vs = _data(seed=1)
    report = clinical.clinical_report(y, s, validation=(vy, vs), n_resamples=200)
    assert report["threshold"] == clinical.choose_threshold(vy, vs)
    assert report["threshold_source"] == "validation"
    for key in ("sensitivity", "specificity", "roc_auc", "pr_auc"):
        low, high = report[f"{key}_ci"]
        assert low < report[key] < high and high - low < 0.25
    cal = report["calibration"]
    assert sum(cal["counts"]) == len(y)
    perfect = clinical.calibration(np.r_[np.zeros(500), np.ones(500)],
                                   np.r_[np.full(500, 0.05), np.full(500, 0.95)])
    assert perfect["ece"] == pytest.approx(0.05, abs=1e-9)
    paths = clinical.plot_clinical_curves(y, s, str(tmp_path))
    from PIL import Image
    for path in paths.values():
        assert Image.open(path).size == (400, 400)


def test_decisions_and_tta_views():
    p = np.array([[0.7, 0.3], [0.4, 0.6], [0.8, 0.2]])
    np.testing.assert_array_equal(decide(p, "multiclass"), [0, 1, 0])
    np.testing.assert_array_equal(decide(p, "multiclass", 0.25), [1, 1, 0])
    np.testing.assert_array_equal(decide(p, "multilabel", [0.5, 0.25]),
                                  [[1, 1], [0, 1], [1, 0]])
    x = np.arange(2 * 3 * 4 * 1).reshape(2, 3, 4, 1)
    views = tta_views(x)
    np.testing.assert_array_equal(views[1][:, :, 0], x[:, :, -1])
    np.testing.assert_array_equal(views[2][:, 0], x[:, -1])


def test_rate_cis_equal_the_sklearn_bootstrap():
    """clinical_report's vectorized sensitivity/specificity CIs equal
    bootstrap_ci over sklearn's confusion matrix (same seed, same resamples)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 40), 0, 1)
    report = clinical.clinical_report(y, s, threshold=0.4, n_resamples=150, seed=5)
    for k, key in enumerate(("sensitivity_ci", "specificity_ci")):
        expected = clinical.bootstrap_ci(
            lambda a, b, k=k: clinical.sensitivity_specificity(a, b, 0.4)[k], y, s,
            n_resamples=150, seed=5)
        assert report[key] == pytest.approx(expected, abs=1e-12)


def test_pr_auc_interval_skips_resamples_without_a_positive():
    """Average precision is undefined without a positive: those resamples are
    skipped (sklearn would score them 0, with a warning each)."""
    import warnings

    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    s = np.linspace(1.0, 0.1, 10)  # the positive ranks first: AP = 1 when defined
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = clinical.clinical_report(y, s, threshold=0.5, n_resamples=200, seed=0)
    assert report["pr_auc"] == pytest.approx(1.0)
    assert report["pr_auc_ci"] == pytest.approx((1.0, 1.0))


def test_calibration_bins_scores_on_bin_edges_like_sklearn():
    from sklearn.calibration import calibration_curve

    y = np.array([0, 1, 0, 1, 1, 0, 1, 1, 1, 1])
    s = np.round(np.arange(1, 11) / 10, 10)  # 0.1 ... 1.0, every one on an edge
    out = clinical.calibration(y, s)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10)
    assert sum(out["counts"]) == len(y) and len(out["counts"]) == len(prob_true)
    # ECE from the bins' sums, computed directly (scores in (k/10, (k+1)/10]).
    ece = sum(abs(y[bin].sum() - s[bin].sum()) for bin in
              (np.searchsorted(np.linspace(0, 1, 11)[1:-1], s) == k for k in range(10)))
    assert out["ece"] == pytest.approx(ece / len(y), abs=1e-12)
    np.testing.assert_allclose(out["prob_pred"], prob_pred)
