"""The linear-probe solver: a frozen phase's head fitted to convergence.

With the backbone frozen, training the new head is a convex problem when the
head is linear: L2-regularized logistic regression on the backbone's
features. Instead of many epochs of a stochastic optimizer, a full-batch
quasi-Newton solver (scikit-learn's `lbfgs`) reaches its optimum in well
under a second for thousands of examples, and the L2 strength is chosen by
stratified cross-validation on the training features only. The result is
returned as the kernel and bias of a `Dense` layer, so it can initialise the
head before fine-tuning ("linear probe, then fine-tune", LP-FT: Kumar et al.,
ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution").

Equivalence with a Keras head: scikit-learn minimizes
`C * sum_i w_i * logloss_i + 0.5 * ||W||^2` (the bias is not penalized).
Divided by `C * n`, that is a Keras `Dense` + softmax head trained on the mean
cross-entropy with `kernel_regularizer=keras.regularizers.L2(1 / (2 * C * n))`
(Keras's `L2(l)` adds `l * sum(W ** 2)`); `tests/test_probe.py` checks that a
long full-batch Keras run converges to the same probabilities.

Few examples of wide features: the optimal kernel lies in the span of the
training features (the gradient of the loss in `W` is `X^T G + W / C`, zero
only for `W = -C X^T G`), so with a basis `V` of that span (`W = V A`,
`||W|| = ||A||`) the solver fits the same problem on `X V`, of `rank(X)`
columns instead of `X`'s width, and the kernel is `V A`. Raw 32x32 pixels of
the demo's digits (scanned at 8x8 and resized) have rank 60 of 1,024; 10
labelled images of 128 features have rank 10. Directions whose singular
value is below `_RANK_RTOL` of the largest are float32 rounding noise and
are dropped. `tests/test_probe.py` checks that the probabilities equal those
of the full-width fit.

This module is numpy + scikit-learn only (no TensorFlow, no model state).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_C = 1.0
"""L2 inverse strength used when cross-validation is impossible (a class with
fewer examples than two folds need, e.g. one label per class): scikit-learn's
own default, on standardized features."""

DEFAULT_CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
"""The grid of inverse L2 strengths searched by cross-validation."""

_TASKS = ("multiclass", "multilabel")
_CV_TOL, _CV_MAX_ITER = 1e-4, 500  # fold fits only rank the candidates
# Below this many feature values, BLAS threads cost more than they bring: on
# a loaded 2-core machine a 100 x 128 probe took 75 s with two OpenBLAS
# threads and 6 s with one.
_SINGLE_THREAD_BELOW = 2_000_000
# Singular values below this fraction of the largest are float32 rounding
# noise of features computed in float32 (the demo's resized digits: the 61st
# is 5e-9 of the first, the 60th 3e-4).
_RANK_RTOL = 1e-6
# The decomposition costs about n * d * min(n, d) operations (a second here at
# this bound): above it, skipped.
_ROW_SPACE_MAX_WORK = 2e9
_ABSENT_LOGIT = 30.0  # a class with no example sits this far below the others


@dataclasses.dataclass(frozen=True)
class LinearProbe:
    """A fitted linear probe, as the weights of a `Dense` head.

    Attributes:
        kernel: float64 array `(features_dim, num_classes)` (float64 so that
            the folded standardization loses nothing; `Dense.set_weights`
            casts it to the layer's dtype).
        bias: float64 array `(num_classes,)`. `softmax(features @ kernel +
            bias)` (multiclass) or `sigmoid(...)` (multilabel) are the
            probe's probabilities on the raw (unstandardized) features.
        C: the inverse L2 strength used (a float; per output column for
            multilabel).
        cv_scores: mean cross-validated log-likelihood per candidate `C`
            (higher is better), or `None` when `C` was given or cross-validation
            was impossible.
        seconds: wall-clock time of the fit, cross-validation included.
        task: `"multiclass"` or `"multilabel"`.
        standardized: whether the solver worked on standardized features (a
            bool; per output column for multilabel).
        standardize_scores: with `standardize="auto"` and cross-validation,
            the best mean cross-validated log-likelihood of each choice,
            `{True: ..., False: ...}` (per column for multilabel), else `None`.
    """

    kernel: np.ndarray
    bias: np.ndarray
    C: float | tuple
    cv_scores: dict | None
    seconds: float
    task: str = "multiclass"
    standardized: bool | tuple = True
    standardize_scores: dict | tuple | None = None

    def logits(self, features) -> np.ndarray:
        """The head's pre-activation outputs `features @ kernel + bias`."""
        features = np.asarray(features, dtype=np.float64)
        return features @ self.kernel.astype(np.float64) + self.bias

    def predict_proba(self, features) -> np.ndarray:
        """The probe's probabilities on `features` (softmax or sigmoid)."""
        z = self.logits(features)
        if self.task == "multilabel":
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def fit_linear_probe(
    features,
    labels,
    *,
    num_classes: int,
    task: str = "multiclass",
    sample_weight=None,
    C: float | None = None,
    cv: int = 3,
    seed: int = 0,
    Cs=DEFAULT_CS,
    standardize: bool | str = True,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> LinearProbe:
    """Fits an L2-regularized logistic-regression head on frozen features.

    Multiclass: one multinomial logistic regression (softmax); with two
    classes scikit-learn fits one logit `z`, returned as the two columns
    `(-z / 2, z / 2)`, whose softmax is the same probability. Multilabel: one
    binary logistic regression per output (sigmoid). When `C` is `None` it is
    chosen from `Cs` by stratified `cv`-fold cross-validation on these
    training features only (the highest mean held-out log-likelihood; ties go
    to the stronger regularization); if a class has fewer than two examples,
    folds cannot be stratified and `DEFAULT_C` is used.

    Args:
        features: array `(n, features_dim)` of frozen-backbone features.
        labels: integer class ids `(n,)` (multiclass) or a 0/1 array
            `(n, num_classes)` (multilabel).
        num_classes: number of outputs of the head.
        task: `"multiclass"` or `"multilabel"`. Defaults to `"multiclass"`.
        sample_weight: optional per-example weights `(n,)`, as in
            scikit-learn (class weights can be folded in here). Defaults to
            `None`.
        C: inverse L2 strength; `None` chooses it by cross-validation.
            Defaults to `None`.
        cv: number of stratified folds, at most the smallest class count.
            Defaults to `3`.
        seed: seed of the fold assignment. Defaults to `0`.
        Cs: candidate values of `C`. Defaults to `DEFAULT_CS`.
        standardize: solve on features standardized with the training
            mean and standard deviation (the regularization then treats all
            features alike), folded back into the kernel and bias, which
            apply to the raw features. `"auto"` chooses between standardized
            and raw features by the same cross-validation that chooses `C`
            (the higher mean held-out log-likelihood; a tie standardizes);
            when cross-validation is impossible (`C` given, or a class with
            one example) it does not standardize, because a mean and standard
            deviation estimated from one example per class are noise (on the
            demo's target, raw pixels with one label per class: 0.524
            standardized vs 0.627 not, `docs/design.md` fact 25). Defaults
            to `True`.
        tol: solver tolerance. Defaults to `1e-6`.
        max_iter: solver iteration limit. Defaults to `2000`.

    Returns:
        A `LinearProbe`.

    Raises:
        ValueError: if the task is unknown, the shapes disagree, labels are
            out of range, fewer than two classes are present, or `C`/`cv`
            are not positive.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 4)); y = (x[:, 0] > 0).astype(int)
    >>> probe = fit_linear_probe(x, y, num_classes=2)
    >>> probe.kernel.shape, probe.bias.shape
    ((4, 2), (2,))
    """
    start = time.perf_counter()
    x, y, weights = _check_inputs(features, labels, num_classes, task,
                                  sample_weight, C, cv, standardize)
    import sklearn.linear_model  # noqa: F401  (load its BLAS before limiting it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if x.size < _SINGLE_THREAD_BELOW else None):
        return _fit_probe(x, y, weights, num_classes, task, C, cv, seed, Cs,
                          standardize, tol, max_iter, start)


def _fit_probe(x, y, weights, num_classes, task, C, cv, seed, Cs, standardize,
               tol, max_iter, start):
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-12] = 1.0
    options = (True, False) if standardize == "auto" else (bool(standardize),)
    standardized = {False: x}
    if True in options:
        standardized[True] = (x - mean) / std
    # option -> (the features in a basis of their row space, that basis or None)
    reduced = {option: _row_space(z) for option, z in standardized.items()}

    def fit(labels, classes):
        """One logistic regression per option, folded to raw features."""
        tried = options
        if standardize == "auto" and not _cross_validates(labels, C):
            tried = (False,)  # nothing to choose by: see `standardize`
        fits = {}
        for option in tried:
            z, basis = reduced[option]
            kernel, bias, chosen, scores = _fit_multiclass(
                z, labels, weights, classes, C, cv, seed, Cs, tol, max_iter)
            if basis is not None:  # W = V A (see the module docstring)
                kernel = basis @ kernel
            if option:  # ((x - m) / s) @ W + b = x @ (W / s) + (b - m @ (W / s))
                kernel = kernel / std[:, None]
                bias = bias - mean @ kernel
            fits[option] = (kernel, bias, chosen, scores)
        if len(tried) == 1:
            return (*fits[tried[0]], tried[0], None)
        best = {option: max(fits[option][3].values()) for option in tried}
        option = best[True] >= best[False] - 1e-12
        return (*fits[option], option, best)

    if task == "multiclass":
        kernel, bias, chosen, scores, used, compared = fit(y, num_classes)
    else:
        columns = [fit(y[:, j], 2) for j in range(num_classes)]
        # Each column's two-class softmax (-s/2, s/2) is sigmoid(s).
        kernel = np.stack([2 * c[0][:, 1] for c in columns], axis=1)
        bias = np.array([2 * c[1][1] for c in columns])
        chosen = tuple(c[2] for c in columns)
        scores = None
        used = tuple(c[4] for c in columns)
        compared = None if standardize != "auto" else tuple(c[5] for c in columns)
    seconds = time.perf_counter() - start
    logger.info("linear probe: %d examples x %d features, C=%s, standardized=%s, "
                "%.2f s", len(x), x.shape[1], chosen, used, seconds)
    return LinearProbe(kernel=kernel, bias=bias, C=chosen, cv_scores=scores,
                       seconds=seconds, task=task, standardized=used,
                       standardize_scores=compared)


def _check_inputs(features, labels, num_classes, task, sample_weight, C, cv,
                  standardize):
    if task not in _TASKS:
        raise ValueError(
            f"The linear probe supports the tasks {_TASKS}. Use an epoch-based "
            f"frozen phase for other tasks. Received: task={task!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            "`features` must be a 2D array (examples, features); pool feature "
            f"maps first. Received: features.shape={x.shape}")
    y = np.asarray(labels)
    if task == "multiclass":
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        expected = (len(x),)
    else:
        expected = (len(x), num_classes)
    if y.shape != expected:
        raise ValueError(
            f"`labels` must have shape {expected} for task={task!r} with these "
            f"features. Received: labels.shape={y.shape}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(
            "`num_classes` must be an integer >= 2. "
            f"Received: num_classes={num_classes!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError(
            "`features` contain NaN or infinity. Check the backbone's inputs. "
            "Received: a non-finite feature")
    y = y.astype(np.int64)
    if y.min() < 0 or (task == "multiclass" and y.max() >= num_classes) or (
            task == "multilabel" and y.max() > 1):
        bound = num_classes - 1 if task == "multiclass" else 1
        raise ValueError(
            f"`labels` must lie in [0, {bound}]. "
            f"Received: labels in [{y.min()}, {y.max()}]")
    if task == "multiclass" and len(np.unique(y)) < 2:
        raise ValueError(
            "The linear probe needs examples of at least two classes. Add "
            f"labelled examples. Received: classes={np.unique(y).tolist()}")
    if C is not None and not C > 0:
        raise ValueError(f"`C` must be positive or None. Received: C={C!r}")
    if standardize not in (True, False, "auto"):
        raise ValueError(
            "`standardize` must be True, False or 'auto'. "
            f"Received: standardize={standardize!r}")
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"`cv` must be an integer >= 2. Received: cv={cv!r}")
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weights.shape != (len(x),) or np.any(weights < 0):
            raise ValueError(
                "`sample_weight` must hold one non-negative weight per example. "
                f"Received: sample_weight.shape={weights.shape}")
    return x, y, weights


def _row_space(z):
    """`(z V, V)` for an orthonormal basis `V` of the span of `z`'s rows when
    that span has at most half of `z`'s dimensions, else `(z, None)`: the
    solver's cost per iteration is proportional to the width it works on."""
    if z.shape[0] * z.shape[1] * min(z.shape) > _ROW_SPACE_MAX_WORK:
        return z, None
    _, values, vt = np.linalg.svd(z, full_matrices=False)
    if not values.size or values[0] <= 0:
        return z, None
    rank = int(np.sum(values > values[0] * _RANK_RTOL))
    if 2 * rank > z.shape[1]:
        return z, None
    basis = vt[:rank].T
    return z @ basis, basis


def _solver(C, tol, max_iter):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, solver="lbfgs", tol=tol, max_iter=max_iter)


def _fit(z, y, weights, C, tol, max_iter):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _solver(C, tol, max_iter).fit(z, y, sample_weight=weights)


def _choose_C(z, y, weights, cv, seed, Cs, tol, max_iter):
    """Mean held-out log-likelihood of each C over stratified folds of (z, y)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    folds = min(cv, int(counts[counts > 0].min()))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for C in sorted(float(c) for c in Cs):
        total, count = 0.0, 0.0
        for train, test in splitter.split(z, y):
            w_train = None if weights is None else weights[train]
            model = _fit(z[train], y[train], w_train, C, max(tol, _CV_TOL),
                         min(max_iter, _CV_MAX_ITER))
            proba = np.full((len(test), y.max() + 1), 1e-15)
            proba[:, model.classes_] = model.predict_proba(z[test])
            w_test = np.ones(len(test)) if weights is None else weights[test]
            log_p = np.log(np.clip(proba[np.arange(len(test)), y[test]], 1e-15, 1))
            total += float(w_test @ log_p)
            count += float(w_test.sum())
        scores[C] = total / max(count, 1e-12)
    best = max(scores.values())
    return next(C for C, s in scores.items() if s >= best - 1e-12), scores


def _cross_validates(y, C) -> bool:
    """Whether `_fit_multiclass` chooses `C` by cross-validation on labels `y`
    (no `C` given, two classes or more, and two examples of each at least)."""
    present, counts = np.unique(y, return_counts=True)
    return C is None and len(present) >= 2 and counts.min() >= 2


def _fit_multiclass(z, y, weights, num_classes, C, cv, seed, Cs, tol, max_iter):
    """One logistic regression on z; returns (W, b, C, scores)."""
    present = np.unique(y)
    scores = None
    if len(present) < 2:  # a multilabel column with one value: a constant
        logit = _ABSENT_LOGIT if present[0] == 1 else -_ABSENT_LOGIT
        kernel = np.zeros((z.shape[1], 2))
        return kernel, np.array([-logit / 2, logit / 2]), C or DEFAULT_C, None
    if C is None:
        counts = np.bincount(y)[present]
        if counts.min() >= 2:
            C, scores = _choose_C(z, y, weights, cv, seed, Cs, tol, max_iter)
        else:
            C = DEFAULT_C
            logger.info("linear probe: a class has %d example(s), too few for "
                        "cross-validation; using C=%g", counts.min(), C)
    model = _fit(z, y, weights, C, tol, max_iter)
    coef, intercept = model.coef_.T, model.intercept_
    if len(present) == 2:  # scikit-learn's binary form: one logit for classes_[1]
        coef = np.concatenate([-coef / 2, coef / 2], axis=1)
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros((z.shape[1], num_classes))
    bias = np.zeros(num_classes)
    kernel[:, present] = coef
    bias[present] = intercept
    absent = np.setdiff1d(np.arange(num_classes), present)
    if len(absent):
        logger.warning("linear probe: classes %s have no training example; their "
                       "logits are set %g below the others", absent.tolist(),
                       _ABSENT_LOGIT)
        bias[absent] = bias[present].min() - _ABSENT_LOGIT
    return kernel, bias, float(C), scores
