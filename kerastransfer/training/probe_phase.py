"""A frozen phase whose linear head is solved, not trained (`head="linear_probe"`).

The backbone's features are computed once (`training.features.extract_features`),
the solver of `training.probe` fits the head on them (self-trained on the
features of unlabelled images when `fit` is given `unlabelled=`:
`training.self_train`), and the phase is recorded as one epoch in the model's
history.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from kerastransfer.training.features import (
    FeatureSet,
    extract_features,
    validation_features,
)

__all__ = ["fit_probe_phase"]

logger = logging.getLogger("kerastransfer")


def _materialize(features: FeatureSet) -> FeatureSet:
    """An in-memory copy of a feature set cached on disk."""
    if features.dataset is None:
        return features
    rows = list(features.dataset.as_numpy_iterator())
    columns = [np.stack(column) for column in zip(*rows, strict=True)]
    return FeatureSet(*columns)


def _probe_weights(model, train: FeatureSet, class_weight) -> np.ndarray | None:
    weights = train.sample_weight
    if class_weight:
        labels = train.labels if train.labels.ndim == 1 else train.labels.argmax(-1)
        per_class = np.array([class_weight.get(c, 1.0) for c in labels], "float64")
        weights = per_class if weights is None else weights * per_class
    return weights


def _unlabelled_features(model, images, batch_size: int, cache_dir) -> np.ndarray:
    """The features of unlabelled images, extracted as the training features are."""
    images = np.asarray(images)
    expected = tuple(model.input_shape[1:])
    if images.ndim != len(expected) + 1 or len(images) == 0 or any(
            want is not None and got != want
            for got, want in zip(images.shape[1:], expected, strict=True)):
        raise ValueError(
            "`unlabelled` must be a non-empty numpy array of images shaped like "
            f"the model's input {expected}, in the form the training images take. "
            f"Received: unlabelled.shape={images.shape}")
    dummy = np.zeros(len(images), dtype="int64")  # extraction carries labels along
    features = _materialize(extract_features(model, images, dummy,
                                             batch_size=batch_size,
                                             cache_dir=cache_dir))
    return features.features


def fit_probe_phase(model, x, y, *, initial_epoch: int, fit_kwargs: dict,
                    cache_dir: str | None = None, unlabelled=None):
    """Solves a frozen phase's linear head with the linear-probe solver.

    The backbone's features are computed once; `training.probe.fit_linear_probe`
    fits L2-regularized logistic regression on them (its strength chosen by
    cross-validation on the training features only), and the result becomes the
    head's `logits` kernel and bias. With `unlabelled` images, the probe is
    self-trained on their features (`training.self_train.self_train_probe`:
    two class-balanced rounds of pseudo-labels). The phase is recorded as one
    epoch whose metrics are the head's on the training (and validation)
    features (the labelled ones only).

    Returns:
        A Keras `History` with that one epoch.

    Raises:
        ValueError: the head is not linear (`hidden_units`), the task is not
            multiclass/multilabel (multiclass with `unlabelled`), or
            `unlabelled` is not an array of images shaped like the model's input.
    """
    from kerastransfer.training.probe import fit_linear_probe
    from kerastransfer.training.self_train import self_train_probe

    names = [layer.name for layer in model.head_layers]
    if any(name.startswith("hidden_") for name in names) or "logits" not in names \
            or getattr(model, "task", None) not in ("multiclass", "multilabel"):
        raise ValueError(
            "head='linear_probe' needs a linear classification head: a "
            "multiclass or multilabel task without hidden_units. Use head='epochs' "
            f"for this model. Received: head layers {names}"
        )
    if unlabelled is not None and model.task != "multiclass":
        raise ValueError(
            "Self-training the linear probe on `unlabelled` images needs a "
            "multiclass task; fit without `unlabelled`. "
            f"Received: task={model.task!r}")
    kwargs = dict(fit_kwargs)
    batch_size = kwargs.get("batch_size") or 32
    unlabelled_features = None if unlabelled is None else _unlabelled_features(
        model, unlabelled, batch_size, cache_dir)
    train = _materialize(extract_features(
        model, x, y, batch_size=batch_size, sample_weight=kwargs.get("sample_weight"),
        cache_dir=cache_dir))
    labels = train.labels
    if model.task == "multiclass" and labels.ndim == 2:
        labels = labels.argmax(-1)  # one-hot rows
    weights = _probe_weights(model, train, kwargs.get("class_weight"))
    if unlabelled_features is None:
        probe = fit_linear_probe(train.features, labels,
                                 num_classes=model.num_classes, task=model.task,
                                 sample_weight=weights)
        seconds = probe.seconds
    else:
        result = self_train_probe(train.features, labels, unlabelled_features,
                                  num_classes=model.num_classes,
                                  sample_weight=weights)
        probe, seconds = result.probe, result.seconds
        logger.info("Linear probe: self-trained on %d unlabelled images, %d "
                    "pseudo-labels in the last round.", len(unlabelled_features),
                    len(result.pseudo_index))
    model.head_layers[names.index("logits")].set_weights([probe.kernel, probe.bias])
    logger.info("Linear probe: C=%s chosen on the training features, %.2f s.",
                probe.C, seconds)
    head = model.head_model()
    model._compile_head(head)
    logs = head.evaluate(train.features, train.labels,
                         sample_weight=train.sample_weight, batch_size=batch_size,
                         verbose=0, return_dict=True)
    val = validation_features(model, kwargs.get("validation_data"), batch_size,
                               cache_dir)
    if val is not None:
        val = _materialize(val)
        val_logs = head.evaluate(val.features, val.labels,
                                 sample_weight=val.sample_weight,
                                 batch_size=batch_size, verbose=0, return_dict=True)
        logs.update({f"val_{k}": v for k, v in val_logs.items()})
    history = keras.callbacks.History()
    history.epoch = [initial_epoch]
    history.history = {k: [float(v)] for k, v in logs.items()}
    return history
