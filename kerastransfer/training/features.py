"""Training the head on cached backbone features (the frozen phase, made fast).

While the backbone is frozen (and no augmentation changes the images), every
epoch pushes the same images through the same backbone to get the same
features. `fit(..., cache_features=True)` computes them once, then trains the
head alone on them: the *same* layer objects as the `TransferModel`'s head (so the
weights are shared, nothing to copy back), the same loss, metrics, optimizer
object, class and sample weights and batch size; with `shuffle=False` the same
batches in the same order (with shuffling, a reshuffle per epoch of its own,
reproducible under `keras.utils.set_random_seed`). Validation runs on
cached validation features, so the cached phase reports the same `val_*`
metrics. User callbacks see the full `TransferModel` (ModelCheckpoint saves the
whole model, EarlyStopping and ReduceLROnPlateau work unchanged).

Exactness: a frozen backbone runs in inference mode (BatchNorm frozen); the
features are computed with `training=False`, which is the same function unless
the backbone has train-time randomness of its own (e.g. EfficientNet's
stochastic depth), which a frozen backbone should not apply anyway. The head
(including its Dropout, whose seed generator is shared) sees identical inputs,
so without shuffling the head weights match the uncached run to float32
round-off (tested).

Features live in memory (`cache_features=True`, a float32 array of
`n x feature_dim`, e.g. 576 floats per image for MobileNetV3Small), or in
TensorFlow cache files in a folder (`cache_features="<folder>"`) for data sets
too big for memory.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
import weakref
from typing import Any

import keras
import numpy as np

from kerastransfer.errors import DataError

__all__ = ["head_model", "extract_features", "validation_features", "fit_cached_phase",
           "can_cache"]

logger = logging.getLogger("kerastransfer")


def head_model(model) -> keras.Model:
    """The task's head as a model on features (`TransferTask.head_model`)."""
    return model.head_model()


def _is_dataset(x) -> bool:
    return hasattr(x, "element_spec") and hasattr(x, "cardinality")


def can_cache(model, x, fit_kwargs: dict) -> tuple[bool, str]:
    """Whether the current (frozen) phase can train on cached features, and why not."""
    if model.backbone.trainable and model.backbone.trainable_weights:
        return False, "the backbone is not frozen in this phase"
    if model.input_dtype_name == "string":
        return False, "the backbone takes strings"
    if _is_dataset(x):
        import tensorflow as tf

        if x.cardinality() == tf.data.INFINITE_CARDINALITY:
            return False, "the dataset repeats forever"
    elif not isinstance(x, np.ndarray):
        return False, f"x of type {type(x).__name__} (use arrays or a tf.data.Dataset)"
    return True, ""


class FeatureSet:
    """Cached features with their labels and optional sample weights."""

    def __init__(self, features, labels, sample_weight=None, dataset=None, count=0):
        self.features = features
        self.labels = labels
        self.sample_weight = sample_weight
        self.dataset = dataset  # disk mode: an unbatched, cached tf.data.Dataset
        self.count = count if dataset is not None else len(labels)


_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _extract_fn(model):
    """The model's feature extraction as one `tf.function`, traced once per model.

    Every `fit` call, its validation data and a linear probe's unlabelled
    images reuse it: tracing the backbone again costs about as much as the
    feature pass itself (docs/design.md, fact 29). The function reads the
    model's variables, so later weight or BatchNorm-statistics changes are seen.
    """
    extract = _EXTRACTORS.get(model)
    if extract is None:
        import tensorflow as tf

        extractor = model.feature_extractor()

        @tf.function(reduce_retracing=True)
        def extract(images):
            return extractor(images, training=False)

        _EXTRACTORS[model] = extract
    return extract


def extract_features(model, x, y=None, *, batch_size: int | None = None,
                     sample_weight=None, cache_dir: str | None = None) -> FeatureSet:
    """Runs the frozen backbone once over the data.

    Args:
        model: a `TransferModel`.
        x: images (numpy) or a finite `tf.data.Dataset` of `(images, labels[,
            sample_weight])` batches.
        y: labels for numpy images. Defaults to `None`.
        batch_size: batch size for numpy images. Defaults to `None` (32).
        sample_weight: per-image weights for numpy images. Defaults to `None`.
        cache_dir: a folder for TensorFlow cache files instead of memory.
            Defaults to `None` (memory).

    Returns:
        A `FeatureSet`.

    Raises:
        DataError: the dataset yields no labels.
    """
    import tensorflow as tf

    extract = _extract_fn(model)
    batch_size = batch_size or 32
    if not _is_dataset(x):
        dataset = tf.data.Dataset.from_tensor_slices(
            (x, y) if sample_weight is None else (x, y, sample_weight)
        ).batch(batch_size)
    else:
        dataset = x
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"features-{uuid.uuid4().hex}")
        cached = dataset.map(lambda images, *rest: (extract(images), *rest)).unbatch()
        cached = cached.cache(path)
        count = 0
        for _ in cached:  # one pass fills the cache file
            count += 1
        # a known length lets Keras run whole epochs on the cached file
        cached = cached.apply(tf.data.experimental.assert_cardinality(count))
        return FeatureSet(None, None, dataset=cached, count=count)
    feats, labels, weights = [], [], []
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise DataError("Cached features need labelled data: a dataset of "
                            "(images, labels) or (images, labels, sample_weight). "
                            "Received: elements without labels")
        # One array, or one per level for a multi-level head (a segmentation
        # decoder reads the whole feature pyramid).
        feats.append(keras.tree.map_structure(np.asarray, extract(element[0])))
        labels.append(np.asarray(element[1]))
        if len(element) > 2:
            weights.append(np.asarray(element[2]))
    if not feats:
        raise DataError("The training data is empty. Received: 0 batches")
    features = (np.concatenate(feats) if isinstance(feats[0], np.ndarray)
                else [np.concatenate(level) for level in zip(*feats, strict=True)])
    return FeatureSet(features, np.concatenate(labels),
                      np.concatenate(weights) if weights else None)


class _ForwardToModel(keras.callbacks.Callback):
    """Runs the user's callbacks against the full model while the head trains."""

    def __init__(self, callbacks, model):
        super().__init__()
        self._full = model
        self._inner = keras.callbacks.CallbackList(list(callbacks), model=model)
        self._head = None

    def set_model(self, model):
        self._head = model

    def set_params(self, params):
        self._inner.set_params(params)

    def _sync(self):
        if getattr(self._full, "stop_training", False) and self._head is not None:
            self._head.stop_training = True


def _forwarder(name):
    def method(self, *args, **kwargs):
        getattr(self._inner, name)(*args, **kwargs)
        self._sync()

    method.__name__ = name
    return method


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin",
              "on_test_end", "on_test_batch_begin", "on_test_batch_end"):
    setattr(_ForwardToModel, _hook, _forwarder(_hook))


def validation_features(model, validation_data, batch_size, cache_dir):
    if validation_data is None:
        return None
    if _is_dataset(validation_data):
        return extract_features(model, validation_data, cache_dir=cache_dir)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
        xv, yv = validation_data[0], validation_data[1]
        wv = validation_data[2] if len(validation_data) == 3 else None
        return extract_features(model, np.asarray(xv), np.asarray(yv),
                                batch_size=batch_size, sample_weight=wv,
                                cache_dir=cache_dir)
    raise DataError("validation_data must be (x, y), (x, y, sample_weight) or a "
                    "tf.data.Dataset. Received: validation_data of type "
                    f"{type(validation_data).__name__}")


def fit_cached_phase(model, x, y, *, epochs: int, initial_epoch: int, callbacks,
                     verbose: Any, fit_kwargs: dict, cache_dir: str | None = None,
                     order=None):
    """Trains the head of a frozen `model` on cached features for one phase.

    `model` must already be compiled for the phase (its optimizer is reused).
    `order`, when given, sets each epoch's order of the samples (anything with
    `epoch_order(epoch)`, e.g. the `SeededArrayDataset` checkpointing wraps
    arrays in), so that a resumed phase sees the batches an uninterrupted one
    sees; features cached on disk are read in a shuffled stream instead.
    Returns the Keras `History` of the head's `fit`.
    """
    import tensorflow as tf

    kwargs = dict(fit_kwargs)
    batch_size = kwargs.pop("batch_size", None) or 32
    validation_data = kwargs.pop("validation_data", None)
    sample_weight = kwargs.pop("sample_weight", None)
    shuffle = kwargs.pop("shuffle", True)
    validation_batch_size = kwargs.get("validation_batch_size") or batch_size
    if _is_dataset(x):
        spec = x.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if first.shape.rank is not None and first.shape[0] is not None:
            batch_size = int(first.shape[0])
        else:  # batch size of the first batch
            for element in x.take(1):
                batch_size = int(element[0].shape[0])
    train = extract_features(model, x, y, batch_size=batch_size,
                             sample_weight=sample_weight, cache_dir=cache_dir)
    val = validation_features(model, validation_data, validation_batch_size,
                               cache_dir)
    head = head_model(model)
    model._compile_head(head)
    forward = _ForwardToModel(callbacks, model)
    model.stop_training = False

    if train.dataset is not None:  # on disk: shuffled through a bounded buffer
        data = train.dataset
        if shuffle:
            data = data.shuffle(min(train.count, 10_000), reshuffle_each_iteration=True)
        data = data.batch(batch_size)
        val_data = val.dataset.batch(validation_batch_size) if val else None
        count = train.count
    else:
        val_data = None if val is None else tuple(
            c for c in (val.features, val.labels, val.sample_weight) if c is not None)
        columns = (_as_tuple(train.features), train.labels, train.sample_weight)
        if kwargs.get("validation_split") and val_data is None:
            columns, val_data = _split_like_keras(columns, kwargs["validation_split"])
        orders = None if order is None else np.stack(
            [order.epoch_order(epoch) for epoch in range(initial_epoch, epochs)])
        data = _batches_in_memory(columns, batch_size, shuffle, orders)
        count = len(columns[1])
    kwargs.pop("validation_split", None)
    # One pipeline repeated, with `steps_per_epoch`, keeps a single iterator for
    # the whole phase; arrays would make Keras build and shuffle a new one every
    # epoch, which costs more than the head's steps (docs/design.md, fact 29).
    # shuffle=False: the pipeline reshuffles itself, and Keras warns that its
    # default shuffle=True is ignored for a dataset.
    return head.fit(data.repeat().prefetch(tf.data.AUTOTUNE),
                    steps_per_epoch=math.ceil(count / batch_size), shuffle=False,
                    epochs=epochs, initial_epoch=initial_epoch,
                    validation_data=val_data, callbacks=[forward], verbose=verbose,
                    **kwargs)


def _as_tuple(features):
    """A multi-level head's inputs as a tuple (what `tf.data` slices together)."""
    return tuple(features) if isinstance(features, list) else features


def _split_like_keras(columns, validation_split: float):
    """`validation_split` as Keras applies it to arrays: the last fraction."""
    count = len(columns[1])
    split_at = int(math.floor(count * (1.0 - validation_split)))
    if split_at in (0, count):
        raise DataError(f"validation_split leaves no training or no validation "
                        f"data for {count} samples. Received: "
                        f"validation_split={validation_split}")

    def part(start, end):
        return keras.tree.map_structure(
            lambda a: None if a is None else a[start:end], columns)

    train, val = part(0, split_at), part(split_at, count)
    return train, tuple(c for c in val if c is not None)


def _batches_in_memory(columns, batch_size: int, shuffle: bool, orders=None):
    """The cached features in batches, as Keras batches arrays.

    The indices are shuffled (once per epoch) and each batch gathered, so no
    shuffle buffer copies the features; with `shuffle=False` the batches are
    the ones Keras makes from the arrays, in the same order. `orders`, an
    array `(epochs, n)`, gives each epoch's order instead.
    """
    import tensorflow as tf

    tensors = tuple(keras.tree.map_structure(tf.convert_to_tensor, column)
                    for column in columns if column is not None)
    if orders is not None:  # batches never straddle two epochs
        indices = tf.data.Dataset.from_tensor_slices(orders).flat_map(
            lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
    else:
        indices = tf.data.Dataset.range(len(columns[1]))
        if shuffle:
            indices = indices.shuffle(len(columns[1]), reshuffle_each_iteration=True)
        indices = indices.batch(batch_size)
    return indices.map(
        lambda index: keras.tree.map_structure(lambda t: tf.gather(t, index), tensors),
        num_parallel_calls=tf.data.AUTOTUNE)


def _arrays_of(x, y, fit_kwargs: dict):
    """`(seeded, (x, y, fit_kwargs))`: the arrays inside the `SeededArrayDataset`
    that checkpointing wraps arrays in (and the wrapper, for its per-epoch
    order), or the inputs unchanged (and None)."""
    from kerastransfer.training.data_order import SeededArrayDataset

    if not isinstance(x, SeededArrayDataset):
        return None, (x, y, fit_kwargs)
    kwargs = {**fit_kwargs, "sample_weight": x.sample_weight,
              "batch_size": x.batch_size, "shuffle": x.shuffle}
    return x, (x.x, x.y, kwargs)


def run_phase(model, x, y, *, cache_features, augmentation, epochs: int,
              initial_epoch: int, callbacks, verbose, fit_kwargs: dict,
              linear_probe: bool = False, unlabelled=None):
    """Runs one phase with Keras's `fit`, or on cached features when allowed.

    Returns:
        `(history, cached)`: the phase's Keras `History` and whether it trained on
        cached features.
    """
    cache_dir = (os.fspath(cache_features)
                 if isinstance(cache_features, (str, os.PathLike)) else None)
    seeded, (cached_x, cached_y, cached_kwargs) = _arrays_of(x, y, fit_kwargs)
    if linear_probe:
        x, y, fit_kwargs = cached_x, cached_y, cached_kwargs
        ok, reason = can_cache(model, x, fit_kwargs)
        if not ok:
            raise ValueError(
                f"head='linear_probe' solves a frozen phase on features computed "
                f"once, which is not possible here: {reason}. Received: "
                "head='linear_probe'")
        if augmentation is not None:
            logger.info("Linear probe: augmentation is not used by the solver.")
        from kerastransfer.training.probe_phase import fit_probe_phase

        return fit_probe_phase(model, x, y, initial_epoch=initial_epoch,
                               fit_kwargs=fit_kwargs, cache_dir=cache_dir,
                               unlabelled=unlabelled), True
    if cache_features and augmentation is None:
        ok, reason = can_cache(model, cached_x, cached_kwargs)
        if ok:
            logger.info("Training the head on cached backbone features%s.",
                        f" (files in {cache_dir})" if cache_dir else " (in memory)")
            result = fit_cached_phase(
                model, cached_x, cached_y, epochs=epochs, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=verbose, fit_kwargs=cached_kwargs,
                cache_dir=cache_dir, order=seeded,
            )
            return result, True
        if model.backbone.trainable is False:
            logger.info("Not caching features: %s.", reason)
    elif cache_features and augmentation is not None:
        logger.info("Not caching features: augmentation changes the images every "
                    "epoch.")
    if _is_dataset(x) and "shuffle" not in fit_kwargs:
        # Keras warns that shuffle (default True) is ignored for a dataset, which
        # comes shuffled (or not) as built.
        fit_kwargs = {**fit_kwargs, "shuffle": False}
    result = keras.Model.fit(model, x, y, epochs=epochs, initial_epoch=initial_epoch,
                             callbacks=callbacks, verbose=verbose, **fit_kwargs)
    return result, False
