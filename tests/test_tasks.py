"""The shared task core: state owned by the task, the contract, old files, AdaBN."""

import inspect
import os

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.data.synthetic import write_image_folder
from kerastransfer.tasks.base import TransferTask

DATA = os.path.join(os.path.dirname(__file__), "data")


def _tiny_backbone(size=16, name="tiny_backbone"):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    return keras.Model(inputs, x, name=name)


def _bn(model):
    return model.backbone.get_layer("bn")


def test_transfer_model_is_a_task_with_its_contract():
    model = kt.TransferModel(_tiny_backbone(), class_names=["a", "b"])
    assert isinstance(model, TransferTask)
    assert model.default_loss() == "sparse_categorical_crossentropy"
    contract = model.export_contract()
    assert contract["task"] == "multiclass"
    assert contract["class_names"] == ["a", "b"]
    assert contract["input_shape"] == [16, 16, 3]


def test_free_unfreeze_functions_update_the_task_state():
    model = kt.TransferModel(_tiny_backbone(), num_classes=2)
    kt.freeze_backbone(model)
    assert model.phase_state == {"unfreeze": "none", "train_bn": False}
    assert not model.backbone.trainable
    kt.unfreeze(model, "top:1", train_bn=True)
    assert model.phase_state == {"unfreeze": "top:1", "train_bn": True}
    assert _bn(model).trainable and not model.backbone.get_layer("conv").trainable


def test_compile_arguments_are_kept_across_phases():
    model = kt.TransferModel(_tiny_backbone(), num_classes=2)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_hinge")
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    model.fit(x, y, epochs=1, fine_tune_epochs=1, verbose=0)
    assert model.compile_arguments()["loss"] == "categorical_hinge"
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.loss == "categorical_hinge"


def test_one_hot_labels_choose_categorical_crossentropy():
    model = kt.TransferModel(_tiny_backbone(), num_classes=2)
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.loss == "categorical_crossentropy"


@pytest.mark.parametrize("weights", [None, "pretrained_train_bn"])
def test_image_folder_data_trains_with_precise_batchnorm(tmp_path, weights):
    """The README quickstart offline: ImageData into fit() with BatchNorm
    recalibration (it raised "'ImageData' object is not iterable")."""
    write_image_folder(tmp_path / "photos", classes=("cat", "dog"), per_class=6,
                       size=24)
    data = kt.load_image_folder(tmp_path / "photos", image_size=(16, 16),
                                validation_split=0.25, batch_size=4)
    if weights is None:  # from scratch: BatchNorm trains in the one phase
        model = kt.TransferModel(_tiny_backbone(), class_names=data.class_names,
                                 weights=None)
        history = model.fit(data, epochs=1, verbose=0)
    else:  # a pretrained backbone whose BatchNorm trains in fine-tuning
        model = kt.TransferModel(_tiny_backbone(), class_names=data.class_names)
        before = np.array(_bn(model).moving_mean)
        history = model.fit(data, epochs=1, fine_tune_epochs=1, train_bn=True,
                            verbose=0)
        assert not np.allclose(before, np.array(_bn(model).moving_mean))
    assert history.phases[-1]["precise_bn_images"] == data.num_train
    assert "val_accuracy" in history.history


def test_adapt_sets_backbone_batchnorm_to_target_statistics():
    model = kt.TransferModel(_tiny_backbone(), num_classes=2)
    model.freeze_backbone()
    weights_before = [np.array(w) for w in model.trainable_weights]
    target = np.random.default_rng(1).uniform(100, 200, (40, 16, 16, 3))
    used = model.adapt(target.astype("float32"), batch_size=40)
    assert used == 40
    conv_out = model.backbone.get_layer("conv")(target.astype("float32"))
    expected = np.mean(np.array(conv_out), axis=(0, 1, 2))
    np.testing.assert_allclose(np.array(_bn(model).moving_mean), expected,
                               rtol=1e-4, atol=1e-3)
    assert not _bn(model).trainable  # frozen again afterwards
    for before, after in zip(weights_before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, np.array(after))


def test_file_saved_by_version_0_1_0_loads_with_same_predictions():
    expected = np.load(os.path.join(DATA, "v0_1_0_classifier_expected.npz"))
    model = kt.load_model(os.path.join(DATA, "v0_1_0_classifier.keras"))
    assert isinstance(model, kt.TransferModel)
    assert model.class_names == ["a", "b", "c"]
    assert model.pooling == "max"
    assert model.phase_state == {"unfreeze": "all", "train_bn": False}
    np.testing.assert_allclose(model.predict(expected["images"], verbose=0),
                               expected["predictions"], atol=1e-6)


def test_round_trip_keeps_serialization_only_state(tmp_path):
    model = kt.TransferModel(_tiny_backbone(), num_classes=2)
    model.unfreeze("top:1")
    model.pretrained = False
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = kt.load_model(path)
    assert loaded.phase_state == {"unfreeze": "top:1", "train_bn": False}
    assert loaded.pretrained is False
    assert loaded.backbone_name == "tiny_backbone"
    # serialization-only arguments are not constructor arguments any more
    parameters = inspect.signature(kt.TransferModel.__init__).parameters
    assert not {"backbone_name", "pretrained", "phase_state"} & set(parameters)


def test_private_keras_api_used_in_one_place_still_exists():
    """`TransferTask._maybe_symbolic_build` (multi-worker workaround) and
    `phases.iter_layers` rely on private Keras 3.15 API: fail loudly if it goes."""
    parameters = inspect.signature(keras.Model._maybe_symbolic_build).parameters
    assert list(parameters)[1:] == ["iterator", "data_batch"]
    layer = keras.layers.Dense(2)
    assert list(layer._flatten_layers(include_self=True, recursive=True)) == [layer]


def test_training_twice_on_a_dataset_is_quiet(tmp_path, caplog, recwarn):
    """No Keras "shuffle=True ... will be ignored" warning for dataset input and
    no TensorFlow retracing warnings when a second model trains in the process."""
    write_image_folder(tmp_path / "p", per_class=6, size=24)
    data = kt.load_image_folder(tmp_path / "p", image_size=(16, 16),
                                validation_split=0.25, batch_size=4)
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(3):
            model = kt.TransferModel(_tiny_backbone(), class_names=data.class_names)
            model.fit(data, epochs=2, fine_tune_epochs=2, train_bn=True, verbose=0)
    assert not [w for w in recwarn if "shuffle" in str(w.message)]
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def _separable(n=30, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(120, 20, (n, size, size, 3))
    x[..., 0] += 60 * (y == 1)[:, None, None]
    x[..., 2] += 60 * (y == 2)[:, None, None]
    return np.clip(x, 0, 255).astype("float32"), y


def test_linear_probe_head_equals_the_solver_then_fine_tunes(tmp_path):
    from kerastransfer.training.probe import fit_linear_probe

    x, y = _separable()
    model = kt.TransferModel(_tiny_backbone(), num_classes=3, dropout=0.0)
    history = model.fit(x, y, epochs=5, fine_tune_epochs=2, head="linear_probe",
                        validation_data=(x[:9], y[:9]), verbose=0,
                        checkpoint_dir=str(tmp_path / "ck"))
    # one solver "epoch", then the fine-tuning epochs, on one axis
    assert [p["name"] for p in history.phases] == ["frozen", "fine_tune"]
    assert history.phases[0]["end_epoch"] == 1 and len(history.epoch) == 3
    assert history.history["val_accuracy"][0] is not None
    # the frozen phase's head is the solver's (before fine-tuning moved it)
    fresh = kt.TransferModel(_tiny_backbone(), num_classes=3, dropout=0.0)
    features = fresh.feature_extractor().predict(x, verbose=0)
    expected = fit_linear_probe(features, y, num_classes=3)
    fresh.fit(x, y, epochs=1, head="linear_probe", verbose=0)
    np.testing.assert_allclose(
        fresh.predict(x, verbose=0), expected.predict_proba(features), atol=1e-4)
    # a rerun with the same checkpoint resumes as finished: same history
    again = kt.TransferModel(_tiny_backbone(), num_classes=3, dropout=0.0)
    rerun = again.fit(x, y, epochs=5, fine_tune_epochs=2, head="linear_probe",
                      validation_data=(x[:9], y[:9]), verbose=0,
                      checkpoint_dir=str(tmp_path / "ck"))
    assert rerun.epoch == history.epoch
    np.testing.assert_allclose(rerun.history["loss"], history.history["loss"])


def test_linear_probe_head_refuses_hidden_layers():
    x, y = _separable(12)
    model = kt.TransferModel(_tiny_backbone(), num_classes=3, hidden_units=(8,))
    with pytest.raises(ValueError, match="linear classification head"):
        model.fit(x, y, epochs=1, head="linear_probe", verbose=0)
    with pytest.raises(ValueError, match="head must be one of"):
        model.fit(x, y, epochs=1, head="probe", verbose=0)


def test_reload_restores_the_optimizer_state_without_warnings(tmp_path, recwarn):
    """The template optimizer kept for later phases was saved too, and loaded into
    the real optimizer ("Skipping variable loading for optimizer", step 0)."""
    x, y = _separable(12)
    model = kt.TransferModel(_tiny_backbone(), num_classes=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = kt.load_model(path)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 3
    for mine, theirs in zip(model.optimizer.variables, loaded.optimizer.variables,
                            strict=True):
        np.testing.assert_array_equal(np.array(mine), np.array(theirs))
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]


def test_unknown_constructor_arguments_are_refused():
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['pretrained'\]"
                       r".*weights=None"):
        kt.TransferModel(_tiny_backbone(), num_classes=2, pretrained=False)
    with pytest.raises(TypeError, match="poolin"):
        kt.TransferModel(_tiny_backbone(), num_classes=2, poolin="max")


def test_keras_model_backbone_with_weights_none_trains_from_scratch():
    x, y = _separable(12)
    model = kt.TransferModel(_tiny_backbone(), num_classes=3, weights=None)
    assert model.pretrained is False
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, verbose=0)
    assert [p["name"] for p in history.phases] == ["from_scratch"]
    assert kt.TransferModel(_tiny_backbone(), num_classes=3).pretrained is True


def test_fine_tune_rate_defaults_to_a_tenth_of_the_given_learning_rate():
    x, y = _separable(12)
    model = kt.TransferModel(_tiny_backbone(), num_classes=3)
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, learning_rate=3e-3,
                        verbose=0)
    rates = [p["learning_rate"] for p in history.phases]
    assert rates[0] == pytest.approx(3e-3) and rates[1] == pytest.approx(3e-4)
    # without learning_rate: the optimizer's own rate (Adam 1e-3), then a tenth
    other = kt.TransferModel(_tiny_backbone(), num_classes=3)
    rates = [p["learning_rate"] for p in other.fit(
        x, y, epochs=1, fine_tune_epochs=1, verbose=0).phases]
    assert rates == [pytest.approx(1e-3), pytest.approx(1e-4)]
