"""`TransferModel`: preprocessing -> backbone -> head, trained in phases.

A `TransferModel` is a Keras functional model built by a subclass (as KerasHub
builds its backbones and tasks): it has a graph (summary, layer access, ONNX
export), while `get_config()` holds only its constructor arguments and
`from_config` rebuilds it with `cls(**config)`. It takes images as users have them
(RGB, float values in [0, 255]) and applies the backbone family's preprocessing
itself, so training and deployment cannot disagree on normalization.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import keras

from kerastransfer.training import phases as phases_lib
from kerastransfer.backbones.registry import BackboneSpec, get_backbone
from kerastransfer.errors import InputShapeError
from kerastransfer.preprocessing import ImagePreprocessing

__all__ = ["TransferModel", "TASKS", "POOLINGS"]

logger = logging.getLogger(__name__)

TASKS = ("multiclass", "multilabel", "regression")
POOLINGS = ("avg", "max", "flatten")
_MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def _dtype_policy(policy: str | None):
    """Builds layers under a mixed-precision policy, then restores the old one."""
    if policy is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="kerastransfer")
class TransferModel(keras.Model):
    """A pretrained backbone with a new head, fine-tuned in phases.

    Args:
        backbone: a registry name (`"mobilenet_v3_small"`, `"ResNet50"`,
            `"tfhub:<handle>"`), a `BackboneSpec`, or a `keras.Model` mapping
            images to features. Defaults to `"mobilenet_v3_small"`.
        num_classes: classes (multiclass/multilabel) or outputs (regression).
            Defaults to `len(class_names)`, or 1 for regression.
        weights: `"imagenet"` (Keras downloads and caches them), `None` (random
            initialization: train from scratch), or a path to a weights file for
            the backbone. Ignored when `backbone` is a `keras.Model`. Defaults to
            `"imagenet"`.
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
            Defaults to `None` (the backbone family's).
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
        backbone: str | BackboneSpec | keras.Model | dict = "mobilenet_v3_small",
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
        mixed_precision: str | None = None,
        strategy: Any = None,
        backbone_name: str | None = None,
        pretrained: bool | None = None,
        phase_state: dict | None = None,
        name: str = "transfer_model",
        **kwargs,
    ):
        num_classes, class_names = _check_head_args(
            num_classes, class_names, task, pooling, dropout, hidden_units
        )
        if mixed_precision not in (None, *_MIXED_POLICIES):
            raise ValueError(
                f"mixed_precision must be one of {_MIXED_POLICIES} or None. "
                f"Received: mixed_precision={mixed_precision!r}"
            )
        if isinstance(backbone, dict):  # from_config
            backbone = keras.saving.deserialize_keras_object(backbone)

        # === Backbone ===
        with _scope(strategy), _dtype_policy(mixed_precision):
            spec = None
            if isinstance(backbone, str):
                spec = get_backbone(backbone)
            elif isinstance(backbone, BackboneSpec):
                spec = backbone
            elif isinstance(backbone, keras.Model):
                if backbone_name is not None:
                    with contextlib.suppress(ValueError):
                        spec = get_backbone(backbone_name)
            else:
                raise TypeError(
                    "backbone must be a registry name, a BackboneSpec or a "
                    f"keras.Model. Received: backbone={backbone!r}"
                )
            if spec is not None and not isinstance(backbone, keras.Model):
                image_shape = spec.resolve_input_shape(input_shape)
                if pretrained is None:
                    pretrained = weights is not None
                backbone_model = spec.build(image_shape, weights)
                backbone_name = spec.name
            else:
                backbone_model = backbone
                if spec is not None and spec.input_dtype == "string":
                    image_shape = ()
                else:
                    image_shape = _model_input_shape(backbone_model, input_shape)
                    if spec is not None:
                        image_shape = spec.resolve_input_shape(image_shape)
                if pretrained is None:
                    pretrained = True
                backbone_name = backbone_name or backbone_model.name
            input_dtype = spec.input_dtype if spec is not None else "float32"
            mode = preprocessing or (spec.preprocessing if spec else "none")

            # === Functional graph ===
            inputs = keras.Input(shape=image_shape, dtype=input_dtype, name="image")
            if input_dtype == "string":
                preprocessor = None
                x = inputs
            else:
                preprocessor = ImagePreprocessing(mode, name="preprocessing")
                x = preprocessor(inputs)
            features = backbone_model(x)
            head_layers = _head_layers(
                len(features.shape), num_classes, task, pooling, dropout, hidden_units
            )
            x = features
            feature_tensor = features
            for layer in head_layers:
                x = layer(x)
                if layer.name == "pool":
                    feature_tensor = x
            super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)

        # === Config ===
        self.backbone = backbone_model
        self.backbone_spec = spec
        self.backbone_name = backbone_name
        self.preprocessor = preprocessor
        self.head_layers = head_layers
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = task
        self.pooling = pooling
        self.dropout = float(dropout)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.image_shape = tuple(image_shape)
        self.input_dtype_name = input_dtype
        self.preprocessing_mode = mode
        self.mixed_precision = mixed_precision
        self.pretrained = bool(pretrained)
        self.strategy = strategy
        self._feature_tensor = feature_tensor
        self._user_compile: dict | None = None
        self._phase_state = {"unfreeze": "all", "train_bn": True}
        if phase_state is not None:
            self._restore_phase_state(phase_state)

    # --- Introspection -----------------------------------------------------
    @property
    def block_rule(self):
        """The backbone's `BlockRule` (natural unfreezing blocks), or None."""
        return self.backbone_spec.blocks if self.backbone_spec else None

    @property
    def phase_state(self) -> dict:
        """What is trainable: `{"unfreeze": <rule>, "train_bn": bool}`."""
        return dict(self._phase_state)

    def feature_extractor(self) -> keras.Model:
        """A model from the same input to the pooled backbone features (shares
        weights with this model)."""
        return keras.Model(self.input, self._feature_tensor,
                           name=f"{self.name}_features")

    # --- Phases -------------------------------------------------------------
    def freeze_backbone(self) -> None:
        """Freezes the backbone (BatchNorm in inference mode). Recompile after."""
        phases_lib.freeze_backbone(self)

    def unfreeze(self, rule: Any = "all", *, train_bn: bool = False) -> list[str]:
        """Unfreezes part of the backbone; see `kerastransfer.training.phases.unfreeze`."""
        return phases_lib.unfreeze(self, rule, train_bn=train_bn)

    def trainable_summary(self) -> str:
        """A readable account of which blocks train, and BatchNorm modes."""
        return phases_lib.trainable_summary(self)

    def _restore_phase_state(self, state: dict) -> None:
        rule = state.get("unfreeze", "all")
        if rule == "none":
            self.freeze_backbone()
        else:
            self.unfreeze(rule, train_bn=bool(state.get("train_bn", False)))

    # --- Training -----------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`; `loss` and `metrics` default to the task's
        (sparse categorical cross-entropy and accuracy for multiclass). `fit()`
        keeps the optimizer type, loss and metrics in every phase."""
        self._user_compile = dict(
            optimizer=optimizer, loss=loss, metrics=metrics, **kwargs
        )
        from kerastransfer.training import loop as training

        with _scope(self.strategy):
            super().compile(
                optimizer=optimizer,
                loss=loss if loss is not None else training.default_loss(self),
                metrics=metrics if metrics is not None
                else training.default_metrics(self),
                **kwargs,
            )

    def compile_from_config(self, config):
        """Restores the training configuration saved in a `.keras` file."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def fit(
        self,
        x=None,
        y=None,
        *,
        epochs: int = 1,
        fine_tune_epochs: int = 0,
        learning_rate: float | None = None,
        fine_tune_lr: float | None = None,
        unfreeze: Any = "all",
        train_bn: bool = False,
        lr_decay: float | None = None,
        plan: Any = None,
        batch_size: int | None = None,
        validation_data=None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        verbose: Any = "auto",
        checkpoint_dir: str | None = None,
        cache_features: bool | str = False,
        report_dir: str | None = None,
        augmentation: Any = None,
        precise_bn: bool = True,
        **kwargs,
    ):
        """Trains in phases: the head on a frozen backbone, then fine-tuning.

        Phase 1 trains for `epochs` with the backbone frozen. Phase 2 (when
        `fine_tune_epochs > 0`) unfreezes the backbone as `unfreeze` says and
        recompiles with `fine_tune_lr`, keeping the loss, metrics and optimizer
        type. A `PhasePlan` (`plan=`) allows any number of phases (gradual
        unfreezing). A model built with `weights=None` has nothing to transfer: it
        trains in one phase, everything trainable, for `epochs + fine_tune_epochs`.

        Args:
            x, y: training data, as for `keras.Model.fit` (arrays, a
                `tf.data.Dataset` of `(images, labels)`, ...), or an `ImageData`
                from `kerastransfer.data` (its validation split is used unless
                `validation_data` is given). Images are RGB float values in
                [0, 255].
            epochs: epochs of the frozen phase. Defaults to `1`.
            fine_tune_epochs: epochs of the fine-tuning phase. Defaults to `0`.
            learning_rate: learning rate of the frozen phase. Defaults to the
                compiled optimizer's (1e-3 for the default Adam).
            fine_tune_lr: learning rate of fine-tuning. Defaults to a tenth of
                `learning_rate`.
            unfreeze: what fine-tuning unfreezes (`"all"`, `"top:N"`,
                `"from:<layer>"`, `"blocks:N"`, `"fraction:F"`). Defaults to
                `"all"`.
            train_bn: let BatchNorm train during fine-tuning. Defaults to `False`.
            lr_decay: layer-wise learning-rate decay per backbone block during
                fine-tuning (discriminative rates). Defaults to `None`.
            plan: a `PhasePlan` (or list of `Phase`) used instead of the
                arguments above. Defaults to `None`.
            batch_size: as for `keras.Model.fit`. Defaults to `None` (32).
            validation_data: as for `keras.Model.fit`. Defaults to `None`.
            callbacks: Keras callbacks, shared by all phases. Defaults to `None`.
            verbose: as for `keras.Model.fit`. Defaults to `"auto"`.
            checkpoint_dir: a folder where a checkpoint (weights, optimizer
                state, phase, epoch, data-order seed, history) is written
                atomically at every epoch end; rerunning the same `fit()` with it
                resumes where training stopped, and returns the stored history
                once training has finished. See `docs/reliability.md`. Defaults
                to `None`.
            cache_features: train frozen phases on backbone features computed
                once (`True`: in memory; a folder path: in cache files there).
                Exact: same head weights as without caching. Not used with
                `augmentation`. Defaults to `False`.
            report_dir: write learning curves, a confusion matrix and per-class
                metrics (on `validation_data`) to this folder after training.
                Defaults to `None`.
            augmentation: `"light"`, `"medium"`, `"heavy"`, a list of Keras
                preprocessing layers, or `None`; applied to training batches in
                the input pipeline only (never part of the saved model).
                Defaults to `None`.
            precise_bn: in a phase that trains BatchNorm, recompute its moving
                statistics with the current weights over up to 1,024 training
                images before each validation and at the end of the phase, since
                the moving averages lag after few steps (`kerastransfer.training.batchnorm`).
                Defaults to `True`.
            **kwargs: other `keras.Model.fit` arguments (`class_weight`, also
                `"balanced"`; `steps_per_epoch`, `shuffle`, ...).

        Returns:
            A `PhasedHistory` (a `keras.callbacks.History`) covering all epochs,
            with `history.phases` recording each phase's name, epochs and rule.
        """
        from kerastransfer.training import loop as training

        plan = training.resolve_plan(
            self, plan, epochs, fine_tune_epochs, learning_rate, fine_tune_lr,
            unfreeze, train_bn, lr_decay,
        )
        return training.fit_phases(
            self, plan, x, y, batch_size=batch_size,
            validation_data=validation_data, callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            verbose=verbose, cache_features=cache_features, report_dir=report_dir,
            augmentation=augmentation, precise_bn=precise_bn, **kwargs,
        )

    def lr_find(self, x, y=None, **kwargs):
        """Sweeps the learning rate; see `kerastransfer.training.lr_finder.lr_find`."""
        from kerastransfer.training.lr_finder import lr_find

        return lr_find(self, x, y, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (TF backend) reduces the first distributed batch with
        # strategy.reduce("MEAN", ...), which fails under
        # MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica..."
        # ). Only the batch's shapes are needed: take one local replica's batch.
        if iterator is not None and data_batch is None and self._multi_worker():
            import tensorflow as tf

            strategy = self._distribute_strategy
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _multi_worker(self) -> bool:
        strategy = getattr(self, "_distribute_strategy", None)
        check = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode",
                        None)
        return bool(check and check())

    @staticmethod
    def _rank1_logs(logs):
        # Keras 3.15 reduces step logs under MultiWorkerMirroredStrategy with
        # strategy.reduce("MEAN", v, axis=0), which fails on scalars: give each
        # log a length-1 axis, which that reduction turns back into a scalar.
        import tensorflow as tf

        return {k: tf.reshape(v, [1]) if getattr(v, "shape", None) is not None
                and len(v.shape) == 0 else v for k, v in logs.items()}

    def train_step(self, data):
        logs = super().train_step(data)
        return self._rank1_logs(logs) if self._multi_worker() else logs

    def test_step(self, data):
        logs = super().test_step(data)
        return self._rank1_logs(logs) if self._multi_worker() else logs

    # --- Saving -------------------------------------------------------------
    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """Saves to `.keras` atomically: a failed save never leaves a broken file
        at `filepath` (the previous file, if any, stays intact)."""
        from kerastransfer.io import atomic_path

        filepath = str(filepath)
        if not filepath.endswith(".keras"):
            raise ValueError(
                "TransferModel.save() writes the .keras format; end the path with "
                f"'.keras'. Received: filepath={filepath!r}"
            )
        import os

        if os.path.exists(filepath) and not overwrite:
            raise FileExistsError(
                f"{filepath!r} exists. Pass overwrite=True to replace it."
            )
        with atomic_path(filepath, suffix=".keras") as tmp:
            super().save(tmp, **kwargs)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "backbone_name": self.backbone_name,
            "num_classes": self.num_classes,
            "weights": None,  # the weights live in the saved file
            "pretrained": self.pretrained,
            "input_shape": list(self.image_shape),
            "class_names": list(self.class_names),
            "task": self.task,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "hidden_units": list(self.hidden_units),
            "preprocessing": self.preprocessing_mode,
            "mixed_precision": self.mixed_precision,
            "phase_state": dict(self._phase_state),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


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
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names):
            raise ValueError(
                f"class_names must be unique. Received: class_names={class_names}"
            )
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        elif task == "regression":
            num_classes = 1
        else:
            raise ValueError(
                "Pass num_classes (or class_names) for a classification task. "
                "Received: num_classes=None"
            )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(
            f"num_classes must be an int. Received: num_classes={num_classes!r}"
        )
    minimum = 2 if task == "multiclass" else 1
    if num_classes < minimum:
        fix = (" For a yes/no problem use num_classes=2, or task='multilabel' with "
               "num_classes=1." if task == "multiclass" else "")
        raise ValueError(
            f"A {task} head needs num_classes >= {minimum}.{fix} "
            f"Received: num_classes={num_classes}"
        )
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    elif len(class_names) != num_classes and task != "regression":
        raise ValueError(
            f"class_names has {len(class_names)} names but num_classes is "
            f"{num_classes}. Pass one name per class. "
            f"Received: class_names={class_names}"
        )
    return num_classes, class_names


def _model_input_shape(model: keras.Model, input_shape):
    try:
        shape = tuple(model.input_shape[1:])
    except (AttributeError, ValueError) as error:
        raise InputShapeError(
            "The backbone model has no single defined input. Build it with "
            f"keras.Input(...) first. Received: backbone={model.name!r}"
        ) from error
    if input_shape is None:
        return shape
    given = tuple(input_shape)
    if len(given) != len(shape) or any(
        s is not None and g != s for g, s in zip(given, shape)
    ):
        raise InputShapeError(
            f"input_shape does not match the backbone's input {shape}. Pass a "
            f"matching shape or rebuild the backbone. Received: input_shape={given}"
        )
    return given


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
