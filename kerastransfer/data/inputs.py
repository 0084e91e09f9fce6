"""What training consumes: `fit()` inputs, and image batches for BatchNorm.

* `prepare_fit_inputs` turns what `TransferModel.fit` was given (an `ImageData`,
  numpy arrays, a `tf.data.Dataset`; `class_weight="balanced"`; an augmentation
  preset) into what Keras's `fit` takes.
* `images_only` turns any training source into plain numpy image batches
  (labels and sample weights dropped), e.g. for recomputing BatchNorm statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from kerastransfer.data.augment import augment_dataset
from kerastransfer.data.checks import check_batch_size
from kerastransfer.data.images import ImageData
from kerastransfer.data.split import balanced_class_weight
from kerastransfer.errors import DataError

__all__ = ["prepare_fit_inputs", "images_only"]

logger = logging.getLogger("kerastransfer")


def images_only(data: Any, *, batch_size: int = 64,
                max_samples: int | None = None) -> Iterator[np.ndarray]:
    """Image batches of a training source, with labels and weights dropped.

    Args:
        data: an `ImageData` (its training split); a `tf.data.Dataset` of
            `(images, labels[, sample_weight])` batches, or of image batches
            (an unbatched dataset of single images is batched); a numpy array
            of images; a tuple `(images, labels[, sample_weight])` of numpy
            arrays (as Keras's `validation_data`); or any other iterable of
            batches, either tuples whose first item is the images or image
            batches.
        batch_size: images per batch for numpy arrays and unbatched datasets.
            Defaults to `64`.
        max_samples: stop after this many images (the last batch is cut to
            fit). Defaults to `None` (every image; a dataset that repeats
            forever then yields forever).

    Returns:
        An iterator of numpy image batches `(n, height, width, channels)`.

    Raises:
        ValueError: a bad `batch_size` or `max_samples` (raised at the call,
            not at the first batch).
        TypeError: `data` is none of the above.

    Example:

    >>> data = load_image_folder("flowers/", image_size=(64, 64))  # doctest: +SKIP
    >>> for images in images_only(data, max_samples=256):  # doctest: +SKIP
    ...     model(images, training=True)
    """
    batch_size = check_batch_size(batch_size)
    if max_samples is not None and (
            not isinstance(max_samples, (int, np.integer))
            or isinstance(max_samples, bool) or max_samples < 1):
        raise ValueError("max_samples must be a positive int or None. "
                         f"Received: max_samples={max_samples!r}")
    if isinstance(data, ImageData):
        data = data.train
    if (isinstance(data, tuple) and 2 <= len(data) <= 3
            and isinstance(data[0], np.ndarray)):
        data = data[0]  # (x, y[, w]) arrays
    if isinstance(data, np.ndarray):
        batches = (data[i:i + batch_size] for i in range(0, len(data), batch_size))
    elif hasattr(data, "element_spec"):
        batches = _dataset_images(data, batch_size)
    elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "data must be an ImageData, a tf.data.Dataset, a numpy array of "
            "images, an (x, y) tuple of arrays or an iterable of batches. "
            f"Received: data of type {type(data).__name__}"
        )
    else:
        batches = (np.asarray(e[0] if isinstance(e, (tuple, list)) else e)
                   for e in data)
    return _take(batches, max_samples)


def _dataset_images(dataset, batch_size: int) -> Iterator[np.ndarray]:
    """The image batches of a `tf.data.Dataset` (labels dropped inside tf.data)."""
    spec = dataset.element_spec
    if isinstance(spec, (tuple, list)):
        dataset = dataset.map(lambda x, *rest: x)
        spec = spec[0]
    rank = getattr(getattr(spec, "shape", None), "rank", None)
    if rank == 3:  # single images (height, width, channels): batch them
        dataset = dataset.batch(batch_size)
    return dataset.as_numpy_iterator()


def _take(batches, max_samples: int | None) -> Iterator[np.ndarray]:
    seen = 0
    for images in batches:
        if max_samples is not None:
            images = images[:max_samples - seen]
        if len(images):
            yield images
        seen += len(images)
        if max_samples is not None and seen >= max_samples:
            return


def prepare_fit_inputs(model, x, y, *, augmentation=None, seed: int | None = None,
                       **fit_kwargs):
    """Turns what `TransferModel.fit` was given into what Keras's `fit` takes.

    * an `ImageData` becomes its training dataset (its validation split is used
      unless `validation_data` is given);
    * `class_weight="balanced"` is computed from the training labels;
    * with `augmentation`, numpy inputs become a shuffled, batched `tf.data`
      pipeline (a `validation_split` is taken first, as Keras would), then the
      augmentation layers are mapped over the training images only.

    Args:
        model: the task being trained (reads `num_classes` and `task`).
        x: the training inputs: an `ImageData`, arrays or a dataset.
        y: the labels for array inputs, else `None`.
        augmentation: as for `augmentation_layers`. Defaults to `None`.
        seed: seed of the shuffling and augmentation. Defaults to `None`.
        **fit_kwargs: the other `fit()` arguments.

    Returns:
        `(x, y, fit_kwargs)`.

    Raises:
        DataError: an `ImageData` whose classes do not match the model, or
            `class_weight="balanced"` for a task that is not multiclass.
        ValueError: a `class_weight` string other than `"balanced"`.
    """
    import tensorflow as tf

    if isinstance(x, ImageData):
        if x.num_classes != model.num_classes and model.task != "regression":
            raise DataError(
                f"The data has {x.num_classes} classes ({', '.join(x.class_names)}) "
                f"but the model has num_classes={model.num_classes}. Build the model "
                "with class_names=data.class_names. "
                f"Received: class_names={x.class_names}"
            )
        if fit_kwargs.get("validation_data") is None and x.validation is not None:
            fit_kwargs["validation_data"] = x.validation
        x = x.train
    weight = fit_kwargs.get("class_weight")
    if isinstance(weight, str):
        if weight != "balanced":
            raise ValueError("class_weight must be a dict, 'balanced' or None. "
                             f"Received: class_weight={weight!r}")
        if model.task != "multiclass":
            raise DataError("class_weight='balanced' needs a multiclass task. Use "
                            "sample weights for other tasks. "
                            f"Received: task={model.task!r}")
        source = x if hasattr(x, "element_spec") else y
        fit_kwargs["class_weight"] = balanced_class_weight(source, model.num_classes)
        logger.info("Balanced class weights: %s", fit_kwargs["class_weight"])
    if augmentation is None:
        return x, y, fit_kwargs
    if not hasattr(x, "element_spec"):
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        sample_weight = fit_kwargs.pop("sample_weight", None)
        split = fit_kwargs.pop("validation_split", 0.0) or 0.0
        if split and fit_kwargs.get("validation_data") is None:
            cut = int(len(x) * (1.0 - split))  # the last part, as Keras does
            fit_kwargs["validation_data"] = (
                (x[cut:], y[cut:]) if sample_weight is None
                else (x[cut:], y[cut:], sample_weight[cut:]))
            x, y = x[:cut], y[:cut]
            sample_weight = None if sample_weight is None else sample_weight[:cut]
        parts = (x, y) if sample_weight is None else (x, y, sample_weight)
        dataset = tf.data.Dataset.from_tensor_slices(parts)
        if fit_kwargs.pop("shuffle", True):
            dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        batch_size = fit_kwargs.pop("batch_size", None) or 32
        x, y = dataset.batch(batch_size), None
    else:
        fit_kwargs.pop("batch_size", None)
    x = augment_dataset(x, augmentation, seed=seed).prefetch(tf.data.AUTOTUNE)
    return x, y, fit_kwargs
