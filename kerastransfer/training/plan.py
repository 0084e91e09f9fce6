"""Fine-tuning schedules: `Phase` and `PhasePlan`.

A plan is frozen head training, then unfreezing (all at once, or gradually as in
ULMFiT), each phase with its own epochs, unfreeze rule, learning rate, BatchNorm
mode and optional layer-wise learning-rate decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import keras

from kerastransfer.training.phases import Unfreeze, check_lr_decay

__all__ = ["Phase", "PhasePlan", "coerce_plan", "check_epochs"]


def check_epochs(value, name: str = "epochs") -> None:
    """Raises `ValueError` unless `value` is a whole number >= 0 (the one check)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{name} must be a whole number >= 0. Received: {name}={value!r}"
        )


@dataclass
class Phase:
    """One phase of a fine-tuning plan.

    Args:
        epochs: epochs to train in this phase.
        unfreeze: the backbone part that trains (`None` or `"none"`: frozen).
            Defaults to `None`.
        learning_rate: the phase's (head) learning rate, a float or a
            `LearningRateSchedule`; `None` keeps the compiled optimizer's rate in
            the first phase and uses a tenth of it later. Defaults to `None`.
        train_bn: train the unfrozen BatchNorm layers. Defaults to `False`.
        lr_decay: layer-wise learning-rate decay per backbone block, from the top
            (e.g. `0.5`: the top block at half the head's rate, the next at a
            quarter...). Defaults to `None` (one rate).
        name: shown in logs and in the history. Defaults to `"phase_<i>"`.
    """

    epochs: int
    unfreeze: Any = None
    learning_rate: Any = None
    train_bn: bool = False
    lr_decay: float | None = None
    name: str | None = None

    def __post_init__(self):
        check_epochs(self.epochs)
        self.unfreeze = Unfreeze.parse(self.unfreeze)
        check_lr_decay(self.lr_decay)

    def to_dict(self) -> dict:
        """A JSON-safe description (schedules by their config)."""
        data = asdict(self)
        data["unfreeze"] = self.unfreeze.to_string()
        if not isinstance(self.learning_rate, (int, float, type(None))):
            data["learning_rate"] = keras.saving.serialize_keras_object(
                self.learning_rate
            )
        return data


@dataclass
class PhasePlan:
    """An ordered list of `Phase`s.

    Example:

    >>> plan = PhasePlan.gradual(epochs_per_phase=1, num_blocks=2)
    >>> [p.unfreeze.to_string() for p in plan.phases]
    ['none', 'blocks:1', 'blocks:2']
    """

    phases: list[Phase] = field(default_factory=list)

    def __post_init__(self):
        if not self.phases:
            raise ValueError("A PhasePlan needs at least one Phase.")
        for i, phase in enumerate(self.phases):
            if not isinstance(phase, Phase):
                raise TypeError(
                    f"PhasePlan phases must be Phase objects. Received: "
                    f"phases[{i}]={phase!r}"
                )
            if phase.name is None:
                phase.name = f"phase_{i + 1}"

    @classmethod
    def two_phase(
        cls,
        epochs: int,
        fine_tune_epochs: int = 0,
        *,
        learning_rate=None,
        fine_tune_lr=None,
        unfreeze: Any = "all",
        train_bn: bool = False,
        lr_decay: float | None = None,
    ) -> PhasePlan:
        """The classic plan: train the head on a frozen backbone, then fine-tune."""
        phases = [Phase(epochs, None, learning_rate, name="frozen")]
        if fine_tune_epochs:
            phases.append(
                Phase(fine_tune_epochs, unfreeze, fine_tune_lr, train_bn, lr_decay,
                      name="fine_tune")
            )
        return cls(phases)

    @classmethod
    def gradual(
        cls,
        epochs_per_phase: int,
        num_blocks: int,
        *,
        learning_rate=None,
        fine_tune_lr=None,
        train_bn: bool = False,
        lr_decay: float | None = None,
    ) -> PhasePlan:
        """ULMFiT-style gradual unfreezing: the head first, then one more block per
        phase, from the top."""
        phases = [Phase(epochs_per_phase, None, learning_rate, name="frozen")]
        for n in range(1, num_blocks + 1):
            phases.append(
                Phase(epochs_per_phase, f"blocks:{n}", fine_tune_lr, train_bn,
                      lr_decay, name=f"unfreeze_{n}_blocks")
            )
        return cls(phases)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def boundaries(self) -> list[int]:
        """The epoch index at which each phase starts."""
        starts, epoch = [], 0
        for phase in self.phases:
            starts.append(epoch)
            epoch += phase.epochs
        return starts


def coerce_plan(plan: PhasePlan | Sequence[Phase] | None) -> PhasePlan | None:
    if plan is None or isinstance(plan, PhasePlan):
        return plan
    return PhasePlan(list(plan))
