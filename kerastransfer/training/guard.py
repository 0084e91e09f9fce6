"""The NaN guard: stop at the first non-finite loss, keep the last good weights.

`DivergenceGuard` stops training at the first NaN/Inf loss, restores the weights
of the last good epoch end *before* any other callback's `on_epoch_end` runs (so a
`ModelCheckpoint` never saves NaN weights), and the phased `fit` raises
`TrainingDivergedError` naming the phase, epoch, batch and learning rate.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from kerastransfer.errors import TrainingDivergedError

__all__ = ["DivergenceGuard", "finite"]


def finite(arrays) -> bool:
    """Whether every floating-point array in `arrays` is free of NaN/Inf."""
    for array in arrays:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            return False
    return True



class DivergenceGuard(keras.callbacks.Callback):
    """Stops at the first NaN/Inf loss and restores the last good weights.

    It must run before other callbacks (fit puts it first): the weights are
    restored inside `on_train_batch_end`, so callbacks that save at
    `on_epoch_end` (ModelCheckpoint, the resume checkpoint) only ever see good
    weights. `fit` then raises `TrainingDivergedError` (see `raise_if_diverged`).

    Args:
        phase_text: how the phase is named in the error, e.g. "phase 2/2
            'fine_tune'".
        learning_rate: the phase's learning rate, for the error message.
    """

    def __init__(self, phase_text: str, learning_rate: Any):
        super().__init__()
        self.phase_text = phase_text
        self.learning_rate = learning_rate
        self.diverged: dict | None = None
        self._good: list | None = None
        self._good_epoch: int | None = None
        self._epoch = 0
        self._variables: list = []

    def _snapshot(self, epoch):
        values = [v.numpy() for v in self._variables]
        if finite(values):
            self._good, self._good_epoch = values, epoch

    def on_train_begin(self, logs=None):
        from kerastransfer.training.phases import iter_layers

        self._good = None
        # Only what this phase can change: a frozen layer's weights (BatchNorm
        # statistics included, frozen layers run in inference mode) stay as
        # they are. Copying every weight of a frozen backbone at each epoch end
        # cost more than a cached frozen epoch itself (docs/design.md, fact 29).
        frozen = {id(v) for layer in iter_layers(self.model, include_self=False)
                  if not layer.trainable for v in layer.variables}
        self._variables = [v for v in self.model.variables if id(v) not in frozen]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._good is None:  # the weights this phase (or resume) starts from
            self._snapshot(epoch - 1)

    def on_train_batch_end(self, batch, logs=None):
        if self.diverged is not None or not logs or "loss" not in logs:
            return
        loss = float(np.asarray(logs["loss"]))
        if math.isfinite(loss):
            return
        self.diverged = {"epoch": self._epoch, "batch": batch, "loss": loss}
        self.model.stop_training = True
        if self._good is not None:
            for variable, value in zip(self._variables, self._good, strict=True):
                variable.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is None:
            self._snapshot(epoch)

    def raise_if_diverged(self) -> None:
        """Raises `TrainingDivergedError` if this phase's loss became NaN/Inf."""
        if self.diverged is None:
            return
        info = self.diverged
        restored = ("the start of training" if self._good_epoch in (None, -1)
                    else f"the end of epoch {self._good_epoch + 1}")
        raise TrainingDivergedError(
            f"Training diverged: the loss became {info['loss']} in {self.phase_text} "
            f"at epoch {info['epoch'] + 1} (batch {info['batch'] + 1}). The "
            f"learning rate ({self.learning_rate}) is probably too high, or the "
            f"inputs or labels contain NaN/Inf or badly scaled values: lower "
            f"learning_rate / fine_tune_lr, or check the data. The weights were "
            f"restored to {restored}; no NaN weights were saved. Received: "
            f"loss={info['loss']}, learning_rate={self.learning_rate}"
        )
