"""Adapted input channels (C != 3) on dense tasks: the feature pyramid of an
adapted catalog backbone (`adapt.layer_output`, used by `pyramid_model`).

MobileNetV3Small is the catalog backbone here: its pyramid is recorded by
*indices* into the RGB model's layers (generic names), which the adaptation
shifts, and its normalization is a `Rescaling` layer inside the model, folded
into the adapted first convolution.
"""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.backbones.adapt import adapt_input_channels, layer_output
from kerastransfer.backbones.registry import get_backbone
from kerastransfer.errors import InputShapeError

SIZE = 64
FILTERS = (16, 8, 8, 8, 8)


def _rel(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def _segmenter(channels, weights):
    return kt.SegmentationModel("mobilenet_v3_small", 3, weights=weights,
                                input_shape=(SIZE, SIZE, channels),
                                decoder_filters=FILTERS)


def _levels(model, x):
    return [np.asarray(level) for level in model.feature_extractor()(x)]


@pytest.fixture(scope="module")
def rgb_weights(tmp_path_factory):
    """One random RGB MobileNetV3Small, saved: every model below loads it, so
    the adapted models' levels can be compared with the RGB model's."""
    backbone = get_backbone("mobilenet_v3_small").build((SIZE, SIZE, 3), None)
    path = str(tmp_path_factory.mktemp("w") / "backbone.weights.h5")
    backbone.save_weights(path)
    rescaling = backbone.get_layer("rescaling").get_config()
    return path, rescaling["scale"], rescaling["offset"]


def test_grayscale_and_four_channel_pyramids_equal_the_rgb_pyramid(rgb_weights):
    path, a, b = rgb_weights
    rgb = _segmenter(3, path)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    gray = image[..., :1]
    reference = _levels(rgb, np.repeat(gray, 3, axis=-1))
    assert [lv.shape[1] for lv in reference] == [SIZE // s for s in (2, 4, 8, 16, 32)]

    # C = 1: the kernel slices summed; gray equals gray repeated on RGB.
    one = _segmenter(1, path)
    assert one.preprocessing_mode == "none"
    for got, want in zip(_levels(one, gray), reference, strict=True):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-4

    # C = 4: channel i has RGB slice i % 3 scaled by 3/4, and the offsets
    # 3/4 * (b0 + b1 + b2 + b0) on the ones channel. Solving for the 4-channel
    # image the adapted stem maps to the RGB stem on `image` (x = a * raw + b,
    # the same a, b on every channel in MobileNetV3's Rescaling):
    # x1 = 4/3 r1 + b / (3a), x2 likewise, x0 = x3 = 2/3 r0 - b / (3a).
    r0, r1, r2 = (image[..., c] for c in range(3))
    shift = b / (3 * a)
    four = np.stack([2 / 3 * r0 - shift, 4 / 3 * r1 + shift,
                     4 / 3 * r2 + shift, 2 / 3 * r0 - shift], axis=-1)
    reference = _levels(rgb, image)
    model = _segmenter(4, path)
    for got, want in zip(_levels(model, four.astype("float32")), reference,
                         strict=True):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-4


@pytest.mark.parametrize("channels, reload", [(1, True), (4, False)])
def test_adapted_segmenter_trains_one_step(channels, reload, tmp_path):
    """weights=None (one phase, everything trainable): one step moves the
    adapted first convolution; the loss is finite; the model reloads exactly
    (checked once: the .keras round trip rebuilds the adapted model, ~5 s)."""
    model = _segmenter(channels, None)
    assert model.output_shape == (None, SIZE, SIZE, 3)
    rng = np.random.default_rng(channels)
    x = rng.uniform(0, 255, (2, SIZE, SIZE, channels)).astype("float32")
    y = rng.integers(0, 3, (2, SIZE, SIZE))
    stem = model.backbone.get_layer(f"conv_c{channels}")
    before = stem.kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[])
    loss = model.train_on_batch(x, y)
    loss = float(np.asarray(loss).ravel()[0])
    assert np.isfinite(loss) and loss > 0
    assert not np.allclose(stem.kernel.numpy(), before)
    predicted = model.predict(x, verbose=0)
    assert predicted.shape == (2, SIZE, SIZE, 3)
    if not reload:
        return
    path = str(tmp_path / "seg.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.image_shape == (SIZE, SIZE, channels)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), predicted, atol=1e-5)


def test_layer_output_of_an_absorbed_layer_is_refused():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(x)
    x = keras.layers.ReLU(name="act")(x)
    rgb = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="top")(x))
    adapted = adapt_input_channels(rgb, 1)
    # Levels named by layer or by index into the RGB model's layers (3: "act").
    by_name = keras.Model(adapted.input, layer_output(adapted, "act"))
    by_index = keras.Model(adapted.input, layer_output(adapted, 3))
    gray = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 1)).astype("float32")
    want = keras.Model(rgb.input, rgb.get_layer("act").output)(np.repeat(gray, 3, -1))
    assert _rel(by_name(gray), want) < 1e-5
    assert _rel(by_index(gray), want) < 1e-5
    with pytest.raises(InputShapeError, match="before the first convolution"):
        layer_output(adapted, "scale")
    with pytest.raises(ValueError, match="No such layer"):
        layer_output(adapted, "missing")


def test_grayscale_segmenter_folds_caffe_preprocessing(tmp_path):
    """ResNet50 (caffe: BGR mean subtracted outside the model): the mode is
    folded into the adapted first convolution, so the gray model applies no
    preprocessing of its own and its levels equal the RGB model's."""
    backbone = get_backbone("resnet50").build((32, 32, 3), None)
    path = str(tmp_path / "resnet50.weights.h5")
    backbone.save_weights(path)

    def build(channels):
        return kt.SegmentationModel("resnet50", 2, weights=path,
                                    input_shape=(32, 32, channels),
                                    decoder_filters=FILTERS)

    rgb, gray = build(3), build(1)
    assert rgb.preprocessing_mode == "caffe" and gray.preprocessing_mode == "none"
    g = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    reference = _levels(rgb, np.repeat(g, 3, axis=-1))
    levels = _levels(gray, g)
    assert len(levels) == len(reference) == 5
    for got, want in zip(levels, reference, strict=True):
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-4
