"""How a task compiles: the user's arguments kept, and reused in every phase.

`TransferTask` mixes this in. `compile()` records the user's optimizer, loss,
metrics and other arguments; every phase of `fit()` recompiles with a fresh
optimizer of the same type and settings (`_template_optimizer`), the same loss and
fresh metric objects (`_compile_for_phase`), and a head trained alone on cached
features shares that optimizer (`_compile_head`). A task's `default_loss()` and
`default_metrics()` fill in what the user left out.
"""

from __future__ import annotations

import contextlib

import keras

__all__ = ["CompileArguments", "PhaseCompiling"]


class CompileArguments:
    """A holder Keras's saving does not look into (see `compile_arguments`)."""

    def __init__(self):
        self.arguments: dict | None = None


class PhaseCompiling:
    """The compile behaviour of `TransferTask` (a mixin before `keras.Model`)."""

    # A method, not a property, and a plain holder object: Keras's saving walks a
    # model's attributes and properties for optimizers and metrics (in dicts and
    # lists too), and would save, then on load restore into the real optimizer,
    # the template optimizer kept here (its step count came back as 0).
    def compile_arguments(self) -> dict:
        """The arguments of the user's last `compile()` (empty if never called)."""
        return dict(self._compile_holder.arguments or {})

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`; `loss` and `metrics` default to the task's.
        `fit()` keeps the optimizer type, loss and metrics in every phase."""
        self._compile_holder.arguments = dict(optimizer=optimizer, loss=loss,
                                       metrics=metrics, **kwargs)
        self._compile_keras(optimizer, loss, metrics, **kwargs)

    def _compile_keras(self, optimizer, loss=None, metrics=None, **kwargs):
        scope = (self.strategy.scope() if self.strategy is not None
                 else contextlib.nullcontext())
        with scope:
            super().compile(
                optimizer=optimizer,
                loss=loss if loss is not None else self.default_loss(),
                metrics=metrics if metrics is not None else self.default_metrics(),
                **kwargs,
            )

    def compile_from_config(self, config):
        """Restores the training configuration saved in a `.keras` file."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def _training_loss(self):
        """The loss the phases train with: the user's, else the task's."""
        return self.compile_arguments().get("loss") or self.default_loss()

    def _use_loss_if_unset(self, loss) -> None:
        """Sets the loss for later phases unless the user chose one."""
        arguments = self._compile_holder.arguments or {"optimizer": "adam"}
        if arguments.get("loss") is None:
            arguments["loss"] = loss
        self._compile_holder.arguments = arguments

    def _template_optimizer(self) -> keras.optimizers.Optimizer:
        """A fresh optimizer of the user's type and settings (one per phase)."""
        from kerastransfer.training.optimizers import GroupedOptimizer

        optimizer = self.compile_arguments().get("optimizer", "adam")
        if isinstance(optimizer, GroupedOptimizer):
            optimizer = optimizer.base_optimizer
        return keras.optimizers.get(optimizer)

    def _compile_for_phase(self, optimizer) -> None:
        """Recompiles with `optimizer` and the user's loss/metrics (fresh metric
        objects), keeping the user's compile arguments for the next phase."""
        from kerastransfer.training.loop import fresh_metrics

        arguments = dict(self._compile_holder.arguments or {"optimizer": "adam"})
        extra = {k: v for k, v in arguments.items()
                 if k not in ("optimizer", "loss", "metrics")}
        self._compile_keras(optimizer, arguments.get("loss"),
                            fresh_metrics(arguments.get("metrics")), **extra)
        if self._compile_holder.arguments is None:
            self._compile_holder.arguments = {"optimizer": self._template_optimizer()}

    def _compile_head(self, head: keras.Model) -> None:
        """Compiles a `head_model()` like this model, sharing its optimizer."""
        from kerastransfer.training.loop import fresh_metrics

        arguments = self.compile_arguments()
        extra = {k: v for k, v in arguments.items()
                 if k not in ("optimizer", "loss", "metrics")}
        metrics = fresh_metrics(arguments.get("metrics"))
        head.compile(optimizer=self.optimizer, loss=self._training_loss(),
                     metrics=metrics if metrics is not None
                     else self.default_metrics(), **extra)
