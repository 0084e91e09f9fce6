"""The backbone catalog: every Keras Applications model builds, with the declared
feature dimension, and names, weights files and errors behave."""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.backbones import keras_apps
from kerastransfer.errors import InputShapeError, UnknownBackboneError, WeightsError

KERAS_NAMES = sorted(n for n in dir(keras.applications) if n[0].isupper())


def test_catalog_covers_every_keras_application():
    registered = {kt.get_backbone(n).keras_name for n in kt.list_backbones("keras")}
    assert registered == set(KERAS_NAMES)
    assert len(registered) == 40


# Every catalog model is built (at its minimum size) in tests/test_catalog.py.


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("MobileNetV3Small", "mobilenet_v3_small"),
        ("mobilenetv3small", "mobilenet_v3_small"),
        ("ResNet50V2", "resnet50_v2"),
        ("EfficientNetV2B0", "efficientnet_v2_b0"),
        ("convnext-tiny", "convnext_tiny"),
        ("NASNetMobile", "nasnet_mobile"),
    ],
)
def test_names_accept_keras_class_names_and_spellings(alias, canonical):
    assert kt.get_backbone(alias).name == canonical


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownBackboneError) as info:
        kt.get_backbone("resnet5")
    message = str(info.value)
    assert "resnet50" in message and "Received: name='resnet5'" in message
    assert isinstance(info.value, ValueError)


def test_spec_records_family_preprocessing():
    assert kt.get_backbone("resnet50").preprocessing == "caffe"
    assert kt.get_backbone("densenet121").preprocessing == "torch"
    assert kt.get_backbone("xception").preprocessing == "tf"
    for name in ("efficientnet_b0", "mobilenet_v3_small", "convnext_tiny",
                 "efficientnet_v2_s"):
        spec = kt.get_backbone(name)
        assert spec.preprocessing == "none" and spec.preprocessing_inside
    assert kt.get_backbone("inception_v3").min_size == 75
    assert kt.get_backbone("inception_v3").default_size == 299


def test_input_below_minimum_is_a_clear_error():
    with pytest.raises(InputShapeError, match="at least 75x75"):
        kt.get_backbone("inception_v3").build((64, 64, 3))
    with pytest.raises(InputShapeError, match="3-channel"):
        kt.get_backbone("resnet50").build((64, 64, 1))


def test_weights_file_round_trip(tmp_path):
    spec = kt.get_backbone("mobilenet_v2")
    source = spec.build((32, 32, 3), weights=None)
    # make the weights distinctive, not just the random init
    source.set_weights([w + 0.01 * i for i, w in enumerate(source.get_weights())])
    path = str(tmp_path / "mobilenet_v2.weights.h5")
    source.save_weights(path)
    loaded = spec.build((32, 32, 3), weights=path)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(source(x)), atol=1e-6)
    fresh = spec.build((32, 32, 3), weights=None)
    assert not np.allclose(np.asarray(fresh(x)), np.asarray(source(x)))


def test_transfer_model_loads_backbone_weights_file(tmp_path):
    spec = kt.get_backbone("vgg16")
    source = spec.build((32, 32, 3), weights=None)
    path = str(tmp_path / "vgg.weights.h5")
    source.save_weights(path)
    model = kt.TransferModel("vgg16", num_classes=2, weights=path,
                             input_shape=(32, 32, 3))
    for a, b in zip(model.backbone.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert model.pretrained


def test_bad_weights_files_are_clear(tmp_path):
    spec = kt.get_backbone("mobilenet_v2")
    with pytest.raises(WeightsError, match="not found"):
        spec.build((32, 32, 3), weights=str(tmp_path / "missing.weights.h5"))
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightsError, match="does not fit"):
        spec.build((32, 32, 3), weights=str(corrupt))
    other = kt.get_backbone("vgg16").build((32, 32, 3), weights=None)
    wrong = str(tmp_path / "vgg.weights.h5")
    other.save_weights(wrong)
    with pytest.raises(WeightsError, match="same architecture"):
        spec.build((32, 32, 3), weights=wrong)
    with pytest.raises(WeightsError, match="Unsupported weights file type"):
        (tmp_path / "w.txt").write_text("x")
        spec.build((32, 32, 3), weights=str(tmp_path / "w.txt"))


def _refused_download_error():
    """What Keras 3.15's `get_file` raises when the download cannot connect.

    A real `urllib.error.URLError` from a refused connection (127.0.0.1, port 9:
    nothing listens there), wrapped the way `keras.utils.get_file` wraps it. The
    test does not depend on whether this machine has network access.
    """
    import urllib.error
    import urllib.request

    url = "http://127.0.0.1:9/mobilenet_v2_notop.h5"
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.URLError as error:
        return Exception(f"URL fetch failure on {url}: None -- {error.reason}")
    pytest.fail("Something listens on 127.0.0.1:9; the test needs a refused port.")


@pytest.mark.parametrize("kind", ["keras_get_file", "url_error", "other_error"])
def test_imagenet_download_failure_names_the_alternatives(monkeypatch, kind):
    import urllib.error

    if kind == "keras_get_file":
        failure = _refused_download_error()
    elif kind == "url_error":
        failure = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    else:
        failure = ValueError("not a download problem")
    calls = []

    def constructor(**kwargs):
        calls.append(kwargs["weights"])
        raise failure

    monkeypatch.setattr(keras.applications, "MobileNetV2", constructor)
    if kind == "other_error":  # not a download failure: re-raised unchanged
        with pytest.raises(ValueError) as info:
            kt.get_backbone("mobilenet_v2").build((32, 32, 3), weights="imagenet")
        assert info.value is failure
        return
    with pytest.raises(WeightsError) as info:
        kt.get_backbone("mobilenet_v2").build((32, 32, 3), weights="imagenet")
    assert calls == ["imagenet"]
    assert info.value.__cause__ is failure
    message = str(info.value)
    assert "'mobilenet_v2'" in message and str(failure) in message
    assert "weights=None" in message and "weights file" in message
    assert "~/.keras/models" in message
    assert message.endswith("Received: weights='imagenet'")


def test_register_user_backbone_from_model_and_builder():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="blockA_conv")(inputs)
    x = keras.layers.Conv2D(6, 3, name="blockB_conv")(x)
    net = keras.Model(inputs, x)
    rule = kt.BlockRule((r"^(block[AB])_",))
    spec = kt.register_backbone("user_net", net, preprocessing="unit", blocks=rule,
                                overwrite=True)
    try:
        assert spec.feature_dim == 6 and spec.default_size == 32
        assert "user_net" in kt.list_backbones("user")
        same = spec.build(weights="imagenet")  # the registered model's own weights
        for a, b in zip(same.get_weights(), net.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        fresh = spec.build(weights=None)
        assert not all(np.array_equal(a, b) for a, b in
                       zip(fresh.get_weights(), net.get_weights(), strict=True))
        model = kt.TransferModel("user_net", num_classes=3, input_shape=(32, 32, 3))
        assert model.preprocessing_mode == "unit"
        assert kt.unfreeze(model, "blocks:1") == ["blockB_conv"]
        with pytest.raises(ValueError, match="already registered"):
            kt.register_backbone("user_net", net)
    finally:
        kt.unregister_backbone("user_net")
    with pytest.raises(UnknownBackboneError):
        kt.get_backbone("user_net")


def test_a_registered_pyramid_makes_a_user_backbone_a_segmentation_encoder():
    from kerastransfer.backbones.pyramid import pyramid_model

    inputs = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="a_conv")(inputs)
    b = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="b_conv")(a)
    net = keras.Model(inputs, b)
    with pytest.raises(ValueError, match=r"strides increasing.*Received: pyr"):
        kt.register_backbone("pyr_net", net, pyramid=((4, "b_conv"), (2, "a_conv")))
    with pytest.raises(UnknownBackboneError):  # nothing half-registered
        kt.get_backbone("pyr_net")
    spec = kt.register_backbone("pyr_net", net, pyramid=[(2, "a_conv"), (4, "b_conv")],
                                overwrite=True)
    try:
        assert spec.pyramid == ((2, "a_conv"), (4, "b_conv"))
        encoder = pyramid_model("pyr_net", (32, 32, 3))
        assert [tuple(o.shape[1:]) for o in encoder.outputs] == [(16, 16, 4),
                                                                 (8, 8, 6)]
        model = kt.SegmentationModel("pyr_net", 3, weights=None,
                                     input_shape=(32, 32, 3), decoder_filters=(8, 8))
        assert model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape == \
            (1, 32, 32, 3)
    finally:
        kt.unregister_backbone("pyr_net")


def test_snake_names_are_unique_and_stable():
    names = [keras_apps.snake_name(n) for n in KERAS_NAMES]
    assert len(set(names)) == len(names)
    # the names saved files refer to: a change here breaks reloading them
    expected = {
        "ResNet152V2": "resnet152_v2", "MobileNetV3Small": "mobilenet_v3_small",
        "EfficientNetV2B0": "efficientnet_v2_b0", "EfficientNetB7": "efficientnet_b7",
        "InceptionResNetV2": "inception_resnet_v2", "NASNetMobile": "nasnet_mobile",
        "ConvNeXtXLarge": "convnext_xlarge", "DenseNet121": "densenet121",
        "VGG16": "vgg16", "Xception": "xception", "MobileNet": "mobilenet"}
    assert {name: keras_apps.snake_name(name) for name in expected} == expected
    assert all(name == name.lower() and " " not in name for name in names)
