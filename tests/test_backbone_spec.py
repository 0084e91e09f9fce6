"""`BackboneSpec.create`: the one way specs are made (Keras Applications, TF-Hub,
user models), its checks, and its single mapping of `weights=`; plus a fast sanity
check of every registered spec (no model is built)."""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.backbones.spec import BackboneSpec
from kerastransfer.errors import WeightsError


def tiny(shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))


def recording_build(calls):
    def build(input_shape, pretrained):
        calls.append((input_shape, pretrained))
        return tiny(input_shape)

    return build


def test_weights_are_mapped_once_for_every_source(tmp_path):
    calls = []
    spec = BackboneSpec.create("toy", build=recording_build(calls), family="toy",
                               source="user", default_size=32)
    spec.build(weights="imagenet")
    spec.build((40, 40, 3), weights=None)
    assert calls == [((32, 32, 3), True), ((40, 40, 3), False)]
    # A weights file: built fresh, then the file's values are loaded.
    source = tiny((32, 32, 3))
    source.set_weights([np.full(w.shape, 0.5, "float32") for w in source.weights])
    path = str(tmp_path / "toy.weights.h5")
    source.save_weights(path)
    loaded = spec.build(weights=path)
    assert calls[-1] == ((32, 32, 3), False)
    np.testing.assert_array_equal(loaded.get_layer("conv").kernel.numpy(), 0.5)
    with pytest.raises(WeightsError, match="not found"):
        spec.build(weights=str(tmp_path / "missing.weights.h5"))


def test_pretrained_only_refuses_none_and_loads_files_over_its_own_weights(
        tmp_path):
    calls = []
    spec = BackboneSpec.create("hubby", build=recording_build(calls),
                               family="tfhub", source="tfhub",
                               pretrained_only=True, default_size=32)
    with pytest.raises(WeightsError, match="its own weights.*weights=None"):
        spec.build(weights=None)
    assert calls == []
    path = str(tmp_path / "hubby.weights.h5")
    tiny((32, 32, 3)).save_weights(path)
    spec.build(weights=path)
    assert calls == [((32, 32, 3), True)]  # its own weights, then the file


def test_user_builder_gets_weights_unchanged():
    received = []

    def builder(input_shape, weights):
        received.append(weights)
        return tiny(input_shape)

    spec = BackboneSpec.create("raw", builder=builder, family="user",
                               source="user", default_size=32)
    spec.build(weights="/some/path.weights.h5")
    assert received == ["/some/path.weights.h5"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(source="web"), ValueError, r"source must be one of .*source='web'"),
    (dict(min_size=0), ValueError, "min_size must be an int >= 1"),
    (dict(default_size=16, min_size=32), ValueError, "default_size=16, min_size=32"),
    (dict(channels=0), ValueError, "channels must be an int >= 1"),
    (dict(input_dtype="int8"), ValueError, "input_dtype must be one of"),
    (dict(aliases=[3]), TypeError, "aliases must be strings"),
    (dict(builder=lambda s, w: None), ValueError, "exactly one of build="),
])
def test_create_checks_its_fields(kwargs, error, match):
    args = dict(build=lambda s, p: None, family="x", source="user")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        BackboneSpec.create("bad", **args)
    with pytest.raises(TypeError, match="non-empty string"):
        BackboneSpec.create("", build=lambda s, p: None, family="x", source="user")


@pytest.mark.parametrize("name", kt.list_backbones())
def test_every_registered_spec_is_consistent(name):
    from kerastransfer.runtime.preprocess import PREPROCESSING_MODES

    spec = kt.get_backbone(name)
    assert spec.name == name and kt.get_backbone(spec.name.upper()) is spec
    assert spec.preprocessing in PREPROCESSING_MODES
    assert spec.preprocessing_inside == (spec.preprocessing == "none")
    assert spec.min_size <= spec.default_size
    # 1 channel: the audio spectrogram CNN (kerastransfer/audio/backbone.py)
    channels = 1 if spec.family == "audio_cnn" else 3
    assert spec.feature_dim > 0 and spec.channels == channels
    assert spec.resolve_input_shape(None) == (spec.default_size,) * 2 + (spec.channels,)
    for alias in spec.aliases:
        assert kt.get_backbone(alias) is spec
    if spec.source == "keras":
        assert spec.keras_name in spec.aliases and spec.supports_imagenet
        assert spec.preprocess_module.startswith("keras.applications.")
