"""Learning-rate schedules for phases: warmup + cosine decay, and one-cycle.

`WarmupCosineDecay` is Keras's `CosineDecay` (with its warmup arguments) under a
registered name; `OneCycle` has no Keras equivalent.

Both are `keras.optimizers.schedules.LearningRateSchedule`s registered for
serialization, so a model compiled with them saves to `.keras` and reloads. Use
them per phase: `Phase(epochs, learning_rate=WarmupCosineDecay(...))`. Each phase
builds a fresh optimizer, so the step a schedule sees restarts at 0 in every
phase: give `total_steps` as the phase's steps (`epochs * steps_per_epoch`).
"""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["WarmupCosineDecay", "WarmupLinearDecay", "OneCycle", "steps_for"]


def steps_for(num_samples: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps in `epochs` epochs of `num_samples` at `batch_size`."""
    return int(math.ceil(num_samples / batch_size)) * int(epochs)


def _check_steps(total_steps, warmup_steps=0):
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1. Received: "
                         f"total_steps={total_steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= total_steps:
        raise ValueError("warmup_steps must be an int in [0, total_steps]. "
                         f"Received: warmup_steps={warmup_steps!r}")


@keras.saving.register_keras_serializable(package="kerastransfer")
class WarmupCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Linear warmup to a peak rate, then cosine decay to a final rate.

    Keras's `CosineDecay` with its `warmup_target`/`warmup_steps` arguments,
    under kerastransfer's argument names: `initial_learning_rate` is the rate at
    step 0, `warmup_target` is `peak_learning_rate`, `decay_steps` is
    `total_steps - warmup_steps` (at least 1) and `alpha` is
    `final_learning_rate / peak_learning_rate`. The registered name
    (`kerastransfer>WarmupCosineDecay`) and the config keys are those of earlier
    versions, so saved models load.

    Args:
        peak_learning_rate: the rate reached at the end of the warmup.
        total_steps: steps of warmup plus decay; the rate stays at
            `final_learning_rate` afterwards.
        warmup_steps: steps of linear warmup. Defaults to `0`.
        initial_learning_rate: the rate at step 0 (unused without warmup).
            Defaults to `0.0`.
        final_learning_rate: the rate at `total_steps`. Defaults to `0.0`.
        name: the schedule's name. Defaults to `"warmup_cosine"`.

    Raises:
        ValueError: `total_steps`, `warmup_steps` or `peak_learning_rate` is out
            of range.

    Example:

    >>> schedule = WarmupCosineDecay(1e-3, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(10)), 6)
    0.001
    """

    def __init__(self, peak_learning_rate: float, total_steps: int,
                 warmup_steps: int = 0, initial_learning_rate: float = 0.0,
                 final_learning_rate: float = 0.0, name: str = "warmup_cosine"):
        _check_steps(total_steps, warmup_steps)
        if peak_learning_rate <= 0:
            raise ValueError("peak_learning_rate must be > 0. "
                             f"Received: peak_learning_rate={peak_learning_rate!r}")
        super().__init__(
            initial_learning_rate=float(initial_learning_rate),
            decay_steps=max(int(total_steps) - int(warmup_steps), 1),
            alpha=float(final_learning_rate) / float(peak_learning_rate),
            name=name,
            warmup_target=float(peak_learning_rate),
            warmup_steps=int(warmup_steps),
        )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.final_learning_rate = float(final_learning_rate)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kerastransfer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to a peak rate, then linear decay to a final rate
    (the BERT fine-tuning schedule; Keras's `PolynomialDecay` has no warmup).

    Args:
        peak_learning_rate: the rate reached at the end of the warmup.
        total_steps: steps of warmup plus decay; the rate stays at
            `final_learning_rate` afterwards.
        warmup_steps: steps of linear warmup. Defaults to `0`.
        final_learning_rate: the rate at `total_steps`. Defaults to `0.0`.
        name: the schedule's name. Defaults to `"warmup_linear"`.

    Example:

    >>> schedule = WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=2)
    >>> [round(float(schedule(s)), 6) for s in (1, 2, 6)]
    [0.0005, 0.001, 0.0005]
    """

    def __init__(self, peak_learning_rate: float, total_steps: int,
                 warmup_steps: int = 0, final_learning_rate: float = 0.0,
                 name: str = "warmup_linear"):
        _check_steps(total_steps, warmup_steps)
        if peak_learning_rate <= 0:
            raise ValueError("peak_learning_rate must be > 0. "
                             f"Received: peak_learning_rate={peak_learning_rate!r}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_learning_rate = float(final_learning_rate)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak, final = self.peak_learning_rate, self.final_learning_rate
        warm = max(self.warmup_steps, 1)
        decay = max(self.total_steps - self.warmup_steps, 1)
        warmup = peak * step / warm
        progress = ops.minimum((step - self.warmup_steps) / decay, 1.0)
        decayed = peak + (final - peak) * progress
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "final_learning_rate": self.final_learning_rate, "name": self.name}


@keras.saving.register_keras_serializable(package="kerastransfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy (Smith 2018), as PyTorch's `OneCycleLR` (cosine).

    The rate rises from `max_learning_rate / div_factor` to `max_learning_rate`
    over the first `pct_start` of the steps, then anneals to
    `max_learning_rate / (div_factor * final_div_factor)` at `total_steps`.

    Args:
        max_learning_rate: the peak rate.
        total_steps: steps in the cycle.
        pct_start: share of the steps spent rising. Defaults to `0.3`.
        div_factor: peak / starting rate. Defaults to `25.0`.
        final_div_factor: starting / final rate. Defaults to `1e4`.

    Example:

    >>> schedule = OneCycle(1e-2, total_steps=100)
    >>> round(float(schedule(30)), 6), round(float(schedule(0)), 6)
    (0.01, 0.0004)
    """

    def __init__(self, max_learning_rate: float, total_steps: int,
                 pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, name: str = "one_cycle"):
        _check_steps(total_steps)
        if max_learning_rate <= 0:
            raise ValueError("max_learning_rate must be > 0. "
                             f"Received: max_learning_rate={max_learning_rate!r}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError("pct_start must be in (0, 1). "
                             f"Received: pct_start={pct_start!r}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.max_learning_rate
        start = peak / self.div_factor
        final = start / self.final_div_factor
        up = max(self.pct_start * self.total_steps, 1.0)
        down = max(self.total_steps - up, 1.0)

        def cos_anneal(a, b, fraction):
            return b + 0.5 * (a - b) * (1.0 + ops.cos(math.pi * fraction))

        rising = cos_anneal(start, peak, ops.clip(step / up, 0.0, 1.0))
        falling = cos_anneal(peak, final, ops.clip((step - up) / down, 0.0, 1.0))
        return ops.where(step < up, rising, falling)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }
