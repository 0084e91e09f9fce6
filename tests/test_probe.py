"""The linear-probe solver (kerastransfer.training.probe)."""

import inspect

import numpy as np
import pytest

from kerastransfer.training import probe as probe_lib
from kerastransfer.training.probe import DEFAULT_C, fit_linear_probe


def _blobs(n_per_class=20, num_classes=3, dim=5, seed=0, spread=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (num_classes, dim))
    x = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(num_classes), n_per_class)
    # Features on different scales and offsets, like pooled CNN features.
    # float64: scikit-learn solves float32 input in float32 (1e-5 apart).
    return x * rng.uniform(0.1, 5, dim) + rng.uniform(-3, 3, dim), y


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("standardize", [True, False])
def test_dense_weights_reproduce_sklearn_predict_proba(standardize):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs()
    probe = fit_linear_probe(x, y, num_classes=3, C=0.3, standardize=standardize)
    steps = [StandardScaler()] if standardize else []
    reference = make_pipeline(*steps, LogisticRegression(C=0.3, tol=1e-6,
                                                         max_iter=2000)).fit(x, y)
    expected = reference.predict_proba(x[:40] * 1.1)
    ours = _softmax(x[:40] * 1.1 @ probe.kernel + probe.bias)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_allclose(probe.predict_proba(x[:40] * 1.1), expected, atol=1e-6)
    assert probe.kernel.shape == (5, 3) and probe.bias.shape == (3,)
    assert probe.C == 0.3 and probe.cv_scores is None


@pytest.mark.parametrize("shape", ["wide", "low_rank"])
def test_row_space_fit_equals_the_full_width_fit(shape):
    """Few examples of many features (or features of low rank, like resized
    pixels): the solver works in the features' row space and gives the
    full-width optimum."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x, y = _blobs(n_per_class=8, num_classes=3, dim=60 if shape == "wide" else 6)
    if shape == "low_rank":  # 6 dimensions spread over 200 columns
        x = x @ rng.normal(size=(6, 200))
    z, basis = probe_lib._row_space(x)
    assert basis is not None and basis.shape == (x.shape[1], 24 if shape == "wide"
                                                 else 6)
    np.testing.assert_allclose(z @ basis.T, x, atol=1e-9)  # nothing dropped
    probe = fit_linear_probe(x, y, num_classes=3, C=0.3, standardize=False)
    reference = LogisticRegression(C=0.3, tol=1e-10, max_iter=20000).fit(x, y)
    new = x[:10] + rng.normal(size=x[:10].shape)  # off the span too
    np.testing.assert_allclose(probe.predict_proba(new),
                               reference.predict_proba(new), atol=1e-5)
    # the same kernel, not just the same probabilities on these points
    np.testing.assert_allclose(probe.kernel, reference.coef_.T, atol=1e-4)
    # full width, where the span is most of it: no basis
    assert probe_lib._row_space(rng.normal(size=(30, 40)))[1] is None


def test_two_classes_give_two_softmax_columns_equal_to_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(num_classes=2)
    probe = fit_linear_probe(x, y, num_classes=2, C=1.0, standardize=False)
    expected = LogisticRegression(C=1.0, tol=1e-6, max_iter=2000).fit(
        x, y).predict_proba(x)
    assert probe.kernel.shape == (5, 2)
    np.testing.assert_allclose(probe.predict_proba(x), expected, atol=1e-6)


def test_multilabel_columns_are_sigmoids_of_binary_regressions():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(num_classes=3)
    targets = np.stack([y == 0, y != 1, np.zeros_like(y, bool)], axis=1).astype(int)
    probe = fit_linear_probe(x, targets, num_classes=3, task="multilabel", C=0.5,
                             standardize=False)
    probs = 1 / (1 + np.exp(-(x @ probe.kernel + probe.bias)))
    for j in range(2):
        expected = LogisticRegression(C=0.5, tol=1e-6, max_iter=2000).fit(
            x, targets[:, j]).predict_proba(x)[:, 1]
        np.testing.assert_allclose(probs[:, j], expected, atol=1e-5)
    assert probs[:, 2].max() < 1e-9  # a label never present stays off


def test_probe_equals_a_keras_dense_head_trained_to_convergence():
    """sklearn: C * sum(logloss) + ||W||^2 / 2 == Keras: mean loss + L2(1 / (2 C n))."""
    import keras
    import tensorflow as tf

    x, y = _blobs(n_per_class=20, num_classes=3, dim=4, seed=1)
    x = (x - x.mean(0)) / x.std(0)  # well conditioned, so Adam converges tightly
    C, n = 0.5, len(x)
    probe = fit_linear_probe(x, y, num_classes=3, C=C, standardize=False,
                             tol=1e-10, max_iter=10000)
    keras.utils.set_random_seed(0)
    head = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, activation="softmax",
                           kernel_regularizer=keras.regularizers.L2(1 / (2 * C * n))),
    ])
    head.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(0.05, 3000)),
        loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    head.fit(data, steps_per_epoch=3000, epochs=1, verbose=0, shuffle=False)
    keras_probs = head.predict(x, verbose=0)
    difference = np.abs(keras_probs - probe.predict_proba(x)).max()
    assert difference <= 1e-3, difference
    # The probe does not sit at a trivial point: it separates the classes.
    assert np.mean(probe.predict_proba(x).argmax(1) == y) > 0.8


def test_regularization_is_chosen_by_cv_on_training_data_only():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    assert not any("valid" in name for name in
                   inspect.signature(fit_linear_probe).parameters)
    x, y = _blobs(n_per_class=12, num_classes=3, seed=2, spread=0.8)
    first = fit_linear_probe(x, y, num_classes=3, seed=5)
    second = fit_linear_probe(x.copy(), y.copy(), num_classes=3, seed=5)
    assert first.C == second.C
    np.testing.assert_array_equal(first.kernel, second.kernel)
    # Recompute the cross-validated log-likelihoods from the training rows alone.
    z = (x - x.mean(0)) / x.std(0)
    folds = StratifiedKFold(3, shuffle=True, random_state=5)
    for C, score in first.cv_scores.items():
        total = 0.0
        for train, test in folds.split(z, y):
            model = LogisticRegression(C=C, tol=probe_lib._CV_TOL,
                                       max_iter=probe_lib._CV_MAX_ITER).fit(
                z[train], y[train])
            total += np.log(model.predict_proba(z[test])[np.arange(len(test)),
                                                        y[test]]).sum()
        assert score == pytest.approx(total / len(y), rel=1e-6)
    assert first.C == max(first.cv_scores, key=first.cv_scores.get)
    # The choice follows the data: well-separated classes want weaker
    # regularization than noisy labels.
    rng = np.random.default_rng(0)
    noisy = fit_linear_probe(x, rng.permutation(y), num_classes=3, seed=5)
    clean = fit_linear_probe(*_blobs(n_per_class=12, num_classes=3, seed=2,
                                     spread=6), num_classes=3, seed=5)
    assert noisy.C < clean.C


def test_one_example_per_class_falls_back_to_the_default_c():
    x, y = _blobs(n_per_class=1, num_classes=4)
    probe = fit_linear_probe(x, y, num_classes=4)
    assert probe.C == DEFAULT_C and probe.cv_scores is None
    assert np.array_equal(probe.predict_proba(x).argmax(1), y)


def test_a_class_without_examples_gets_a_near_zero_probability():
    x, y = _blobs(n_per_class=6, num_classes=3)
    probe = fit_linear_probe(x, y, num_classes=4, C=1.0)
    probs = probe.predict_proba(x)
    assert probe.kernel.shape == (5, 4)
    assert probs[:, 3].max() < 1e-9
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)


def test_sample_weights_match_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    w = np.linspace(0.2, 3, len(y))
    probe = fit_linear_probe(x, y, num_classes=3, C=1.0, sample_weight=w,
                             standardize=False)
    expected = LogisticRegression(C=1.0, tol=1e-6, max_iter=2000).fit(
        x, y, sample_weight=w).predict_proba(x)
    np.testing.assert_allclose(probe.predict_proba(x), expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="regression"), "tasks"),
    (dict(C=0.0), "`C` must be positive"),
    (dict(cv=1), "`cv`"),
    (dict(num_classes=2), r"labels.*\[0, 1\]"),
    (dict(sample_weight=np.ones(3)), "sample_weight"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    x, y = _blobs()
    arguments = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_linear_probe(x, y, **arguments)


def test_bad_features_raise_value_errors():
    x, y = _blobs()
    with pytest.raises(ValueError, match="2D"):
        fit_linear_probe(x[:, :, None], y, num_classes=3)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_probe(x, y, num_classes=3)
    with pytest.raises(ValueError, match="at least two classes"):
        fit_linear_probe(x[y == 0][1:], y[y == 0][1:], num_classes=3)


def test_probe_loaded_into_a_transfer_model_head_predicts_the_same():
    """The probe composes with a TransferModel: its kernel and bias, set on the
    model's `logits` layer, give the model the probe's probabilities."""
    import keras

    import kerastransfer as kt

    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(6, activation="tanh")])
    model = kt.TransferModel(backbone, num_classes=3, dropout=0.0,
                             preprocessing="none")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (30, 8, 8, 1)).astype("float32")
    y = np.arange(30) % 3
    features = model.feature_extractor().predict(x, verbose=0)
    probe = fit_linear_probe(features, y, num_classes=3, C=10.0)
    model.get_layer("logits").set_weights([probe.kernel, probe.bias])
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               probe.predict_proba(features), atol=1e-5)


def test_auto_standardization_follows_cross_validation():
    """`standardize="auto"` keeps whichever of standardized / raw features
    has the higher cross-validated log-likelihood, and equals that fit."""
    x, y = _blobs(n_per_class=10, num_classes=3, dim=3, seed=3, spread=2.0)
    rng = np.random.default_rng(1)
    # Near-constant noise features, like a digit image's border pixels:
    # standardizing blows them up to the informative features' scale.
    nuisance = np.concatenate([x, 1e-3 * rng.normal(size=(len(y), 20))], axis=1)
    # Informative features at a tiny scale: unstandardized, they need weights
    # the L2 penalty forbids.
    tiny = 1e-3 * x
    for features, expected in ((nuisance, False), (tiny, True)):
        probe = fit_linear_probe(features, y, num_classes=3, standardize="auto")
        scores = probe.standardize_scores
        assert set(scores) == {True, False}
        assert probe.standardized is expected
        assert scores[expected] > scores[not expected]
        same = fit_linear_probe(features, y, num_classes=3, standardize=expected)
        assert same.C == probe.C and same.cv_scores == probe.cv_scores
        np.testing.assert_allclose(probe.predict_proba(features),
                                   same.predict_proba(features), atol=1e-12)
    # Without cross-validation (one example per class) the raw features stay.
    one, labels = _blobs(n_per_class=1, num_classes=4)
    probe = fit_linear_probe(one, labels, num_classes=4, standardize="auto")
    assert probe.standardized is False and probe.standardize_scores is None
    with pytest.raises(ValueError, match="standardize"):
        fit_linear_probe(x, y, num_classes=3, standardize="yes")


# --- Self-training from unlabelled features (training.self_train) -----------

def _few_shot(seed, num_classes=5, dim=40, per_class=60):
    """Gaussian classes in 40 dimensions, one labelled example per class;
    the rest split into unlabelled and test examples."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (num_classes, dim))
    x = np.concatenate([c + rng.normal(size=(per_class, dim)) for c in centres])
    y = np.repeat(np.arange(num_classes), per_class)
    pick = np.random.default_rng(100 + seed)
    labelled = np.array([pick.choice(np.flatnonzero(y == c))
                         for c in range(num_classes)])
    rest = pick.permutation(np.setdiff1d(np.arange(len(y)), labelled))
    return x, y, labelled, rest[:150], rest[150:]


def test_self_training_lifts_a_one_shot_probe():
    """With one label per class, the plain probe's weights carry the noise of
    five single points; the pseudo-labelled examples average it away.
    Measured (seeds 0, 1, 4): plain 0.862 / 0.717 / 0.903, self-trained
    1.000 / 0.993 / 1.000 on the test examples."""
    from kerastransfer.training.self_train import self_train_probe

    plain, trained = [], []
    for seed in (0, 1, 4):
        x, y, labelled, unlabelled, test = _few_shot(seed)
        result = self_train_probe(x[labelled], y[labelled], x[unlabelled],
                                  num_classes=5, seed=0)
        accuracy = [np.mean(p.predict_proba(x[test]).argmax(1) == y[test])
                    for p in result.round_probes]
        plain.append(accuracy[0])
        trained.append(accuracy[-1])
        assert result.probe is result.round_probes[-1]
        assert len(result.round_probes) == 3
        # the last round admits up to 10 * 2 per class (5 classes)
        assert len(result.pseudo_index) <= 100
        assert np.all(np.diff(result.pseudo_index) > 0)
        # round 0 is the plain probe
        direct = fit_linear_probe(x[labelled], y[labelled], num_classes=5, seed=0)
        np.testing.assert_allclose(result.round_probes[0].kernel, direct.kernel)
        # the pseudo-labels are the final probe's data: refitting on them
        # reproduces it
        refit = fit_linear_probe(
            np.concatenate([x[labelled], x[unlabelled][result.pseudo_index]]),
            np.concatenate([y[labelled], result.pseudo_labels]), num_classes=5,
            seed=0)
        np.testing.assert_allclose(refit.kernel, result.probe.kernel, atol=1e-12)
    assert np.mean(plain) < 0.85, plain
    assert np.mean(trained) > 0.97, trained
    assert np.mean(trained) - np.mean(plain) > 0.12, (plain, trained)


def test_select_pseudo_labels_is_class_balanced_by_confidence():
    from kerastransfer.training.self_train import select_pseudo_labels

    p = np.array([[0.9, 0.1, 0.0], [0.5, 0.3, 0.2], [0.95, 0.05, 0.0],
                  [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    index, labels = select_pseudo_labels(p, per_class=2)
    # class 0: rows 2 (0.95) and 0 (0.9), not 5 (0.7) or 1 (0.5)
    np.testing.assert_array_equal(index, [0, 2, 3, 4])
    np.testing.assert_array_equal(labels, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="per_class"):
        select_pseudo_labels(p, per_class=0)


def test_self_training_rejects_bad_input():
    from kerastransfer.training.self_train import self_train_probe

    assert not any("valid" in name for name in
                   inspect.signature(self_train_probe).parameters)
    x, y = _blobs()
    with pytest.raises(ValueError, match=r"unlabelled_features.*Received: "
                                         r"unlabelled_features.shape=\(4, 3\)"):
        self_train_probe(x, y, x[:4, :3], num_classes=3)
    with pytest.raises(ValueError, match="non-empty"):
        self_train_probe(x, y, x[:0], num_classes=3)
    with pytest.raises(ValueError, match="multiclass"):
        self_train_probe(x, y, x, num_classes=3, task="multilabel")
    with pytest.raises(ValueError, match="rounds"):
        self_train_probe(x, y, x, num_classes=3, rounds=-1)
    with pytest.raises(ValueError, match="ratio"):
        self_train_probe(x, y, x, num_classes=3, ratio=0)


def _images(n, seed):
    """Three colour classes of 16x16 RGB images in [0, 255]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(120, 40, (n, 16, 16, 3))
    x[..., 0] += 25 * (y == 1)[:, None, None]
    x[..., 2] += 25 * (y == 2)[:, None, None]
    return np.clip(x, 0, 255).astype("float32"), y


def _conv_backbone():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.ReLU(name="relu")(x), name="conv_bb")


def test_fit_self_trains_the_probe_on_unlabelled_images_then_fine_tunes(tmp_path):
    """`fit(head="linear_probe", unlabelled=...)`: the frozen phase's head is
    `self_train_probe` on the features of the training and unlabelled images
    (validation images play no part), fine-tuning follows, and a rerun with
    the checkpoint resumes as finished."""
    import keras

    import kerastransfer as kt
    from kerastransfer.training.self_train import self_train_probe

    x, y = _images(6, seed=0)
    unlabelled, _ = _images(60, seed=1)
    x_val, y_val = _images(12, seed=2)

    def model():
        keras.utils.set_random_seed(0)
        return kt.TransferModel(_conv_backbone(), num_classes=3, dropout=0.0)

    fresh = model()
    extractor = fresh.feature_extractor()
    features = extractor.predict(x, verbose=0)
    expected = self_train_probe(features, y, extractor.predict(unlabelled, verbose=0),
                                num_classes=3)
    plain = fit_linear_probe(features, y, num_classes=3)
    assert len(expected.pseudo_index) > 0
    assert np.abs(expected.probe.kernel - plain.kernel).max() > 1e-3
    fresh.fit(x, y, epochs=1, head="linear_probe", unlabelled=unlabelled,
              validation_data=(x_val, y_val), verbose=0)
    np.testing.assert_allclose(fresh.predict(x, verbose=0),
                               expected.probe.predict_proba(features), atol=1e-4)
    # then fine-tuning, resumable
    tuned = model()
    history = tuned.fit(x, y, epochs=1, fine_tune_epochs=2, head="linear_probe",
                        unlabelled=unlabelled, validation_data=(x_val, y_val),
                        verbose=0, checkpoint_dir=str(tmp_path / "ck"))
    assert [p["name"] for p in history.phases] == ["frozen", "fine_tune"]
    assert len(history.epoch) == 3
    rerun = model().fit(x, y, epochs=1, fine_tune_epochs=2, head="linear_probe",
                        unlabelled=unlabelled, validation_data=(x_val, y_val),
                        verbose=0, checkpoint_dir=str(tmp_path / "ck"))
    assert rerun.epoch == history.epoch
    np.testing.assert_allclose(rerun.history["loss"], history.history["loss"])


def test_auto_head_solves_small_image_data_with_the_probe():
    """`fit(head="auto")` (the default) is the linear probe for at most 10
    images per class - the same head as `head="linear_probe"` - and epochs of
    the optimizer above that, with augmentation, or for a hidden layer."""
    import keras

    import kerastransfer as kt

    def fitted(x, y, **kwargs):
        keras.utils.set_random_seed(0)
        model = kt.TransferModel(_conv_backbone(), num_classes=3, dropout=0.0,
                                 hidden_units=kwargs.pop("hidden_units", ()))
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, **kwargs)
        return model, history

    small, labels = _images(30, seed=0)  # 10 per class
    auto, history = fitted(small, labels)
    probe, _ = fitted(small, labels, head="linear_probe")
    assert history.phases[0]["head"] == "linear_probe" and len(history.epoch) == 1
    np.testing.assert_allclose(auto.predict(small, verbose=0),
                               probe.predict(small, verbose=0), atol=1e-6)
    data = kt.data.from_arrays(small, labels, class_names=["a", "b", "c"])
    assert fitted(data, None)[1].phases[0]["head"] == "linear_probe"
    larger, more_labels = _images(33, seed=0)  # 11 per class
    assert fitted(larger, more_labels)[1].phases[0]["head"] == "epochs"
    for kwargs in ({"augmentation": "light"}, {"hidden_units": (4,)}):
        _, history = fitted(small, labels, **kwargs)
        assert history.phases[0]["head"] == "epochs" and len(history.epoch) == 2


def test_fit_with_unlabelled_images_rejects_bad_input():
    import kerastransfer as kt

    x, y = _images(6, seed=0)
    model = kt.TransferModel(_conv_backbone(), num_classes=3, dropout=0.0)
    with pytest.raises(ValueError, match="head='linear_probe'"):
        model.fit(x, y, epochs=1, unlabelled=x, verbose=0)
    with pytest.raises(ValueError, match=r"Received: unlabelled.shape=\(6, 8, 8, 3\)"):
        model.fit(x, y, epochs=1, head="linear_probe", unlabelled=x[:, :8, :8],
                  verbose=0)
    multilabel = kt.TransferModel(_conv_backbone(), num_classes=3, dropout=0.0,
                                  task="multilabel")
    with pytest.raises(ValueError, match="multiclass"):
        multilabel.fit(x, np.eye(3)[y], epochs=1, head="linear_probe",
                       unlabelled=x, verbose=0)


def test_cli_train_self_trains_the_probe_on_an_unlabelled_folder(tmp_path,
                                                                 monkeypatch):
    """`kerastransfer train --head linear_probe --unlabelled DIR`: the images
    are decoded like the training images and reach the probe; `--unlabelled`
    without `--head linear_probe` is a usage error."""
    import json

    import keras
    from click.testing import CliRunner

    import kerastransfer as kt
    from kerastransfer.cli import cli
    from kerastransfer.cli.train import load_unlabelled_images
    from kerastransfer.data.synthetic import write_image_folder

    def build(shape, weights):
        backbone = _conv_backbone() if tuple(shape) == (16, 16, 3) else None
        if weights:
            backbone.load_weights(weights)
        return backbone

    kt.register_backbone("probe_test_cnn", build, preprocessing="unit",
                         default_size=16, min_size=16, feature_dim=4,
                         family="test", overwrite=True)
    weights = tmp_path / "pretrained.weights.h5"
    keras.utils.set_random_seed(0)
    _conv_backbone().save_weights(weights)
    data = write_image_folder(tmp_path / "data", ("green", "red", "blue"),
                              per_class=4, size=16)
    pool = write_image_folder(tmp_path / "pool", ("a", "b", "c"), per_class=10,
                              size=16, seed=1)
    images = load_unlabelled_images({"unlabelled": pool, "strict": False,
                                     "channels": 3, "image_size": (16, 16),
                                     "batch_size": 8, "seed": 0})
    assert images.shape == (30, 16, 16, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 100

    def train(*args):
        return CliRunner().invoke(cli, ["train", str(data), "--backbone",
                                        "probe_test_cnn", "--weights", str(weights),
                                        "--epochs", "1", "--batch-size", "4",
                                        *map(str, args)])

    from kerastransfer.training import self_train

    seen = []
    original = self_train.self_train_probe

    def spy(features, labels, unlabelled_features, **kwargs):
        seen.append(np.shape(unlabelled_features))
        return original(features, labels, unlabelled_features, **kwargs)

    monkeypatch.setattr(self_train, "self_train_probe", spy)
    result = train("--head", "linear_probe", "--unlabelled", pool,
                   "--fine-tune-epochs", "1", "--out", tmp_path / "m.keras")
    assert result.exit_code == 0, result.output
    assert seen == [(30, 4)]  # the 30 pool images' pooled features
    record = json.loads((tmp_path / "m.train.json").read_text())
    assert 0 <= record["metrics"]["val_accuracy"] <= 1
    refused = train("--unlabelled", pool, "--out", tmp_path / "n.keras")
    assert refused.exit_code == 2 and "--head linear_probe" in refused.output
    assert not (tmp_path / "n.keras").exists()
