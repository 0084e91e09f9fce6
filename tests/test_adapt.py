"""First-convolution adaptation for C != 3 input channels (issue 13).

The catalog-wide check (every backbone's adapted first convolution on a grayscale
image equals the RGB model's on the image repeated three times) runs with the
other once-per-backbone checks in tests/test_catalog.py.
"""

import keras
import numpy as np
import pytest

from kerastransfer import TransferModel
from kerastransfer.backbones.adapt import (
    adapt_input_channels,
    adapted_kernel,
)


def _rel(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def test_adapted_kernel_formulas():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 3, 4))
    perm, scale = np.array([2, 1, 0]), np.array([1., 2., 3.])
    offset = np.array([.5, 0., -1.])
    k1 = adapted_kernel(kernel, 1, perm, scale, offset)
    expected = sum(scale[c] * kernel[:, :, perm[c]] for c in range(3))
    np.testing.assert_allclose(k1[:, :, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(
        k1[:, :, 1], sum(offset[c] * kernel[:, :, perm[c]] for c in range(3)),
        rtol=1e-5, atol=1e-6)
    k5 = adapted_kernel(kernel, 5, perm, scale, offset)
    assert k5.shape == (3, 3, 6, 4)
    for i in range(5):  # timm: repeat the RGB slices, scale by 3 / C
        np.testing.assert_allclose(k5[:, :, i],
                                   3 / 5 * scale[i % 3] * kernel[:, :, perm[i % 3]],
                                   rtol=1e-6)


def test_grayscale_model_equals_rgb_model_from_a_weights_file(tmp_path):
    """weights= a file: the C=1 TransferModel's features equal the RGB model's."""
    from kerastransfer.backbones.registry import get_backbone

    spec = get_backbone("resnet50")
    rgb_backbone = spec.build((32, 32, 3), None)
    path = str(tmp_path / "backbone.weights.h5")
    rgb_backbone.save_weights(path)
    rgb = TransferModel("resnet50", 2, weights=path, input_shape=(32, 32, 3))
    gray = TransferModel("resnet50", 2, weights=path, input_shape=(32, 32, 1))
    assert gray.preprocessing_mode == "none"  # caffe folded into the first conv
    g = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    f3 = keras.Model(rgb.inputs[0], rgb.get_layer("pool").output)(np.repeat(g, 3, -1))
    f1 = keras.Model(gray.inputs[0], gray.get_layer("pool").output)(g)
    assert _rel(f1, f3) < 1e-4


def test_non_convolutional_stem_refused():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    with pytest.raises(ValueError, match="first layer with weights is not a Conv2D"):
        adapt_input_channels(model, 1)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        adapt_input_channels(model, 0)


def _small_rgb_backbone():
    """A catalog-like stem (in-model rescaling, conv, batch norm) at 32 px: the
    C != 3 path (AppendOnes, padding, adapted conv) without a catalog model's
    export cost (mobilenet_v3_small took 80-145 s here under load)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="top")(x)
    return keras.Model(inputs, x, name="small")


@pytest.mark.parametrize("channels", [2, 5])
def test_multichannel_trains_saves_reloads_exports(tmp_path, channels):
    """C = 2 and C = 5: one epoch, .keras round trip, ONNX export (1e-4)."""
    pytest.importorskip("onnxruntime")
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import OnnxPredictor

    rng = np.random.default_rng(channels)
    x = rng.uniform(0, 255, (16, 32, 32, channels)).astype("float32")
    y = np.arange(16) % 2
    x[y == 1, 8:24, 8:24] = 255.0
    model = TransferModel(_small_rgb_backbone(), 2,  # its own weights: pretrained
                          input_shape=(32, 32, channels), class_names=["a", "b"])
    assert model.get_layer("small").get_layer(f"stem_conv_c{channels}")
    model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0)
    before = model.predict(x, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, atol=1e-5)
    assert loaded.image_shape == (32, 32, channels)
    onnx_path = str(tmp_path / "m.onnx")
    export_onnx(loaded, onnx_path)
    onnx = OnnxPredictor(onnx_path).predict(x)
    np.testing.assert_allclose(onnx, before, atol=1e-4)


def _small_gray_backbone():
    """A user's 1-channel backbone (in-model rescaling with an offset)."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="top")(x)
    return keras.Model(inputs, x, name="gray")


def test_grayscale_backbone_takes_rgb_images():
    """C_native = 1 -> C = 3: the gray kernel divided by 3 on each channel, so
    an RGB image gives the gray model's output on its channel mean (and gray
    repeated gives the gray output)."""
    from kerastransfer.tasks.backbone import resolve_backbone

    gray_model = _small_gray_backbone()
    # Random batch-norm statistics, so the check covers them too.
    rng = np.random.default_rng(3)
    bn = gray_model.get_layer("stem_bn")
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8),
                    rng.normal(size=8), rng.uniform(0.5, 2, 8)])
    parts = resolve_backbone(gray_model, weights="own", input_shape=(32, 32, 3))
    assert parts.input_shape == (32, 32, 3)
    kernel = parts.model.get_layer("stem_conv_c3").kernel.numpy()
    gray_kernel = gray_model.get_layer("stem_conv").kernel.numpy()
    for c in range(3):
        np.testing.assert_allclose(kernel[:, :, c], gray_kernel[:, :, 0] / 127.5 / 3,
                                   rtol=1e-5)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    want = gray_model(x.mean(axis=-1, keepdims=True))
    assert _rel(parts.model(x), want) < 1e-5
    g = x[..., :1]
    assert _rel(parts.model(np.repeat(g, 3, -1)), gray_model(g)) < 1e-5
    # The same through a task: a classifier on the gray backbone, RGB images.
    model = TransferModel(gray_model, 2, input_shape=(32, 32, 3))
    assert model.image_shape == (32, 32, 3)
    assert model.predict(x, verbose=0).shape == (2, 2)


def test_per_channel_rgb_preprocessing_refused_for_a_gray_backbone():
    from kerastransfer.errors import InputShapeError

    with pytest.raises(InputShapeError, match="per-channel RGB constants"):
        adapt_input_channels(_small_gray_backbone(), 3, preprocessing="caffe")
    with pytest.raises(InputShapeError, match="one entry per kernel input channel"):
        adapted_kernel(np.ones((3, 3, 1, 4)), 3, [0, 1, 2], [1.] * 3, [0.] * 3)
