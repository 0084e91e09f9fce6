"""ImagePreprocessing reproduces each family's keras preprocess_input."""

import importlib

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.preprocessing import ImagePreprocessing

FAMILIES = [
    ("resnet50", "keras.applications.resnet"),
    ("vgg16", "keras.applications.vgg16"),
    ("resnet50_v2", "keras.applications.resnet_v2"),
    ("mobilenet_v2", "keras.applications.mobilenet_v2"),
    ("xception", "keras.applications.xception"),
    ("inception_v3", "keras.applications.inception_v3"),
    ("nasnet_mobile", "keras.applications.nasnet"),
    ("densenet121", "keras.applications.densenet"),
    ("efficientnet_b0", "keras.applications.efficientnet"),
    ("mobilenet_v3_small", "keras.applications.mobilenet_v3"),
    ("convnext_tiny", "keras.applications.convnext"),
]


@pytest.mark.parametrize("name, module", FAMILIES)
def test_layer_matches_keras_preprocess_input(name, module):
    spec = kt.get_backbone(name)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = importlib.import_module(module).preprocess_input(x.copy())
    got = np.asarray(ImagePreprocessing(spec.preprocessing)(x))
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-4)
    assert spec.preprocess_input is importlib.import_module(module).preprocess_input


def test_unit_mode_and_unknown_mode():
    x = np.full((1, 2, 2, 1), 255.0, dtype="float32")
    assert np.asarray(ImagePreprocessing("unit")(x)).max() == 1.0
    with pytest.raises(ValueError, match="Unknown preprocessing mode"):
        ImagePreprocessing("imagenet")


def test_layer_serializes():
    layer = ImagePreprocessing("caffe", name="pre")
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(clone, ImagePreprocessing) and clone.mode == "caffe"
