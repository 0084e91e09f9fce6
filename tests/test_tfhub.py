"""TF-Hub backbones in Keras 3: HubBackbone, `TransferModel("tfhub:...")`, errors.

Every hub model here is a small SavedModel the tests build themselves
(tests/hub_fixtures.py): nothing is downloaded.
"""

import os
import shutil
import time
import urllib.error

import numpy as np
import pytest
from conftest import separable_images
from hub_fixtures import (
    REG_SCALE,
    make_image_hub,
    make_stateless_hub,
    make_text_hub,
    make_tf1_hub_module,
)

import kerastransfer as kt
from kerastransfer.backbones import tfhub
from kerastransfer.backbones.tfhub import HubBackbone, export_saved_model
from kerastransfer.errors import (
    HubModelError,
    InputShapeError,
    KerasTransferError,
    WeightsError,
)
from kerastransfer.training.phases import backbone_blocks


@pytest.fixture(scope="module")
def image_hub(tmp_path_factory):
    return make_image_hub(tmp_path_factory.mktemp("hub") / "image")


@pytest.fixture
def fresh_image_hub(tmp_path):
    """A hub model the test may delete or whose weights it changes."""
    return make_image_hub(tmp_path / "image_hub")


@pytest.fixture(scope="module")
def text_hub(tmp_path_factory):
    return make_text_hub(tmp_path_factory.mktemp("hub") / "text")


def _hub_layer(model) -> HubBackbone:
    layers = [x for x in model.backbone.layers if isinstance(x, HubBackbone)]
    assert len(layers) == 1
    return layers[0]


def _hub_value(model, name):
    """A variable of the SavedModel object itself (not the Keras wrapper)."""
    return getattr(_hub_layer(model)._hub_object, name).numpy().copy()


# --- The layer ---------------------------------------------------------------------


def test_keras_variables_wrap_the_savedmodel_variables(image_hub):
    layer = HubBackbone(image_hub, trainable=True)
    obj = layer._hub_object
    by_name = {v.name: v for v in layer.weights}
    assert sorted(by_name) == sorted([
        "conv_kernel", "conv_bias", "bn_gamma", "bn_beta", "bn_moving_mean",
        "bn_moving_variance", "logits_kernel",
    ])
    # The same tf.Variable, no copy.
    assert by_name["conv_kernel"].value is obj.kernel
    assert {v.name for v in layer.trainable_weights} == {
        "conv_kernel", "conv_bias", "bn_gamma", "bn_beta", "logits_kernel"}
    assert {v.name for v in layer.non_trainable_weights} == {
        "bn_moving_mean", "bn_moving_variance"}
    # Assigning through Keras changes what the SavedModel's function computes.
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    before = np.asarray(layer(x))
    # gamma = 0, beta = 5: batch norm outputs 5 everywhere, relu keeps it.
    by_name["bn_gamma"].assign(np.zeros(8, "float32"))
    by_name["bn_beta"].assign(np.full(8, 5.0, "float32"))
    np.testing.assert_array_equal(obj.beta.numpy(), np.full(8, 5.0))
    np.testing.assert_allclose(np.asarray(layer(x)), np.full((2, 8), 5.0), atol=1e-6)
    assert not np.allclose(before, 5.0)


def test_layer_config_round_trip(image_hub):
    layer = HubBackbone(image_hub, trainable=False, signature="serving_default",
                        output_key="features", arguments={}, input_shape=(32, 32, 3))
    config = layer.get_config()
    for key, value in [("handle", image_hub), ("signature", "serving_default"),
                       ("output_key", "features"), ("arguments", {}),
                       ("input_shape", [32, 32, 3]), ("trainable", False)]:
        assert config[key] == value
    clone = HubBackbone.from_config(config)
    x = np.random.default_rng(1).uniform(0, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)), atol=1e-6)


def test_signature_and_output_key_select_an_output(image_hub):
    x = np.random.default_rng(2).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    plain = np.asarray(HubBackbone(image_hub)(x))
    features = HubBackbone(image_hub, signature="serving_default",
                           output_key="features")
    logits = HubBackbone(image_hub, signature="serving_default", output_key="logits")
    np.testing.assert_allclose(np.asarray(features(x)), plain, atol=1e-6)
    head = logits._hub_object.head.numpy()
    np.testing.assert_allclose(np.asarray(logits(x)), plain @ head, atol=1e-5)
    assert features.compute_output_shape((None, 32, 32, 3)) == (None, 8)
    assert logits.compute_output_shape((None, 32, 32, 3)) == (None, 3)
    several = r"output_key= one of \['features', 'logits'\]"
    with pytest.raises(HubModelError, match=several):
        HubBackbone(image_hub, signature="serving_default")
    with pytest.raises(HubModelError, match="no signature 'serve'"):
        HubBackbone(image_hub, signature="serve")
    with pytest.raises(HubModelError, match="no output 'probs'"):
        HubBackbone(image_hub, signature="serving_default", output_key="probs")


def test_signature_in_the_handle_fragment_survives_save_and_load(image_hub, tmp_path):
    name = "tfhub:" + image_hub + "#signature=serving_default&output_key=logits"
    spec = kt.get_backbone(name)
    assert (spec.name, spec.feature_dim) == (name, 3)
    model = kt.TransferModel(name, num_classes=2)
    layer = _hub_layer(model)
    assert (layer.handle, layer.signature, layer.output_key) == (
        image_hub, "serving_default", "logits")
    x, _ = separable_images(3, size=32)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "sig.keras")
    loaded = kt.load_model(tmp_path / "sig.keras")
    assert loaded.backbone_name == name
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    with pytest.raises(HubModelError, match="only 'signature' and 'output_key'"):
        kt.get_backbone("tfhub:" + image_hub + "#tags=serve")


def test_regularization_losses_are_added_when_trainable(image_hub):
    model = kt.TransferModel("tfhub:" + image_hub, num_classes=2)
    kernel = _hub_value(model, "kernel")
    expected = REG_SCALE * float(np.sum(kernel.astype("float64") ** 2))
    x, y = separable_images(4, size=32)
    model.unfreeze("all")
    model(x)
    losses = [float(v) for v in model.losses]
    assert len(losses) == 1
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    # ...and counted in the training objective: evaluate's loss = CE + reg.
    model.compile(loss="sparse_categorical_crossentropy")
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    probs = model.predict(x, verbose=0)
    cross_entropy = float(np.mean(-np.log(probs[np.arange(len(y)), y])))
    assert loss == pytest.approx(cross_entropy + expected, rel=1e-4)
    # Frozen: no regularization loss (the hub weights do not train).
    model.freeze_backbone()
    model(x)
    assert model.losses == []


# --- TransferModel("tfhub:...") ----------------------------------------------------


def test_spec_reads_size_dtype_and_features_from_the_savedmodel(image_hub, text_hub):
    spec = kt.get_backbone("tfhub:" + image_hub)
    assert (spec.name, spec.default_size, spec.feature_dim, spec.input_dtype,
            spec.preprocessing, spec.source) == (
        "tfhub:" + image_hub, 32, 8, "float32", "unit", "tfhub")
    text = kt.get_backbone("tfhub:" + text_hub)
    assert (text.input_dtype, text.feature_dim, text.preprocessing) == (
        "string", 6, "none")

    model = kt.TransferModel("tfhub:" + image_hub, num_classes=3)
    assert model.image_shape == (32, 32, 3)
    assert model.backbone_name == "tfhub:" + image_hub
    assert model.pretrained is True
    blocks = backbone_blocks(model)
    assert [(name, [layer.name for layer in layers]) for name, layers in blocks] == [
        ("backbone", ["hub_backbone"])]
    # Images in [0, 255] reach the hub model scaled to [0, 1].
    x = np.full((1, 32, 32, 3), 255.0, "float32")
    direct = HubBackbone(image_hub)(x / 255.0)
    np.testing.assert_allclose(
        np.asarray(model.feature_extractor()(x)), np.asarray(direct), atol=1e-5)


def test_variable_size_model_and_feature_maps(tmp_path):
    handle = make_image_hub(tmp_path / "any_size", fixed_size=False, output="map",
                            signatures=False)
    spec = kt.get_backbone("tfhub:" + handle)
    assert spec.default_size == tfhub.FALLBACK_SIZE
    model = kt.TransferModel("tfhub:" + handle, num_classes=2, input_shape=(40, 48, 3))
    out = model.predict(np.zeros((2, 40, 48, 3), "float32"), verbose=0)
    assert out.shape == (2, 2)
    assert model.get_layer("pool").output.shape == (None, 8)


@pytest.mark.slow
def test_frozen_then_fine_tuned_hub_weights_and_bn_statistics(image_hub):
    model = kt.TransferModel("tfhub:" + image_hub, num_classes=2)
    x, y = separable_images(16, size=32)
    kernel0, mean0 = _hub_value(model, "kernel"), _hub_value(model, "moving_mean")
    var0 = _hub_value(model, "moving_var")

    # Frozen: the hub weights and the BN moving statistics stay exactly the same.
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert [p["name"] for p in history.phases] == ["frozen"]
    np.testing.assert_array_equal(_hub_value(model, "kernel"), kernel0)
    np.testing.assert_array_equal(_hub_value(model, "moving_mean"), mean0)
    np.testing.assert_array_equal(_hub_value(model, "moving_var"), var0)

    # Fine-tuning with train_bn=False (the default): the weights train, BN stays in
    # inference mode (moving statistics unchanged).
    history = model.fit(x, y, epochs=0, fine_tune_epochs=2, batch_size=8,
                        fine_tune_lr=1e-2, verbose=0)
    assert [p["name"] for p in history.phases] == ["fine_tune"]
    kernel1 = _hub_value(model, "kernel")
    assert np.abs(kernel1 - kernel0).max() > 1e-4
    np.testing.assert_array_equal(_hub_value(model, "moving_mean"), mean0)
    assert _hub_layer(model).train_bn is False

    # train_bn=True: the hub BatchNorm runs in training mode and its statistics move
    # towards the batch statistics.
    model.fit(x, y, epochs=0, fine_tune_epochs=1, train_bn=True, batch_size=8,
              verbose=0)
    assert _hub_layer(model).train_bn is True
    moved = np.abs(_hub_value(model, "moving_mean") - mean0).max()
    assert moved > 1e-3
    assert np.abs(_hub_value(model, "kernel") - kernel1).max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("form", ["directory", "file_url"])
def test_save_load_keeps_fine_tuned_weights_and_handle(fresh_image_hub, tmp_path, form):
    handle = fresh_image_hub if form == "directory" else "file://" + fresh_image_hub
    model = kt.TransferModel("tfhub:" + handle, num_classes=2)
    x, y = separable_images(8, size=32)
    model.fit(x, y, epochs=1, fine_tune_epochs=1, fine_tune_lr=1e-2, batch_size=8,
              verbose=0)
    tuned = _hub_value(model, "kernel")
    assert not np.array_equal(tuned, HubBackbone(handle)._hub_object.kernel.numpy())
    expected = model.predict(x, verbose=0)

    path = tmp_path / "hub_model.keras"
    model.save(path)
    loaded = kt.load_model(path)  # safe_mode=True
    assert isinstance(loaded, kt.TransferModel)
    assert loaded.backbone_name == "tfhub:" + handle
    assert _hub_layer(loaded).handle == handle
    np.testing.assert_array_equal(_hub_value(loaded, "kernel"), tuned)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    assert loaded.phase_state == model.phase_state


@pytest.mark.slow
def test_load_when_handle_is_gone_names_handle_and_cache(fresh_image_hub, tmp_path):
    model = kt.TransferModel("tfhub:" + fresh_image_hub, num_classes=2)
    path = tmp_path / "m.keras"
    model.save(path)
    shutil.rmtree(fresh_image_hub)
    with pytest.raises(HubModelError) as info:
        kt.load_model(path)
    message = str(info.value)
    assert fresh_image_hub in message and "TFHUB_CACHE_DIR" in message


@pytest.mark.slow
def test_export_saved_model_is_self_contained(fresh_image_hub, tmp_path):
    import tensorflow as tf

    model = kt.TransferModel("tfhub:" + fresh_image_hub, num_classes=2)
    x, y = separable_images(8, size=32)
    model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0)
    expected = model.predict(x, verbose=0)
    out = tmp_path / "exported"
    assert export_saved_model(model, out) == str(out)
    with pytest.raises(FileExistsError):
        export_saved_model(model, out)
    shutil.rmtree(fresh_image_hub)  # the export must not need the handle
    loaded = tf.saved_model.load(str(out))  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".exported")]
    assert leftovers == []


# --- Text embeddings -----------------------------------------------------------------

_POSITIVE = ["good great movie", "great fun film", "really good story",
             "fun and great", "good acting great plot", "a great good time"]
_NEGATIVE = ["bad awful movie", "awful boring film", "really bad story",
             "boring and awful", "bad acting awful plot", "a boring bad time"]


@pytest.mark.slow
def test_text_embedding_trains_as_a_text_classifier(text_hub, tmp_path):
    model = kt.TransferModel("tfhub:" + text_hub, num_classes=2,
                             class_names=["neg", "pos"], dropout=0.0)
    assert model.input_dtype_name == "string"
    assert model.image_shape == ()
    x = np.array(_NEGATIVE + _POSITIVE * 1, dtype=object)
    y = np.array([0] * len(_NEGATIVE) + [1] * len(_POSITIVE))
    table0 = _hub_value(model, "table")
    model.fit(x, y, epochs=5, fine_tune_epochs=30, learning_rate=0.05,
              fine_tune_lr=0.05, batch_size=12, verbose=0)
    assert np.abs(_hub_value(model, "table") - table0).max() > 1e-3
    probs = model.predict(x, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y))
    assert accuracy == 1.0
    path = tmp_path / "text.keras"
    model.save(path)
    loaded = kt.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probs, atol=1e-6)


def test_onnx_export_of_a_text_model_is_refused(text_hub, tmp_path):
    from kerastransfer.errors import ExportError
    from kerastransfer.export import export_onnx

    model = kt.TransferModel("tfhub:" + text_hub, num_classes=2)
    with pytest.raises(ExportError, match="string inputs"):
        export_onnx(model, tmp_path / "text.onnx")
    assert not (tmp_path / "text.onnx").exists()


@pytest.mark.slow
def test_onnx_export_of_an_image_hub_model_validates(image_hub, tmp_path):
    from kerastransfer.export import export_onnx

    model = kt.TransferModel("tfhub:" + image_hub, num_classes=3)
    report = export_onnx(model, tmp_path / "hub.onnx", atol=1e-4)
    assert report.max_abs_diff <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "hub.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, model.predict(x, verbose=0), atol=1e-4)


# --- Errors --------------------------------------------------------------------------


def test_unreachable_handle_fails_fast_with_a_clear_error(tmp_path, monkeypatch):
    # A real download through tensorflow_hub that cannot connect, whether or not
    # this machine has network access: nothing listens on 127.0.0.1 port 9.
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = "http://127.0.0.1:9/models/google/mobilenet-v3/1"
    started = time.monotonic()
    with pytest.raises(HubModelError) as info:
        kt.TransferModel("tfhub:" + handle, num_classes=2)
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert handle in message and "TFHUB_CACHE_DIR" in message
    assert "URLError" in message and "Connection refused" in message
    assert isinstance(info.value, KerasTransferError)
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert not (tmp_path / "cache").exists() or not any(
        (tmp_path / "cache").rglob("saved_model.pb"))


def test_offline_kaggle_handle_names_handle_and_cache(tmp_path, monkeypatch):
    # The resolver is replaced so the test does not depend on the network being
    # absent; it raises what tensorflow_hub raises when the host is unreachable.
    import tensorflow_hub as hub

    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = ("https://www.kaggle.com/models/google/mobilenet-v3/TensorFlow2/"
              "small-100-224-feature-vector/1")
    seen = []

    def unreachable(requested):
        seen.append(requested)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(hub, "resolve", unreachable)
    with pytest.raises(HubModelError) as info:
        kt.TransferModel("tfhub:" + handle, num_classes=2)
    assert seen == [handle]
    message = str(info.value)
    assert handle in message and str(tmp_path / "cache") in message
    assert "URLError" in message and "name resolution" in message


def test_https_handle_loads_offline_from_a_filled_cache(tmp_path, monkeypatch):
    import hashlib

    handle = ("https://tfhub.dev/google/imagenet/mobilenet_v3_small_100_224/"
              "feature_vector/5")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    # TF-Hub's cache layout: <TFHUB_CACHE_DIR>/<sha1(handle)>/saved_model.pb
    make_image_hub(cache / hashlib.sha1(handle.encode("utf8")).hexdigest())
    model = kt.TransferModel("tfhub:" + handle, num_classes=2)
    assert model.image_shape == (32, 32, 3)
    assert _hub_layer(model).handle == handle
    x, _ = separable_images(2, size=32)
    assert model.predict(x, verbose=0).shape == (4, 2)


def test_missing_and_non_savedmodel_paths(tmp_path):
    with pytest.raises(HubModelError, match="does not exist"):
        kt.get_backbone("tfhub:" + str(tmp_path / "nowhere"))
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    with pytest.raises(HubModelError, match="not a SavedModel"):
        kt.get_backbone("tfhub:" + str(folder))
    with pytest.raises(HubModelError, match="not a file"):
        kt.get_backbone("tfhub:" + str(folder / "notes.txt"))


def test_tf1_hub_module_is_refused(tmp_path):
    handle = make_tf1_hub_module(tmp_path / "tf1_module")
    with pytest.raises(HubModelError, match="TF1 hub.Module"):
        kt.TransferModel("tfhub:" + handle, num_classes=2)


def test_savedmodel_without_variables_is_refused(tmp_path):
    handle = make_stateless_hub(tmp_path / "stateless")
    with pytest.raises(HubModelError, match="has no variables"):
        kt.TransferModel("tfhub:" + handle, num_classes=2)


def test_input_shape_without_a_concrete_function(image_hub):
    with pytest.raises(InputShapeError) as info:
        kt.TransferModel("tfhub:" + image_hub, num_classes=2, input_shape=(48, 48, 3))
    assert "(32, 32, 3)" in str(info.value) and "(48, 48, 3)" in str(info.value)
    with pytest.raises(InputShapeError, match="3-channel"):
        kt.TransferModel("tfhub:" + image_hub, num_classes=2, input_shape=(32, 32, 1))


def test_weights_file_of_the_backbone_loads_into_the_hub_variables(image_hub,
                                                                   tmp_path):
    source = kt.TransferModel("tfhub:" + image_hub, num_classes=2)
    kernel = _hub_layer(source).hub_variables[0]
    assert kernel.name == "conv_kernel"
    kernel.assign(np.full(kernel.shape, 0.25, "float32"))
    path = tmp_path / "backbone.weights.h5"
    source.backbone.save_weights(path)
    model = kt.TransferModel("tfhub:" + image_hub, num_classes=2, weights=str(path))
    np.testing.assert_array_equal(_hub_value(model, "kernel"),
                                  np.full((3, 3, 3, 8), 0.25, "float32"))
    # The SavedModel on disk is untouched: a fresh load has its own values.
    assert not np.allclose(HubBackbone(image_hub)._hub_object.kernel.numpy(), 0.25)


def test_weights_none_is_refused(image_hub):
    with pytest.raises(WeightsError, match="its own weights"):
        kt.TransferModel("tfhub:" + image_hub, num_classes=2, weights=None)
