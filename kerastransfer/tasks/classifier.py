"""`TransferModel`: image classification — preprocessing -> backbone -> head.

A `TransferModel` is a `TransferTask` (`kerastransfer/tasks/base.py`): the shared
base owns the backbone, the phase state, the phased `fit()` and saving; this module
adds what is particular to classification: the pooled head, its loss and metrics,
the label checks, and the export contract (the output is one probability per
class, in `class_names` order). It takes images as users have them (RGB, float
values in [0, 255]) and applies the backbone family's preprocessing itself, so
training and deployment cannot disagree on normalization.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerastransfer.backbones.registry import BackboneSpec
from kerastransfer.data.checks import check_label_range
from kerastransfer.errors import DataError, InputShapeError
from kerastransfer.preprocessing import ImagePreprocessing
from kerastransfer.tasks.backbone import build_scope, resolve_backbone
from kerastransfer.tasks.base import TransferTask
from kerastransfer.tasks.classes import resolve_classes

# fit(head="auto") solves the frozen phase's head with the linear probe up to
# this many training images per class (docs/design.md fact 30).
AUTO_PROBE_PER_CLASS = 10

__all__ = ["TransferModel", "TASKS", "POOLINGS"]

logger = logging.getLogger(__name__)

TASKS = ("multiclass", "multilabel", "regression")
POOLINGS = ("avg", "max", "flatten")


@keras.saving.register_keras_serializable(package="kerastransfer")
class TransferModel(TransferTask):
    """A pretrained backbone with a new head, fine-tuned in phases.

    Args:
        backbone: a registry name (`"mobilenet_v3_small"`, `"ResNet50"`,
            `"tfhub:<handle>"`), a `BackboneSpec`, or a `keras.Model` mapping
            images to features. Defaults to `"mobilenet_v3_small"`.
        num_classes: classes (multiclass/multilabel) or outputs (regression).
            Defaults to `len(class_names)`, or 1 for regression.
        weights: `"imagenet"` (Keras downloads and caches them), `None` (random
            initialization: train from scratch), or a path to a weights file for
            the backbone. For a `keras.Model` backbone its own weights are used:
            `None` marks them as random (one from-scratch phase), any other value
            as pretrained. Defaults to `"imagenet"`.
        input_shape: `(height, width, channels)` of the images. Defaults to the
            backbone's default size.
        class_names: names of the classes, in label order. Defaults to
            `["0", "1", ...]`.
        task: `"multiclass"` (softmax), `"multilabel"` (sigmoid) or
            `"regression"` (linear). Defaults to `"multiclass"`.
        pooling: `"avg"`, `"max"` or `"flatten"` over the feature map. Defaults to
            `"avg"`.
        dropout: dropout rate before the output layer. Defaults to `0.2`.
        hidden_units: sizes of optional hidden Dense layers in the head. Defaults
            to `()`.
        preprocessing: an `ImagePreprocessing` mode overriding the backbone's.
            Defaults to `None` (the backbone family's). With C != 3 input
            channels it is folded into the adapted first convolution
            (`kerastransfer/backbones/adapt.py`) and `preprocessing_mode` is
            `"none"`.
        window: an intensity window mapping the images' units (e.g. CT
            Hounsfield units) to [0, 255] inside the model: a preset name
            (`"lung"`, `"brain"`, `"bone"`, `"soft_tissue"`, ...) or
            `(center, width)`. Saved with the model and in the ONNX metadata.
            Defaults to `None` (images already in [0, 255]).
        threshold: the decision threshold on the positive probability (binary
            multiclass: class 1) or on each label (multilabel); a float or one
            per class, typically chosen on validation data by
            `kerastransfer.report.clinical.choose_threshold`. Saved with the model
            and in the ONNX metadata; `decide()` and `OnnxPredictor.decide()`
            apply it. Defaults to `None` (argmax / 0.5).
        mixed_precision: `"mixed_float16"` or `"mixed_bfloat16"` (the head's output
            stays float32). Defaults to `None` (float32).
        strategy: a `tf.distribute.Strategy`; the model is built and every phase
            compiled under its scope. Not saved. Defaults to `None`.
        name: the model's name. Defaults to `"transfer_model"`.

    Example:

    >>> import numpy as np
    >>> model = TransferModel("mobilenet_v3_small", num_classes=2, weights=None,
    ...                       input_shape=(32, 32, 3), class_names=["cat", "dog"])
    >>> x = np.random.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    >>> y = np.array([0, 1] * 4)
    >>> history = model.fit(x, y, epochs=1, fine_tune_epochs=1, verbose=0)
    >>> [p["name"] for p in history.phases]
    ['frozen', 'fine_tune']
    """

    def __init__(
        self,
        backbone: str | BackboneSpec | keras.Model = "mobilenet_v3_small",
        num_classes: int | None = None,
        *,
        weights: str | None = "imagenet",
        input_shape: Sequence[int | None] | None = None,
        class_names: Sequence[str] | None = None,
        task: str = "multiclass",
        pooling: str = "avg",
        dropout: float = 0.2,
        hidden_units: Sequence[int] = (),
        preprocessing: str | None = None,
        window: Any = None,
        threshold: float | Sequence[float] | None = None,
        mixed_precision: str | None = None,
        strategy: Any = None,
        name: str = "transfer_model",
        **kwargs,
    ):
        num_classes, class_names = _check_head_args(
            num_classes, class_names, task, pooling, dropout, hidden_units
        )
        with build_scope(strategy, mixed_precision):
            parts = resolve_backbone(backbone, weights=weights, input_shape=input_shape,
                                     preprocessing=preprocessing)
            mode = preprocessing or (parts.spec.preprocessing if parts.spec else "none")
            if parts.folded_preprocessing is not None:
                mode = "none"  # folded into the adapted first convolution

            # === Functional graph ===
            inputs = keras.Input(shape=parts.input_shape, dtype=parts.input_dtype,
                                 name="image")
            if parts.input_dtype == "string":
                preprocessor = None
                x = inputs
            else:
                preprocessor = ImagePreprocessing(mode, window=window,
                                                  name="preprocessing")
                x = preprocessor(inputs)
            features = parts.model(x)
            head_layers = _head_layers(
                len(features.shape), num_classes, task, pooling, dropout, hidden_units
            )
            x = feature_tensor = features
            for layer in head_layers:
                x = layer(x)
                if layer.name == "pool":
                    feature_tensor = x
            super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)

        # === Config ===
        self._init_task(parts, head_layers=head_layers, feature_tensor=feature_tensor,
                        strategy=strategy, mixed_precision=mixed_precision)
        self.preprocessor = preprocessor
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = task
        self.pooling = pooling
        self.dropout = float(dropout)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.image_shape = tuple(parts.input_shape)
        self.preprocessing_mode = mode
        self.window = preprocessor.window if preprocessor is not None else None
        self.threshold = _check_threshold(threshold, task, num_classes)

    # --- The task contract -------------------------------------------------
    def default_loss(self):
        """Sparse categorical cross-entropy (multiclass), binary cross-entropy
        (multilabel) or mean squared error (regression)."""
        return {"multiclass": "sparse_categorical_crossentropy",
                "multilabel": "binary_crossentropy",
                "regression": "mean_squared_error"}[self.task]

    def default_metrics(self) -> list:
        """Accuracy (binary accuracy for multilabel), or MAE for regression."""
        if self.task == "multilabel":
            return [keras.metrics.BinaryAccuracy(name="accuracy")]
        if self.task == "regression":
            return [keras.metrics.MeanAbsoluteError(name="mae")]
        return ["accuracy"]

    def export_contract(self) -> dict:
        """The output is one score per class in `class_names` order: softmax
        probabilities (multiclass), sigmoid probabilities (multilabel) or values
        (regression); the runtime's `OnnxPredictor` reads them so."""
        return {"kind": "classification", "task": self.task,
                "class_names": list(self.class_names),
                "num_classes": self.num_classes, "input_shape": list(self.image_shape),
                "preprocessing_mode": self.preprocessing_mode,
                "window": None if self.window is None else list(self.window),
                "threshold": self.threshold,
                "channels": int(self.image_shape[-1]) if self.image_shape else None}

    def predict(self, x, *args, tta: bool = False, **kwargs):
        """`keras.Model.predict`, with optional test-time augmentation.

        Args:
            x: images (numpy, `(n, h, w, c)`), or anything `keras.Model.predict`
                takes when `tta=False`.
            tta: average the predictions on the images and their horizontal and
                vertical flips. Defaults to `False`.
            *args, **kwargs: passed to `keras.Model.predict`.

        Returns:
            The predictions, `(n, num_classes)`.
        """
        if not tta:
            return super().predict(x, *args, **kwargs)
        from kerastransfer.runtime.postprocess import tta_views

        views = tta_views(x)
        return np.mean([super(TransferModel, self).predict(v, *args, **kwargs)
                        for v in views], axis=0)

    def decide(self, probabilities) -> np.ndarray:
        """Decisions from predicted probabilities with the stored `threshold`.

        Args:
            probabilities: `(n, num_classes)` outputs of `predict`.

        Returns:
            Class indices `(n,)` (multiclass) or 0/1 labels `(n, num_classes)`
            (multilabel).
        """
        from kerastransfer.runtime.postprocess import decide

        return decide(probabilities, self.task, self.threshold)

    def _checkpoint_identity(self) -> dict:
        return {**super()._checkpoint_identity(), "num_classes": int(self.num_classes),
                "image_shape": list(self.image_shape), "task": self.task}

    def _check_labels(self, y) -> None:
        _check_classification_labels(self.task, self.num_classes, y)

    def _auto_head(self, x, augmentation=None) -> str:
        # Small data only: measured up to 10 labelled images per class
        # (docs/design.md fact 30); the solver's cross-validation grows with n.
        from kerastransfer.data import ImageData

        if (augmentation is not None or self.strategy is not None
                or self.task != "multiclass" or self.hidden_units):
            return "epochs"
        if isinstance(x, ImageData):
            count = x.num_train
        elif isinstance(x, np.ndarray) and x.ndim == 4 \
                and np.issubdtype(x.dtype, np.number):
            count = len(x)
        else:  # a tf.data pipeline (unknown size), texts, ...
            return "epochs"
        return ("linear_probe" if count <= AUTO_PROBE_PER_CLASS * self.num_classes
                else "epochs")

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "input_shape": list(self.image_shape),
            "class_names": list(self.class_names),
            "task": self.task,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "hidden_units": list(self.hidden_units),
            "preprocessing": self.preprocessing_mode,
            "window": None if self.window is None else list(self.window),
            "threshold": self.threshold,
        }


def _check_head_args(num_classes, class_names, task, pooling, dropout, hidden_units):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    if pooling not in POOLINGS:
        raise ValueError(
            f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if any(not isinstance(u, int) or u < 1 for u in hidden_units):
        raise ValueError(
            "hidden_units must be positive integers. "
            f"Received: hidden_units={hidden_units!r}"
        )
    if num_classes is None and class_names is None and task == "regression":
        num_classes = 1
    minimum = 2 if task == "multiclass" else 1
    return resolve_classes(
        num_classes, class_names, minimum=minimum, head=f"{task} head",
        missing="Pass num_classes (or class_names) for a classification task.",
        below=(" For a yes/no problem use num_classes=2, or task='multilabel' with "
               "num_classes=1." if task == "multiclass" else ""),
        names_must_match=task != "regression")


def _check_threshold(threshold, task, num_classes):
    """`threshold` as a float, a list of floats, or None (clear errors)."""
    if threshold is None:
        return None
    values = np.atleast_1d(np.asarray(threshold, dtype="float64"))
    if task == "regression" or (task == "multiclass" and num_classes != 2):
        raise ValueError(
            "A decision threshold applies to binary (2-class) or multilabel models. "
            f"Remove it. Received: threshold={threshold!r}, task={task!r}, "
            f"num_classes={num_classes}")
    if values.ndim != 1 or len(values) not in (1, num_classes) or not np.all(
            (values > 0) & (values < 1)):
        raise ValueError(
            "threshold must be a probability in (0, 1), or one per class. "
            f"Received: threshold={threshold!r}")
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def _check_classification_labels(task: str, num_classes: int, y) -> None:
    """Clear errors for numpy labels a classification head cannot learn from."""
    if y is None or task != "multiclass":
        return
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        return
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(
            "Multiclass labels must be integer class indices (or one-hot rows). "
            f"Received: y.dtype={y.dtype}"
        )
    check_label_range(y, num_classes)
    low, high = int(y.min()), int(y.max())
    if low == high and len(y) > 1:
        raise DataError(
            f"The labels contain only one class ({low}): a classifier needs examples "
            "of at least two classes to learn anything. Add images of the other "
            f"classes. Received: {len(y)} labels, all {low}"
        )


def _head_layers(feature_rank, num_classes, task, pooling, dropout, hidden_units):
    layers = []
    if feature_rank == 4:
        pool = {
            "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D,
            "flatten": keras.layers.Flatten,
        }[pooling]
        layers.append(pool(name="pool"))
    elif feature_rank != 2:
        raise InputShapeError(
            "The backbone must output feature maps (batch, h, w, c) or vectors "
            f"(batch, c). Received: a rank-{feature_rank} output"
        )
    for i, units in enumerate(hidden_units):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"hidden_{i}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"hidden_dropout_{i}"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="head_dropout"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    activation = {"multiclass": "softmax", "multilabel": "sigmoid",
                  "regression": "linear"}[task]
    # float32 output even under mixed precision: softmax in float16 loses accuracy.
    layers.append(keras.layers.Activation(activation, dtype="float32",
                                          name="predictions"))
    return layers
