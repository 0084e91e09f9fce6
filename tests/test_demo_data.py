"""Fast tests of the offline transfer demo's data and shipped weights."""

import numpy as np
import pytest

from kerastransfer.demo import digits
from kerastransfer.demo.digits import load_source, load_target, target_split


def test_source_loads_with_expected_shapes_and_labels():
    images, labels = load_source()
    assert images.shape == (10000, 28, 28, 1)
    assert images.dtype == np.float32
    assert labels.shape == (10000,)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(labels)) == set(range(10))
    # Every class is well represented (863-1127 images in mnist 1.1.0).
    assert np.bincount(labels).min() > 800


def test_source_file_is_small():
    assert digits.SOURCE_PATH.stat().st_size < 3_000_000


def test_target_loads_in_mnist_framing():
    images, labels = load_target()
    assert images.shape == (1797, 28, 28, 1)
    assert labels.shape == (1797,)
    assert set(np.unique(labels)) == set(range(10))
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Zero padding: the digit lives in the central 20x20 box.
    assert np.all(images[:, :4] == 0) and np.all(images[:, 24:] == 0)
    assert np.all(images[:, :, :4] == 0) and np.all(images[:, :, 24:] == 0)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_split_is_exact_and_disjoint(k):
    split = target_split(labels_per_class=k, seed=3)
    assert np.array_equal(np.bincount(split["y_train"], minlength=10), np.full(10, k))
    assert np.array_equal(np.bincount(split["y_test"], minlength=10), np.full(10, 80))
    train, test, rest = (
        split["train_index"],
        split["test_index"],
        split["unlabelled_index"],
    )
    assert not set(train) & set(test)
    assert not set(rest) & set(test)
    assert not set(rest) & set(train)
    assert len(train) + len(test) + len(rest) == 1797
    images, labels = load_target()
    np.testing.assert_array_equal(split["x_train"], images[train])
    np.testing.assert_array_equal(split["y_test"], labels[test])


def test_test_set_is_fixed_across_budgets_and_seeds():
    a = target_split(labels_per_class=1, seed=0)
    b = target_split(labels_per_class=10, seed=4)
    np.testing.assert_array_equal(a["test_index"], b["test_index"])
    assert not np.array_equal(a["train_index"], target_split(1, seed=1)["train_index"])
    np.testing.assert_array_equal(
        a["train_index"], target_split(1, seed=0)["train_index"]
    )


@pytest.mark.parametrize("k", [0, -1, 1.5, 200])
def test_split_rejects_bad_budgets(k):
    with pytest.raises(ValueError, match="labels_per_class"):
        target_split(labels_per_class=k)


def test_shipped_weights_load_and_give_deterministic_features():
    from kerastransfer.demo.pretrain import digits_cnn

    images, _ = load_target()
    first = digits_cnn(weights="mnist")
    second = digits_cnn(weights="mnist")
    assert first.output_shape == (None, 64)
    a = np.asarray(first(images[:16], training=False))
    b = np.asarray(second(images[:16], training=False))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        a, np.asarray(first(images[:16], training=False)), atol=1e-6
    )
    random = digits_cnn(weights=None)
    assert not np.allclose(a, np.asarray(random(images[:16], training=False)))
    # Pretrained BatchNorm statistics are not the initial ones (0 mean, 1 variance).
    bn = first.get_layer("block2_bn")
    assert not np.allclose(np.asarray(bn.moving_variance), 1.0)


def test_digits_cnn_rejects_unknown_weights():
    from kerastransfer.demo.pretrain import digits_cnn

    with pytest.raises(ValueError, match="weights"):
        digits_cnn(weights="imagenet")
