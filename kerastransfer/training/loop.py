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
import sys
from typing import Any

import keras
import numpy as np

from kerastransfer.training import phases as phases_lib
from kerastransfer.training import plan as plan_lib
from kerastransfer.training.optimizers import (
    GroupedOptimizer,
    base_learning_rate,
    scaled_learning_rate,
)

__all__ = ["PhasedHistory", "fit_phases", "resolve_plan", "compile_for_phase",
           "fresh_metrics", "check_arrays"]

logger = logging.getLogger("kerastransfer")

DEFAULT_LEARNING_RATE = 1e-3
FINE_TUNE_FACTOR = 0.1
HEAD_SOLVERS = ("auto", "epochs", "linear_probe")


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
                for position, value in zip(validated, values, strict=True):
                    aligned[position] = value
                values = aligned
            column.extend(values)
        for column in self.history.values():  # metrics absent in this phase
            column.extend([None] * (len(self.epoch) - len(column)))
        self.phases.append({
            **phase, "start_epoch": start if start_epoch is None else start_epoch,
            "end_epoch": len(self.epoch)})


def resolve_plan(model, plan, epochs, fine_tune_epochs, learning_rate, fine_tune_lr,
                 unfreeze, train_bn, lr_decay) -> plan_lib.PhasePlan:
    """The `PhasePlan` a `fit()` call asks for."""
    plan = plan_lib.coerce_plan(plan)
    if plan is not None:
        return plan
    plan_lib.check_epochs(epochs)
    plan_lib.check_epochs(fine_tune_epochs, "fine_tune_epochs")
    if not model.pretrained:
        # Nothing to transfer from a random backbone: train everything at once.
        logger.info("Backbone has random weights (weights=None): training all "
                    "layers in one phase.")
        return plan_lib.PhasePlan([plan_lib.Phase(
            epochs + fine_tune_epochs, "all", learning_rate, train_bn=True,
            name="from_scratch",
        )])
    if fine_tune_lr is None and learning_rate is not None:
        # "a tenth of learning_rate", not of the optimizer's own rate
        fine_tune_lr = scaled_learning_rate(learning_rate, FINE_TUNE_FACTOR)
    return plan_lib.PhasePlan.two_phase(
        epochs, fine_tune_epochs, learning_rate=learning_rate,
        fine_tune_lr=fine_tune_lr, unfreeze=unfreeze, train_bn=train_bn,
        lr_decay=lr_decay,
    )


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


def fresh_metrics(metrics):
    """New metric objects with the same configuration (one set per compile)."""
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
    optimizer = _build_optimizer(model, model._template_optimizer(), learning_rate,
                                 lr_decay)
    model._compile_for_phase(optimizer)


def _strategy_scope(model):
    return model.strategy.scope() if model.strategy is not None else (
        contextlib.nullcontext()
    )


def check_arrays(model, x, y) -> None:
    """Clear errors for numpy inputs and labels that Keras would reject deep
    inside: the shared input checks, then the task's label checks."""
    from kerastransfer.data.checks import check_inputs

    if model.input_dtype_name == "string":
        return
    check_inputs(x, y, shape=tuple(model.input_shape[1:]))
    if isinstance(x, np.ndarray) and y is not None:
        model._check_labels(y)


def _trains_batchnorm(model) -> bool:
    """Whether the phase about to run trains some BatchNorm layer (after the
    phase's freeze/unfreeze)."""
    from kerastransfer.training.batchnorm import batchnorm_layers

    return bool(batchnorm_layers(model, "trainable"))


def _labels_are_one_hot(model, y) -> bool:
    if isinstance(y, np.ndarray):
        return model.task == "multiclass" and y.ndim == 2 and y.shape[1] > 1
    return False


class _RetracingFilter(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warnings: every phase
    recompiles (a new train function by design), and a second model trained in
    the same process retraces too; neither is something the user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def quiet_retracing():
    """Installs `_RetracingFilter` on TensorFlow's logger while training."""
    tf_logger = logging.getLogger("tensorflow")
    quiet = _RetracingFilter()
    tf_logger.addFilter(quiet)
    try:
        yield
    finally:
        tf_logger.removeFilter(quiet)


class _PhaseAnnouncer(keras.callbacks.Callback):
    def __init__(self, text: str, verbose: bool):
        super().__init__()
        self.text = text
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        if self.verbose and keras.config.is_interactive_logging_enabled():
            # Beside Keras's progress bars, on the same stream.
            sys.stdout.write(self.text + "\n")
            sys.stdout.flush()
        else:
            logger.info(self.text)


def fit_phases(model, plan: plan_lib.PhasePlan, x=None, y=None, **kwargs
               ) -> PhasedHistory:
    """Runs every phase of `plan` on `model` and returns one `PhasedHistory`."""
    with quiet_retracing():
        return _fit_phases(model, plan, x, y, **kwargs)


def _fit_phases(model, plan: plan_lib.PhasePlan, x=None, y=None, *,
               checkpoint_dir=None,
               callbacks=None, verbose: Any = "auto", cache_features=False,
               report_dir=None, augmentation=None, precise_bn: bool = True,
               head: str = "auto", unlabelled=None, **fit_kwargs) -> PhasedHistory:
    from kerastransfer import data as data_lib
    from kerastransfer.training import features as features_lib

    if head not in HEAD_SOLVERS:
        raise ValueError(
            f"head must be one of {HEAD_SOLVERS}. Received: head={head!r}")
    # Self-training is asked for by name, not by head="auto".
    if unlabelled is not None and head != "linear_probe":
        raise ValueError(
            "`unlabelled` images self-train the linear probe of a frozen phase; "
            "pass head='linear_probe' with them, or drop them. "
            f"Received: head={head!r}")
    if head == "auto":  # the linear probe for small image data (the task decides)
        head = model._auto_head(x, augmentation=augmentation)

    # Before augmentation: the images BatchNorm statistics should see.
    raw_images = x.train if isinstance(x, data_lib.ImageData) else x
    x, y, fit_kwargs = data_lib.prepare_fit_inputs(
        model, x, y, augmentation=augmentation, **fit_kwargs)
    check_arrays(model, x, y)
    if _labels_are_one_hot(model, y):
        model._use_loss_if_unset("categorical_crossentropy")
    template = model._template_optimizer()
    base = base_learning_rate(template)
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
        frozen = phase.unfreeze.kind == "none"
        text = (f"Phase {number}/{len(active)} '{phase.name}': backbone "
                f"{'frozen' if frozen else phase.unfreeze.to_string()}"
                f", learning rate {shown_rate}"
                + (f", layer-wise decay {phase.lr_decay}" if phase.lr_decay else ""))
        show = verbose not in (0, False)
        first, last = run.callbacks(
            index, epoch, f"phase {number}/{len(active)} '{phase.name}'", shown_rate)
        # Any BatchNorm this phase trains: the backbone's with train_bn, and a
        # head's own in every phase (the segmentation decoder's), whose EMA
        # statistics lag just the same.
        recalibrate = (precise_bn and model.strategy is None
                       and _trains_batchnorm(model))
        if recalibrate:
            from kerastransfer.training.batchnorm import PreciseBatchNorm

            last = [*last, PreciseBatchNorm(raw_images)]
        result, cached = features_lib.run_phase(
            model, x, y, cache_features=cache_features, augmentation=augmentation,
            epochs=epoch + phase.epochs, initial_epoch=initial_epoch,
            callbacks=[*first, _PhaseAnnouncer(text, show), *callbacks, *last],
            verbose=verbose, fit_kwargs=fit_kwargs,
            linear_probe=head == "linear_probe" and frozen,
            unlabelled=unlabelled,
        )
        run.raise_if_diverged()
        if head == "linear_probe" and frozen:
            # The solver ran no Keras epoch: record its one epoch for resuming.
            run.record_epoch(initial_epoch, {k: v[-1] for k, v in
                                             result.history.items()})
        recalibrated = 0
        if recalibrate:
            # EMA statistics lag after few steps (docs/design.md, fact 2): recompute
            # them (also before each validation, by the PreciseBatchNorm callback).
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
            "head": head if frozen else None,  # what head="auto" chose
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
