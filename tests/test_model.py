"""TransferModel: construction, head options, serialization round trips."""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.errors import InputShapeError


def small(backbone="mobilenet_v2", **kwargs):
    kwargs.setdefault("weights", None)
    kwargs.setdefault("input_shape", (32, 32, 3))
    return kt.TransferModel(backbone, **kwargs)


def test_structure_and_attributes():
    model = small(num_classes=3, class_names=["a", "b", "c"])
    assert model.input.name.startswith("image") or model.inputs[0].name
    assert model.output.shape == (None, 3)
    assert model.layers[1].name == "preprocessing"
    assert model.preprocessing_mode == "tf"
    assert model.backbone_name == "mobilenet_v2"
    assert model.class_names == ["a", "b", "c"]
    assert model.image_shape == (32, 32, 3)
    assert [layer.name for layer in model.head_layers] == [
        "pool", "head_dropout", "logits", "predictions"]
    probs = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.feature_extractor().output.shape == (None, 1280)


@pytest.mark.parametrize("task, activation, loss", [
    ("multiclass", "softmax", "sparse_categorical_crossentropy"),
    ("multilabel", "sigmoid", "binary_crossentropy"),
    ("regression", "linear", "mean_squared_error"),
])
def test_tasks(task, activation, loss):

    model = small(num_classes=2, task=task, dropout=0.0)
    assert model.get_layer("predictions").activation.__name__ == activation
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.default_loss() == loss
    logits = np.array([[2.0, -1.0]], "float32")
    out = np.asarray(model.get_layer("predictions")(logits))
    expected = {"softmax": np.exp(logits) / np.exp(logits).sum(),
                "sigmoid": 1 / (1 + np.exp(-logits)), "linear": logits}[activation]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_pooling_reduces_the_feature_map_as_named(pooling):
    # A backbone with a 4x4x6 feature map (a 1x1 map, as MobileNetV2 gives at 32 px,
    # makes avg, max and flatten identical) and features of order 1.
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(6, 3, strides=4, padding="same", name="conv")(inputs)
    net = keras.Model(inputs, conv, name="map_net")
    model = kt.TransferModel(net, num_classes=2, preprocessing="unit",
                             input_shape=(16, 16, 3), pooling=pooling,
                             hidden_units=(16, 8), dropout=0.1)
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    feature_map = np.asarray(net(model.get_layer("preprocessing")(x)))
    assert feature_map.shape == (3, 4, 4, 6)
    reductions = {"avg": feature_map.mean(axis=(1, 2)),
                  "max": feature_map.max(axis=(1, 2)),
                  "flatten": feature_map.reshape(3, -1)}
    expected = reductions[pooling]
    assert np.abs(expected).max() > 0.1  # features large enough to compare
    pooled = np.asarray(model.feature_extractor()(x))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    for name, other in reductions.items():  # the test tells the three apart
        if name != pooling and other.shape == expected.shape:
            assert np.abs(other - expected).max() > 0.05
    names = [layer.name for layer in model.head_layers]
    assert names[:5] == ["pool", "hidden_0", "hidden_dropout_0", "hidden_1",
                         "hidden_dropout_1"]
    assert model.get_layer("hidden_0").kernel.shape == (expected.shape[1], 16)


def test_preprocessing_matches_keras_family():
    model = small("resnet50", num_classes=2)
    assert model.preprocessing_mode == "caffe"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    direct = model.backbone(keras.applications.resnet.preprocess_input(x.copy()))
    inside = model.feature_extractor()(x)
    pooled = np.asarray(direct).mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(inside), pooled, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=1), "num_classes >= 2"),
    (dict(num_classes=2, task="segmentation"), "task must be one of"),
    (dict(num_classes=2, pooling="mean"), "pooling must be one of"),
    (dict(num_classes=2, dropout=1.5), "dropout must be in"),
    (dict(class_names=["a", "a"]), "unique"),
    (dict(num_classes=3, class_names=["a", "b"]), "one name per class"),
    (dict(), "Pass num_classes"),
    (dict(num_classes=2, mixed_precision="float16"), "mixed_precision"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small(**kwargs)


def test_input_shape_errors():
    with pytest.raises(InputShapeError, match="at least 71x71"):
        small("xception", num_classes=2)
    with pytest.raises(InputShapeError, match=r"\(height, width, channels\)"):
        small(num_classes=2, input_shape=(32, 32))


def test_user_keras_model_as_backbone():
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    net = keras.Model(inputs, x, name="my_net")
    model = kt.TransferModel(net, num_classes=2, preprocessing="unit",
                             input_shape=(24, 24, 1))
    assert model.backbone is net and model.backbone_name == "my_net"
    assert model.output.shape == (None, 2)
    with pytest.raises(InputShapeError, match="does not match"):
        kt.TransferModel(net, num_classes=2, input_shape=(32, 32, 1))


def test_save_load_round_trip_keeps_everything(tmp_path, tiny_data):
    x, y = tiny_data
    model = small(num_classes=2, class_names=["red", "green"],
                  hidden_units=(8,), dropout=0.1)
    model.pretrained = True
    model.fit(x, y, epochs=1, fine_tune_epochs=1, unfreeze="blocks:1",
              batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert type(loaded) is kt.TransferModel
    assert loaded.class_names == ["red", "green"]
    assert loaded.hidden_units == (8,) and loaded.dropout == 0.1
    assert loaded.phase_state == {"unfreeze": "blocks:1", "train_bn": False}
    assert loaded.backbone_name == "mobilenet_v2" and loaded.pretrained
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    # the trainable set is restored too: same trainable variables
    assert ([v.path for v in loaded.trainable_weights]
            == [v.path for v in model.trainable_weights])
    # and training can continue (the optimizer was restored from the file)
    assert loaded.optimizer is not None
    loaded.fit(x, y, epochs=1, verbose=0)


def test_safe_mode_reload_needs_no_unsafe_deserialization(tmp_path):
    model = small("efficientnet_b0", num_classes=2)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_save_requires_keras_extension(tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        small(num_classes=2).save(tmp_path / "model.h5")
