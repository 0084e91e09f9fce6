"""The phased `fit()` loop behind `TransferModel.fit`.

Each phase sets what is trainable, builds a fresh optimizer of the compiled type
at the phase's learning rate (a `GroupedOptimizer` for layer-wise decay), and
recompiles under the model's distribution strategy, keeping the loss and
metrics; then Keras's own `fit` runs with `initial_epoch` so all phases share one
epoch axis (History, TensorBoard, ModelCheckpoint see one run).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import keras
import numpy as np

from kerastransfer.training import phases as phases_lib
from kerastransfer.errors import DataError
from kerastransfer.training.optimizers import GroupedOptimizer, scaled_learning_rate

__all__ = ["PhasedHistory", "fit_phases", "resolve_plan", "default_loss",
           "default_metrics"]

logger = logging.getLogger("kerastransfer")

DEFAULT_LEARNING_RATE = 1e-3
FINE_TUNE_FACTOR = 0.1


class PhasedHistory(keras.callbacks.History):
    """One `History` for all phases of a `fit()`.

    Attributes:
        history: metric name -> list of per-epoch values, all phases in order.
        epoch: the epoch indices.
        phases: one dict per phase that ran: `name`, `start_epoch`, `end_epoch`
            (exclusive), `unfreeze`, `train_bn`, `learning_rate`, `lr_decay`.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.phases: list[dict] = []

    @property
    def phase_boundaries(self) -> list[int]:
        """The first epoch of each phase after the first."""
        return [p["start_epoch"] for p in self.phases[1:]]

    def extend(self, history: keras.callbacks.History, phase: dict,
               start_epoch: int | None = None, validation_freq: int = 1) -> None:
        start = len(self.epoch)
        self.epoch.extend(history.epoch)
        # With validation_freq > 1 Keras records val_* only on validated epochs
        # (those with (epoch + 1) % freq == 0): put them at their epochs.
        validated = [i for i, e in enumerate(history.epoch)
                     if (e + 1) % max(1, int(validation_freq)) == 0]
        for key, values in history.history.items():
            column = self.history.setdefault(key, [None] * start)
            values = [float(v) for v in values]
            if len(values) < len(history.epoch) and len(values) == len(validated):
                aligned = [None] * len(history.epoch)
                for position, value in zip(validated, values):
                    aligned[position] = value
                values = aligned
            column.extend(values)
        for column in self.history.values():  # metrics absent in this phase
            column.extend([None] * (len(self.epoch) - len(column)))
        self.phases.append({
            **phase, "start_epoch": start if start_epoch is None else start_epoch,
            "end_epoch": len(self.epoch)})


def default_loss(model):
    """The task's loss: (sparse) categorical or binary cross-entropy, or MSE."""
    if model.task == "multilabel":
        return "binary_crossentropy"
    if model.task == "regression":
        return "mean_squared_error"
    return "sparse_categorical_crossentropy"


def default_metrics(model):
    if model.task == "multilabel":
        return [keras.metrics.BinaryAccuracy(name="accuracy")]
    if model.task == "regression":
        return [keras.metrics.MeanAbsoluteError(name="mae")]
    return ["accuracy"]


def resolve_plan(model, plan, epochs, fine_tune_epochs, learning_rate, fine_tune_lr,
                 unfreeze, train_bn, lr_decay) -> phases_lib.PhasePlan:
    """The `PhasePlan` a `fit()` call asks for."""
    plan = phases_lib.coerce_plan(plan)
    if plan is not None:
        return plan
    for arg, value in (("epochs", epochs), ("fine_tune_epochs", fine_tune_epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"{arg} must be a whole number >= 0. Received: {arg}={value!r}"
            )
    if not model.pretrained:
        # Nothing to transfer from a random backbone: train everything at once.
        logger.info("Backbone has random weights (weights=None): training all "
                    "layers in one phase.")
        return phases_lib.PhasePlan([phases_lib.Phase(
            epochs + fine_tune_epochs, "all", learning_rate, train_bn=True,
            name="from_scratch",
        )])
    return phases_lib.PhasePlan.two_phase(
        epochs, fine_tune_epochs, learning_rate=learning_rate,
        fine_tune_lr=fine_tune_lr, unfreeze=unfreeze, train_bn=train_bn,
        lr_decay=lr_decay,
    )


def _template_optimizer(model) -> keras.optimizers.Optimizer:
    compiled = model._user_compile or {}
    optimizer = compiled.get("optimizer", "adam")
    if isinstance(optimizer, GroupedOptimizer):
        optimizer = optimizer.base_optimizer
    return keras.optimizers.get(optimizer)


def _base_learning_rate(template: keras.optimizers.Optimizer):
    rate = template._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return rate
    # The optimizer stores float32: round away the float32 noise (1e-3, not
    # 0.0010000000474974513).
    return float(f"{float(keras.ops.convert_to_numpy(rate)):.7g}")


def _phase_learning_rate(phase, index, base):
    if phase.learning_rate is not None:
        return phase.learning_rate
    return base if index == 0 else scaled_learning_rate(base, FINE_TUNE_FACTOR)


def _build_optimizer(model, template, learning_rate, lr_decay):
    config = template.get_config()
    config["learning_rate"] = keras.saving.serialize_keras_object(learning_rate)
    optimizer = template.__class__.from_config(config)
    if lr_decay is None or lr_decay == 1.0:
        return optimizer
    multipliers, groups = phases_lib.learning_rate_groups(model, lr_decay)
    return GroupedOptimizer(optimizer, multipliers, groups)


def _fresh_metrics(metrics):
    if metrics is None:
        return None

    def fresh(metric):
        if isinstance(metric, keras.metrics.Metric):
            return metric.__class__.from_config(metric.get_config())
        return metric

    if isinstance(metrics, dict):
        return {k: fresh(v) for k, v in metrics.items()}
    return [fresh(m) for m in metrics]


def compile_for_phase(model, learning_rate, lr_decay) -> None:
    """Recompiles `model` for the current trainable set (same loss/metrics/type)."""
    compiled = dict(model._user_compile or {})
    template = _template_optimizer(model)
    compiled["optimizer"] = _build_optimizer(model, template, learning_rate, lr_decay)
    compiled["metrics"] = _fresh_metrics(compiled.get("metrics"))
    user = model._user_compile
    model.compile(**compiled)
    model._user_compile = user or {"optimizer": template}


def _strategy_scope(model):
    return model.strategy.scope() if model.strategy is not None else (
        contextlib.nullcontext()
    )


def check_arrays(model, x, y) -> None:
    """Clear errors for numpy inputs that Keras would reject deep inside."""
    if not isinstance(x, np.ndarray):
        return
    if model.input_dtype_name == "string":
        return
    expected = model.image_shape
    if x.ndim != len(expected) + 1 or any(
        e is not None and a != e for a, e in zip(x.shape[1:], expected)
    ):
        raise DataError(
            f"Images must have shape (batch, {', '.join(map(str, expected))}) for "
            f"this model. Resize them, or build the model with input_shape="
            f"{tuple(x.shape[1:])}. Received: x.shape={x.shape}"
        )
    if len(x) == 0:
        raise DataError("The training data is empty. Received: x.shape="
                        f"{x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(
            "Images must be real numbers (RGB values in [0, 255]). Decode or "
            f"convert them first. Received: x.dtype={x.dtype}"
        )
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(
            "The images contain NaN or Inf values, which would make the loss NaN. "
            "Clean or drop those images. Received: "
            f"{int(np.size(x) - np.isfinite(x).sum())} non-finite values"
        )
    if y is None:
        return
    y = np.asarray(y)
    if len(y) != len(x):
        raise DataError(
            f"x and y must have one label per image. Received: {len(x)} images "
            f"and {len(y)} labels"
        )
    if model.task == "multiclass" and y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise DataError(
                    "Multiclass labels must be integer class indices (or one-hot "
                    f"rows). Received: y.dtype={y.dtype}"
                )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= model.num_classes:
            raise DataError(
                f"Labels must be in [0, {model.num_classes - 1}] for "
                f"num_classes={model.num_classes}. Fix the labels or build the "
                f"model with more classes. Received: labels in [{low}, {high}]"
            )
        if low == high and len(y) > 1:
            raise DataError(
                f"The labels contain only one class ({low}): a classifier needs "
                "examples of at least two classes to learn anything. Add images "
                f"of the other classes. Received: {len(y)} labels, all {low}"
            )


def _labels_are_one_hot(model, y) -> bool:
    if isinstance(y, np.ndarray):
        return model.task == "multiclass" and y.ndim == 2 and y.shape[1] > 1
    return False


class _PhaseAnnouncer(keras.callbacks.Callback):
    def __init__(self, text: str, verbose: bool):
        super().__init__()
        self.text = text
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        logger.info(self.text)
        if self.verbose:
            # keras.utils has no io_utils in Keras 3: Keras's own printer lives here.
            keras.src.utils.io_utils.print_msg(self.text)


def fit_phases(model, plan: phases_lib.PhasePlan, x=None, y=None, *,
               checkpoint_dir=None,
               callbacks=None, verbose: Any = "auto", cache_features=False,
               report_dir=None, augmentation=None, precise_bn: bool = True,
               **fit_kwargs) -> PhasedHistory:
    """Runs every phase of `plan` on `model` and returns one `PhasedHistory`."""
    from kerastransfer import data as data_lib
    from kerastransfer.training import features as features_lib

    raw_images = x  # before augmentation: what BatchNorm statistics should see
    x, y, fit_kwargs = data_lib.prepare_fit_inputs(
        model, x, y, augmentation=augmentation, **fit_kwargs)
    check_arrays(model, x, y)
    if model._user_compile is None:
        model._user_compile = {"optimizer": "adam"}
    if model._user_compile.get("loss") is None and _labels_are_one_hot(model, y):
        model._user_compile["loss"] = "categorical_crossentropy"
    template = _template_optimizer(model)
    base = _base_learning_rate(template)
    from kerastransfer.training import checkpoint as checkpoint_lib

    # Resume state, NaN guard, seeded per-epoch data order (checkpoint.py).
    run = checkpoint_lib.CheckpointRun(model, plan, checkpoint_dir)
    x, y, fit_kwargs = run.prepare_data(x, y, fit_kwargs)
    history = run.history()
    callbacks = list(callbacks or [])
    epoch = 0
    active = [p for p in plan.phases if p.epochs > 0]
    for index, phase in enumerate(plan.phases):
        if phase.epochs == 0:
            continue
        position = run.phase_position(index)  # None, or resuming this phase
        if position and position[0] == "skip" and not (
                run.finished and phase is active[-1]):
            continue
        rate = _phase_learning_rate(phase, index, base)
        with _strategy_scope(model):
            if phase.unfreeze.kind == "none":
                model.freeze_backbone()
            else:
                model.unfreeze(phase.unfreeze, train_bn=phase.train_bn)
            compile_for_phase(model, rate, phase.lr_decay)
            if position is not None:
                run.restore()  # weights + optimizer state, inside the scope
        initial_epoch = epoch
        if run.finished:  # a rerun of a finished fit: no training
            break
        if position is not None:
            epoch, initial_epoch = position[1], position[2]
        number = active.index(phase) + 1
        shown_rate = rate if isinstance(rate, float) else type(rate).__name__
        text = (f"Phase {number}/{len(active)} '{phase.name}': backbone "
                f"{phase.unfreeze.to_string() if phase.unfreeze.kind != 'none' else 'frozen'}"
                f", learning rate {shown_rate}"
                + (f", layer-wise decay {phase.lr_decay}" if phase.lr_decay else ""))
        show = verbose not in (0, False)
        first, last = run.callbacks(
            index, epoch, f"phase {number}/{len(active)} '{phase.name}'", shown_rate)
        if precise_bn and phase.train_bn and model.strategy is None:
            from kerastransfer.training.batchnorm import PreciseBatchNorm

            last = [*last, PreciseBatchNorm(raw_images)]
        result, cached = features_lib.run_phase(
            model, x, y, cache_features=cache_features, augmentation=augmentation,
            epochs=epoch + phase.epochs, initial_epoch=initial_epoch,
            callbacks=[*first, _PhaseAnnouncer(text, show), *callbacks, *last],
            verbose=verbose, fit_kwargs=fit_kwargs,
        )
        run.raise_if_diverged()
        recalibrated = 0
        if precise_bn and phase.train_bn and model.strategy is None:
            # EMA statistics lag after few steps (DESIGN.md fact 2): recompute them
            # (also before each validation, by the PreciseBatchNorm callback).
            from kerastransfer.training.batchnorm import recalibrate_batchnorm

            recalibrated = recalibrate_batchnorm(model, raw_images)
        history.extend(result, {
            "name": phase.name,
            "unfreeze": phase.unfreeze.to_string(),
            "train_bn": phase.train_bn,
            "learning_rate": rate if isinstance(rate, float) else
            keras.saving.serialize_keras_object(rate),
            "lr_decay": phase.lr_decay,
            "cached_features": cached,
            "precise_bn_images": recalibrated,
        }, start_epoch=epoch, validation_freq=fit_kwargs.get("validation_freq", 1))
        epoch = len(history.epoch)
        run.end_phase(index, history.phases[-1], epoch, last=phase is active[-1])
    history.set_model(model)
    model.history = history
    if report_dir is not None:
        from kerastransfer import report as report_lib

        report_lib.write_report(model, history, fit_kwargs.get("validation_data"),
                                report_dir)
    return history
