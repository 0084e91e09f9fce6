"""Shared test set-up: quiet TensorFlow, fixed seeds, tiny data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.dirname(__file__), ".keras_home"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seeds (Keras, TensorFlow, numpy)."""
    import keras

    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


def separable_images(n_per_class=24, size=32, num_classes=2, seed=0):
    """Images whose class is visible in colour and brightness: learnable quickly."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(num_classes):
        base = np.zeros((size, size, 3), dtype="float32")
        base[..., label % 3] = 200.0
        base += 40.0 * label
        noise = rng.normal(0, 25, (n_per_class, size, size, 3))
        images.append(np.clip(base + noise, 0, 255))
        labels.append(np.full(n_per_class, label))
    x = np.concatenate(images).astype("float32")
    y = np.concatenate(labels).astype("int64")
    order = rng.permutation(len(x))
    return x[order], y[order]


@pytest.fixture
def tiny_data():
    return separable_images()
