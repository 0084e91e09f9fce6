"""Grad-CAM: the heatmap peak falls inside the blob that decides the class."""

import keras
import numpy as np
import pytest

from kerastransfer import TransferModel
from kerastransfer.report.explain import explain, overlay


def _blob_images(n, rng, size=48, radius=4):
    x = rng.uniform(0, 60, (n, size, size, 3)).astype("float32")
    y = np.arange(n) % 2
    centres = rng.integers(radius + 2, size - radius - 2, (n, 2))
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(y == 1):
        masks[i] = (yy - centres[i, 0]) ** 2 + (xx - centres[i, 1]) ** 2 <= radius ** 2
        x[i][masks[i]] = 255.0
    return x, y, masks


def _tiny_cnn(size=48):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


@pytest.mark.slow
def test_gradcam_peak_inside_blob():
    rng = np.random.default_rng(0)
    x, y, _ = _blob_images(192, rng)
    model = TransferModel(_tiny_cnn(), 2, input_shape=(48, 48, 3), dropout=0.0,
                          pooling="max")
    model.fit(x, y, epochs=1, fine_tune_epochs=8, fine_tune_lr=3e-3, batch_size=32,
              verbose=0)
    xt, yt, masks = _blob_images(60, np.random.default_rng(1))
    positives = np.flatnonzero(yt == 1)
    assert np.mean(model.predict(xt, verbose=0).argmax(1) == yt) >= 0.9
    for method in ("gradcam", "gradcam++"):
        heat = explain(model, xt[positives], class_index=1, method=method)
        assert heat.shape == (len(positives), 48, 48)
        assert heat.min() >= 0 and heat.max() <= 1
        peaks = [np.unravel_index(np.argmax(h), h.shape) for h in heat]
        inside = np.mean([masks[i][p] for i, p in zip(positives, peaks, strict=True)])
        assert inside >= 0.8, (method, inside)
    picture = overlay(xt[positives[0]], heat[0])
    assert picture.shape == (48, 48, 3) and picture.dtype == np.uint8


def test_explain_refuses_backbone_without_convolution():
    inputs = keras.Input((8, 8, 3))
    dense = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)),
                        name="mlp")
    model = TransferModel(dense, 2, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="needs a convolutional layer.*'mlp'"):
        explain(model, np.zeros((1, 8, 8, 3)))
