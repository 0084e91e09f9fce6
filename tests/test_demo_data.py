"""Fast tests of the offline transfer demo's data and shipped weights."""

import numpy as np
import pytest

from kerastransfer.demo import digits
from kerastransfer.demo.digits import load_source, load_target, target_split


def test_source_loads_with_expected_shapes_and_labels():
    images, labels = load_source()
    assert images.shape == (10000, 32, 32, 1)
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
    assert images.shape == (1797, 32, 32, 1)
    assert labels.shape == (1797,)
    assert set(np.unique(labels)) == set(range(10))
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Zero padding of MNIST's 28x28 field (a 20x20 box), resized to 32x32:
    # the outer 4 pixels stay black, like the source's.
    assert np.all(images[:, :4] == 0) and np.all(images[:, 28:] == 0)
    assert np.all(images[:, :, :4] == 0) and np.all(images[:, :, 28:] == 0)


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
    assert first.output_shape == (None, 128)
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


def test_augment_is_seeded_shape_preserving_and_changes_images():
    from kerastransfer.demo.augment import augment

    images, _ = load_source()
    batch = images[:64]
    a = augment(batch, np.random.default_rng(1))
    b = augment(batch, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == batch.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert not np.allclose(a, batch, atol=0.05)
    # Deformed, not destroyed: each copy keeps most of its ink near the original.
    ink = a.reshape(64, -1).sum(1) / batch.reshape(64, -1).sum(1)
    assert 0.3 < np.median(ink) < 2.0
    with pytest.raises(ValueError, match="multiple of 8"):
        augment(np.zeros((2, 28, 28, 1), np.float32), np.random.default_rng(0))


def test_glyphs_render_centred_in_the_mnist_box_or_name_the_fonts_to_install():
    from kerastransfer.demo import glyphs

    try:
        files = glyphs.font_files(["fonts-dejavu-core / fonts-dejavu-extra"])[:2]
    except FileNotFoundError as error:  # the message names the apt-get install
        assert "apt-get install" in str(error)
        pytest.skip("fonts not installed")
    images, labels, faces = glyphs.render_glyphs(files)
    classes = 10 + len(glyphs.glyph_classes())
    assert images.shape[1:] == (32, 32, 1)
    assert set(labels) == set(range(classes)) and set(faces) == {0, 1}
    border = images.sum((1, 2, 3)) - images[:, 3:29, 3:29].sum((1, 2, 3))
    assert np.median(border / images.sum((1, 2, 3))) < 0.01  # the box is central
    # Centre of mass near the middle (MNIST's framing).
    rows = (images[..., 0].sum(2) * np.arange(32)).sum(1) / images.sum((1, 2, 3))
    assert np.all(np.abs(rows - 15.5) < 2.0)


def test_missing_fonts_raise_with_the_install_command(monkeypatch):
    from kerastransfer.demo import glyphs

    monkeypatch.setitem(glyphs.FONT_PACKAGES, "fonts-missing",
                        ("/nonexistent/fonts", ("*.ttf",)))
    with pytest.raises(FileNotFoundError, match="apt-get install"):
        glyphs.font_files(["fonts-missing"])


@pytest.mark.slow
def test_pretraining_pipeline_on_a_tiny_subset(tmp_path):
    from kerastransfer.demo.pretrain import digits_cnn, pretrain

    output = tmp_path / "tiny.weights.h5"
    metrics = pretrain(epochs=1, use_fonts=False, max_train=512, batch_size=64,
                       output=output)
    assert metrics["num_classes"] == 10 and metrics["train_images"] == 512
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    backbone = digits_cnn(weights=output)
    # The saved BatchNorm statistics are the recomputed ones (not 0 / 1).
    assert not np.allclose(np.asarray(backbone.get_layer("block3_bn").moving_mean), 0)
