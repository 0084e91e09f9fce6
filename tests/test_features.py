"""Cached-feature training of frozen phases: exactness, callbacks, history."""

import glob
import os

import keras
import numpy as np
import pytest
from conftest import separable_images

import kerastransfer as kt
from kerastransfer.training import features


def tiny_backbone():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, name="conv2")(x)
    return keras.Model(inputs, x, name="tiny")


def build(dropout=0.3, seed=7):
    keras.utils.set_random_seed(seed)
    model = kt.TransferModel(tiny_backbone(), num_classes=3, dropout=dropout,
                             hidden_units=(8,), input_shape=(32, 32, 3))
    assert model.pretrained  # a keras.Model backbone: two phases
    return model


def head_weights(model):
    return [w.numpy() for layer in model.head_layers for w in layer.weights]


def data():
    return separable_images(n_per_class=12, size=32, num_classes=3)


def train(cache, x, y, **kwargs):
    model = build()
    start = head_weights(model)
    keras.utils.set_random_seed(11)
    history = model.fit(x, y, epochs=3, fine_tune_epochs=1, batch_size=8,
                        shuffle=False, verbose=0, cache_features=cache, **kwargs)
    return model, history, start


def test_cached_head_matches_uncached_head_with_dropout():
    x, y = data()
    val = (x[:9], y[:9])
    plain, h_plain, start = train(False, x, y, validation_data=val)
    cached, h_cached, _ = train(True, x, y, validation_data=val)
    assert [p["cached_features"] for p in h_cached.phases] == [True, False]
    assert [p["cached_features"] for p in h_plain.phases] == [False, False]
    # the head really trained (so equality means something): 3 epochs x 5 steps
    pairs = zip(head_weights(plain), start, strict=True)
    moved = max(np.abs(a - b).max() for a, b in pairs)
    assert moved > 1e-3
    # same seed, same batches in the same order, dropout 0.3 with the same seed
    # generator: equal to float32 round-off (tolerance 1e-5), fine-tuning included
    for a, b in zip(head_weights(plain), head_weights(cached), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    for a, b in zip(plain.backbone.get_weights(), cached.backbone.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # the history covers all 4 epochs, with validation metrics in the cached phase
    assert h_cached.epoch == [0, 1, 2, 3]
    assert sorted(h_cached.history) == sorted(h_plain.history)
    for key in ("loss", "val_loss", "val_accuracy"):
        assert len(h_cached.history[key]) == 4
        np.testing.assert_allclose(h_cached.history[key], h_plain.history[key],
                                   atol=1e-5)
    assert h_cached.phase_boundaries == [3]


@pytest.mark.slow
@pytest.mark.filterwarnings("error:.*shuffle=True.*:UserWarning")  # no Keras warning
def test_cached_dataset_on_disk_matches_uncached(tmp_path):
    import tensorflow as tf

    x, y = data()
    weights = np.linspace(0.5, 1.5, len(x)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[:9], y[:9])).batch(4)
    plain, h_plain, _ = train(False, ds, None, validation_data=val)
    cached, h_cached, _ = train(str(tmp_path / "cache"), ds, None,
                                validation_data=val)
    assert h_cached.phases[0]["cached_features"] is True
    assert glob.glob(str(tmp_path / "cache" / "features-*"))  # cache files on disk
    for a, b in zip(head_weights(plain), head_weights(cached), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose(h_cached.history["val_loss"],
                               h_plain.history["val_loss"], atol=1e-5)


def test_caching_skipped_with_augmentation_or_trainable_backbone():
    x, y = data()
    model = build()
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0,
                        cache_features=True, augmentation="light")
    assert [p["cached_features"] for p in history.phases] == [False, False]
    model.unfreeze("all")
    assert features.can_cache(model, x, {})[0] is False
    model.freeze_backbone()
    assert features.can_cache(model, x, {}) == (True, "")


def test_head_model_shares_weights():
    model = build(dropout=0.0)
    head = features.head_model(model)
    x, _ = data()
    feats = model.feature_extractor().predict(x[:4], verbose=0)
    np.testing.assert_allclose(head.predict(feats, verbose=0),
                               model.predict(x[:4], verbose=0), atol=1e-6)
    assert {id(v) for v in head.weights} <= {id(v) for v in model.weights}


def test_callbacks_see_the_full_model_in_cached_phase(tmp_path):
    x, y = data()
    model = build()
    path = str(tmp_path / "best.keras")
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0,
                                            min_delta=1e9)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0, cache_features=True,
                        callbacks=[keras.callbacks.ModelCheckpoint(path), stopper])
    # min_delta=1e9 means no epoch "improves": EarlyStopping stops after epoch 2
    assert history.epoch == [0, 1]
    loaded = kt.load_model(path)
    assert isinstance(loaded, kt.TransferModel)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0),
                               model.predict(x[:4], verbose=0), atol=1e-5)


@pytest.mark.parametrize("cache", [False, True])
def test_tensorboard_one_time_axis_across_phases(tmp_path, cache):
    import tensorflow as tf

    x, y = data()
    model = build()
    logdir = str(tmp_path / "logs")
    model.fit(x, y, epochs=2, fine_tune_epochs=2, batch_size=8, verbose=0,
              validation_data=(x[:9], y[:9]), cache_features=cache,
              callbacks=[keras.callbacks.TensorBoard(logdir)])
    steps = {"train": [], "validation": []}
    for split in steps:
        for file in glob.glob(os.path.join(logdir, split, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(file):
                for value in event.summary.value:
                    if value.tag == "epoch_loss":
                        steps[split].append(event.step)
    assert sorted(steps["train"]) == [0, 1, 2, 3]
    assert sorted(steps["validation"]) == [0, 1, 2, 3]


def test_validation_split_matches_uncached_and_extraction_is_traced_once():
    x, y = data()
    plain, h_plain, _ = train(False, x, y, validation_split=0.25)
    cached, h_cached, _ = train(True, x, y, validation_split=0.25)
    assert h_cached.phases[0]["cached_features"] is True
    # the same last quarter held out, the same batches: equal histories
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_cached.history[key], h_plain.history[key],
                                   atol=1e-5)
    # A second frozen phase re-uses the traced extraction: no new trace.
    extract = features._extract_fn(cached)
    traces = extract.experimental_get_tracing_count()
    assert traces >= 1
    cached.freeze_backbone()
    cached.fit(x, y, epochs=1, batch_size=8, verbose=0, cache_features=True,
               validation_data=(x[:9], y[:9]))
    assert features._extract_fn(cached) is extract
    assert extract.experimental_get_tracing_count() == traces


def test_shuffled_cached_phase_is_reproducible_and_reshuffles():
    x, y = data()
    runs = []
    for shuffle in (True, True, False):
        model = build(dropout=0.0)
        keras.utils.set_random_seed(3)
        model.fit(x, y, epochs=3, batch_size=8, shuffle=shuffle, verbose=0,
                  cache_features=True)
        runs.append(head_weights(model))
    for a, b in zip(runs[0], runs[1], strict=True):  # same seed, same result
        np.testing.assert_array_equal(a, b)
    # shuffling changed the batches (so the equality above is not trivial)
    assert max(np.abs(a - b).max()
               for a, b in zip(runs[0], runs[2], strict=True)) > 1e-4


@pytest.mark.parametrize("weighting", ["class_weight", "sample_weight"])
def test_class_or_sample_weights_match_uncached(weighting):
    x, y = data()
    kwargs = ({"class_weight": {0: 1.0, 1: 3.0, 2: 0.5}} if weighting == "class_weight"
              else {"sample_weight": np.linspace(0.2, 2.0, len(x)).astype("float32")})
    plain, h_plain, _ = train(False, x, y, **kwargs)
    cached, h_cached, _ = train(True, x, y, **kwargs)
    assert h_cached.phases[0]["cached_features"] is True
    np.testing.assert_allclose(h_cached.history["loss"], h_plain.history["loss"],
                               atol=1e-5)
    for a, b in zip(head_weights(plain), head_weights(cached), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # the weights changed the result (the equality above is not trivial)
    unweighted, _, _ = train(True, x, y)
    assert max(np.abs(a - b).max() for a, b in
               zip(head_weights(unweighted), head_weights(cached), strict=True)) > 1e-4


def test_cached_phase_with_checkpoints_resumes_exactly(tmp_path):
    from training_helpers import StopAt

    x, y = data()

    def run(directory, callbacks=()):
        model = build()
        keras.utils.set_random_seed(11)
        history = model.fit(x, y, epochs=4, batch_size=8, verbose=0,
                            cache_features=True, checkpoint_dir=directory,
                            callbacks=list(callbacks))
        return model, history

    reference, h_reference = run(tmp_path / "reference")
    assert h_reference.phases[0]["cached_features"] is True  # cached, shuffled
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", [StopAt(2)])
    resumed, h_resumed = run(tmp_path / "run")
    assert h_resumed.phases[0]["cached_features"] is True
    assert h_resumed.epoch == [0, 1, 2, 3]
    np.testing.assert_allclose(h_resumed.history["loss"],
                               h_reference.history["loss"], atol=1e-6)
    for a, b in zip(head_weights(reference), head_weights(resumed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
