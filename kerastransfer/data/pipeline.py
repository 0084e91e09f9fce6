"""`tf.data` pipelines: files or arrays in, `(images, labels)` batches out.

File pipelines decode in parallel (`num_parallel_calls=AUTOTUNE`, in order),
resize to the target size (float32, RGB in [0, 255]), cache the decoded images
(in memory, or in files when `cache` is a path prefix), shuffle after the cache
(so every epoch has a new order without decoding again) and prefetch with
`AUTOTUNE`. Without a cache the file names are shuffled before decoding, which
is cheaper.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["file_pipeline", "array_pipeline", "cache_for"]


def _numpy_decode(path, channels):
    """`read_image` for `tf.numpy_function`: original units, model's channels."""
    from kerastransfer.runtime.medical import load_for_model

    path = path.decode() if isinstance(path, bytes) else str(path)
    return load_for_model(path, None, int(channels))


def _decode_fn(image_size: Sequence[int], channels: int = 3):
    import tensorflow as tf

    height, width = int(image_size[0]), int(image_size[1])
    # DICOM, NIfTI, TIFF and 16-bit PNG go through `read_image` (numpy): their
    # values are kept (tf.io.decode_image would cut 16-bit PNGs to 8 bits and
    # cannot read the others). Byte 24 of a PNG is its bit depth (IHDR).
    pattern = r".*\.(dcm|dicom|nii|nii\.gz|tif|tiff)"

    def in_tensorflow(data):
        image = tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False),
                        tf.float32)
        return tf.image.rgb_to_grayscale(image) if channels == 1 else image

    def in_numpy(path):
        return tf.numpy_function(_numpy_decode, [path, channels], tf.float32,
                                 stateful=False)

    def decode(path, label):
        data = tf.io.read_file(path)
        png16 = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG"),
                               tf.equal(tf.strings.substr(data, 24, 1), b"\x10"))
        numpy_file = tf.logical_or(
            tf.strings.regex_full_match(tf.strings.lower(path), pattern), png16)
        image = tf.cond(numpy_file, lambda: in_numpy(path), lambda: in_tensorflow(data))
        image.set_shape([None, None, channels])
        image = tf.image.resize(image, (height, width))  # float32, [0, 255] for 8 bit
        return image, label

    return decode


def file_pipeline(paths, labels, *, image_size: Sequence[int], batch_size: int,
                  shuffle: bool, seed: int, cache: bool | str, channels: int = 3):
    """A batched dataset of `(image, label)` decoded from image files.

    Args:
        paths: the image files (JPEG, PNG, GIF, BMP; DICOM, NIfTI, TIFF and
            16-bit PNG through `kerastransfer.runtime.medical.read_image`, in
            their own units).
        labels: one label (or label row) per file.
        image_size: `(height, width)` every image is resized to.
        batch_size: images per batch.
        shuffle: reshuffle every epoch.
        seed: seed of the shuffling.
        cache: `True` (memory), a file path prefix, or `False` (decode every
            epoch).
        channels: the channels the model takes (1 = grayscale). Defaults to `3`.

    Returns:
        A `tf.data.Dataset`.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths), labels))
    if shuffle and not cache:  # cheap: shuffle file names before decoding
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_decode_fn(image_size, channels),
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
        if shuffle:  # after the cache, so every epoch has a new order
            dataset = dataset.shuffle(len(paths), seed=seed,
                                      reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def array_pipeline(x, y, *, batch_size: int, shuffle: bool, seed: int):
    """A batched, optionally reshuffled dataset of in-memory `(x, y)` arrays.

    Args:
        x: the images.
        y: the labels.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch.
        seed: seed of the shuffling.

    Returns:
        A `tf.data.Dataset`.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def cache_for(cache, suffix: str) -> bool | str:
    """The `cache` argument of one split: a path gets a `.suffix`, else a bool.

    Args:
        cache: `True`, `False`, or a file path prefix.
        suffix: the split's name, e.g. `"train"`.

    Returns:
        `"<prefix>.<suffix>"` for a path, otherwise `bool(cache)`.
    """
    if isinstance(cache, (str, os.PathLike)) and cache:
        return f"{os.fspath(cache)}.{suffix}"
    return bool(cache)
