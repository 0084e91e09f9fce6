"""Resumable, divergence-safe phased training.

`TransferModel.fit(..., checkpoint_dir=...)` writes one checkpoint file,
`<checkpoint_dir>/checkpoint.npz`, atomically at the end of every epoch (and at the
end of every phase). It holds everything a resumed run needs:

* every model variable (weights, BatchNorm statistics, dropout RNG states);
* every optimizer variable, including a `GroupedOptimizer`'s sub-optimizers and a
  `LossScaleOptimizer`'s inner optimizer — so the iteration count (the position of
  a learning-rate schedule) and Adam's moments resume exactly;
* the phase being trained, where it started, the next epoch, the seed of the
  per-epoch data order, the per-epoch History so far, and whether training
  finished.

Running the same `fit()` again with the same `checkpoint_dir` resumes: finished
phases are skipped, the current phase's unfreeze rule and recompile are applied
again, the weights and optimizer state are restored, and Keras's `fit` continues
with `initial_epoch` at the next epoch. After the last phase the checkpoint is
marked finished: a rerun restores the final weights and returns the stored history
without training.

NumPy training data is fed in an order drawn from `(seed, epoch)`
(`data_order.SeededArrayDataset`), so a resumed run sees the same batches as an
uninterrupted one. A `tf.data.Dataset` is used as given: make its order
deterministic yourself.

The NaN guard (`guard.DivergenceGuard`) runs first in every phase; a checkpoint is
never written from non-finite weights.
"""

from __future__ import annotations

import io as _io
import json
import logging
import os

import keras
import numpy as np

from kerastransfer.errors import CheckpointError
from kerastransfer.io import atomic_write_bytes
from kerastransfer.training.data_order import EpochSetter, SeededArrayDataset
from kerastransfer.training.guard import DivergenceGuard, finite

__all__ = ["CheckpointRun", "DivergenceGuard", "SeededArrayDataset",
           "CHECKPOINT_FILE", "read_checkpoint_state"]

logger = logging.getLogger("kerastransfer")

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT_VERSION = 1


def _optimizer_variables(model) -> list:
    optimizer = getattr(model, "optimizer", None)
    return list(optimizer.variables) if optimizer is not None else []


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def read_checkpoint_state(checkpoint_dir: str | os.PathLike) -> dict | None:
    """Returns the JSON state of the checkpoint in `checkpoint_dir`, or None.

    Args:
        checkpoint_dir: the folder given to `fit(checkpoint_dir=...)`.

    Returns:
        A dict with `phase_index`, `phase_start`, `next_epoch`, `finished`,
        `seed`, `epoch_logs` (one dict per completed epoch) and `phases`; None if
        there is no checkpoint yet.

    Raises:
        CheckpointError: the checkpoint file is corrupt.
    """
    path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["state"]))
    except Exception as error:  # noqa: BLE001 -- any reader error means corrupt
        raise CheckpointError(
            f"The training checkpoint is corrupt or unreadable ({type(error).__name__}"
            f": {error}). Delete it to start over, or pass another checkpoint_dir. "
            f"Received: path={path!r}"
        ) from error


class _CheckpointSaver(keras.callbacks.Callback):
    def __init__(self, run: CheckpointRun, phase_index: int, phase_start: int):
        super().__init__()
        self.run = run
        self.phase_index = phase_index
        self.phase_start = phase_start

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.run.guard_diverged():
            return
        self.run.record_epoch(epoch, logs)
        self.run.save(phase_index=self.phase_index, phase_start=self.phase_start,
                      next_epoch=epoch + 1)


class CheckpointRun:
    """The resume state of one `fit()` call with `checkpoint_dir`.

    Args:
        model: the task (`TransferModel`, ...).
        plan: the `PhasePlan`.
        checkpoint_dir: the folder for `checkpoint.npz` (created if missing), or
            None for no checkpointing (divergence is still caught).
        seed: the seed of the per-epoch data order on a fresh start. Defaults to
            `None` (drawn from NumPy's global generator, so seeded by
            `keras.utils.set_random_seed`).

    Raises:
        CheckpointError: the folder cannot be created or written, the checkpoint
            is corrupt, or it was written by a different model or plan.
    """

    def __init__(self, model, plan, checkpoint_dir=None, seed: int | None = None):
        self.model = model
        self.plan = plan
        self.dir = os.fspath(checkpoint_dir) if checkpoint_dir is not None else None
        self.guards: list[DivergenceGuard] = []
        self._data_callbacks: list = []
        self.fingerprint = {
            **model._checkpoint_identity(),
            "phases": [
                {"epochs": p.epochs, "unfreeze": p.unfreeze.to_string(),
                 "train_bn": p.train_bn, "lr_decay": p.lr_decay}
                for p in plan.phases
            ],
        }
        self.state = None
        if self.dir is not None:
            if os.path.exists(self.dir) and not os.path.isdir(self.dir):
                raise CheckpointError(
                    "checkpoint_dir must be a folder. Pass a folder path. "
                    f"Received: checkpoint_dir={self.dir!r}"
                )
            try:
                os.makedirs(self.dir, exist_ok=True)
            except OSError as error:
                raise CheckpointError(
                    f"Cannot create the checkpoint folder ({error.strerror}). Pass a "
                    f"writable checkpoint_dir. Received: checkpoint_dir={self.dir!r}"
                ) from error
            if not os.access(self.dir, os.W_OK):
                raise CheckpointError(
                    "The checkpoint folder is not writable. Pass a writable "
                    f"checkpoint_dir. Received: checkpoint_dir={self.dir!r}"
                )
            self.state = read_checkpoint_state(self.dir)
        self.resume_state = self.state  # what this fit() call started from
        if self.state is not None:
            stored = self.state.get("fingerprint")
            if stored != self.fingerprint:
                raise CheckpointError(
                    "The checkpoint in checkpoint_dir was written by a different "
                    "model or training plan, so it cannot be resumed. Use a new "
                    "checkpoint_dir (or delete the old one) to start over. "
                    f"Received: checkpoint_dir={self.dir!r}, stored={stored}, "
                    f"current={self.fingerprint}"
                )
            self.seed = int(self.state["seed"])
            self.epoch_logs = list(self.state["epoch_logs"])
            self.phases = list(self.state["phases"])
            logger.info(
                "Resuming from %s: phase %d, epoch %d%s.", self.dir,
                self.state["phase_index"] + 1, self.state["next_epoch"] + 1,
                " (finished)" if self.state["finished"] else "")
        else:
            self.seed = int(seed) if seed is not None else int(
                np.random.randint(0, 2**31 - 1))
            self.epoch_logs, self.phases = [], []

    # --- state ----------------------------------------------------------------
    @property
    def resuming(self) -> bool:
        return self.resume_state is not None

    @property
    def finished(self) -> bool:
        """The checkpoint this fit() call started from was already finished."""
        return bool(self.resume_state and self.resume_state.get("finished"))

    def phase_position(self, index: int) -> tuple[str, int, int] | None:
        """How to run plan phase `index`: ("skip"|"run", phase_start, initial_epoch)."""
        state = self.resume_state
        if state is None:
            return None
        current = state["phase_index"]
        if index < current:
            return ("skip", 0, 0)
        if index == current:
            return ("run", state["phase_start"], state["next_epoch"])
        return None

    def history(self):
        """A `PhasedHistory` holding the stored epochs and finished phases."""
        from kerastransfer.training.loop import PhasedHistory

        history = PhasedHistory()
        history.epoch = list(range(len(self.epoch_logs)))
        keys: list[str] = []
        for logs in self.epoch_logs:
            keys.extend(k for k in logs if k not in keys)
        history.history = {k: [logs.get(k) for logs in self.epoch_logs] for k in keys}
        history.phases = [dict(p) for p in self.phases]
        return history

    # --- callbacks --------------------------------------------------------------
    def callbacks(self, phase_index: int, phase_start: int, phase_text: str,
                  learning_rate) -> tuple[list, list]:
        """(callbacks to run first, callbacks to run last) for one phase."""
        guard = DivergenceGuard(phase_text, learning_rate)
        self.guards.append(guard)
        first = [*self._data_callbacks, guard]
        from kerastransfer.training import distribute

        strategy = getattr(self.model, "strategy", None)
        if distribute.is_multi_worker(strategy):
            # Same BN statistics on every worker before anything is saved.
            first.append(distribute.SyncNonTrainableVariables(strategy))
        last = []
        if self.dir is not None:
            last.append(_CheckpointSaver(self, phase_index, phase_start))
        return first, last

    def guard_diverged(self) -> bool:
        return bool(self.guards and self.guards[-1].diverged is not None)

    def raise_if_diverged(self) -> None:
        if self.guards:
            self.guards[-1].raise_if_diverged()

    # --- data -----------------------------------------------------------------
    def prepare_data(self, x, y, fit_kwargs: dict):
        """Wraps NumPy arrays in a `SeededArrayDataset` (deterministic per-epoch
        order) when checkpointing; returns (x, y, fit_kwargs)."""
        if self.dir is None or not isinstance(x, np.ndarray) or (
            y is not None and not isinstance(y, np.ndarray)
        ):
            return x, y, fit_kwargs
        kwargs = dict(fit_kwargs)
        if kwargs.get("validation_split"):
            split = float(kwargs.pop("validation_split"))
            cut = int(len(x) * (1.0 - split))
            if kwargs.get("validation_data") is None:
                kwargs["validation_data"] = (x[cut:], y[cut:]) if y is not None \
                    else x[cut:]
            x, y = x[:cut], (y[:cut] if y is not None else None)
        sample_weight = kwargs.pop("sample_weight", None)
        dataset = SeededArrayDataset(
            x, y, batch_size=kwargs.pop("batch_size", None) or 32, seed=self.seed,
            shuffle=kwargs.pop("shuffle", True) is not False,
            sample_weight=None if sample_weight is None else np.asarray(sample_weight),
        )
        kwargs["shuffle"] = False  # Keras would reorder the batches at random
        self._data_callbacks = [EpochSetter(dataset)]
        return dataset, None, kwargs

    # --- saving and restoring ---------------------------------------------------
    def record_epoch(self, epoch: int, logs: dict | None) -> None:
        """Stores the scalar logs of `epoch` (replacing any later ones)."""
        entry = {k: float(np.asarray(v)) for k, v in (logs or {}).items()
                 if np.asarray(v).size == 1}
        del self.epoch_logs[epoch:]
        self.epoch_logs.append(entry)

    def end_phase(self, phase_index: int, record: dict, next_epoch: int,
                  last: bool) -> None:
        """Records a finished phase (and, after the last one, the whole run)."""
        self.phases.append(record)
        if self.dir is not None:
            self.save(phase_index=phase_index + 1, phase_start=next_epoch,
                      next_epoch=next_epoch, finished=last)

    def save(self, *, phase_index: int, phase_start: int, next_epoch: int,
             finished: bool = False) -> bool:
        """Writes the checkpoint atomically; refuses non-finite weights."""
        model_values = [v.numpy() for v in self.model.variables]
        optimizer_values = [v.numpy() for v in _optimizer_variables(self.model)]
        if not finite(model_values):
            logger.warning("Not writing a checkpoint: the weights contain NaN/Inf.")
            return False
        state = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "phase_index": phase_index,
            "phase_start": phase_start,
            "next_epoch": next_epoch,
            "finished": finished,
            "seed": self.seed,
            "epoch_logs": self.epoch_logs,
            "phases": self.phases,
            "num_optimizer_variables": len(optimizer_values),
        }
        arrays = {"state": np.array(json.dumps(state, default=_json_default))}
        arrays.update({f"m{i}": v for i, v in enumerate(model_values)})
        arrays.update({f"o{i}": v for i, v in enumerate(optimizer_values)})
        buffer = _io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(os.path.join(self.dir, CHECKPOINT_FILE), buffer.getvalue())
        self.state = state
        return True

    def restore(self) -> None:
        """Loads the stored model and optimizer variables into the compiled model.

        Raises:
            CheckpointError: the stored variables do not fit the model.
        """
        path = os.path.join(self.dir, CHECKPOINT_FILE)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        with np.load(path, allow_pickle=False) as data:
            targets = [("m", self.model.variables),
                       ("o", _optimizer_variables(self.model))]
            for prefix, variables in targets:
                stored = sorted((k for k in data.files if k.startswith(prefix)),
                                key=lambda k: int(k[1:]))
                if prefix == "o" and len(stored) != len(variables):
                    logger.warning(
                        "The checkpoint's optimizer state has %d variables, the "
                        "optimizer has %d: starting the optimizer afresh.",
                        len(stored), len(variables))
                    continue
                if len(stored) != len(variables):
                    raise CheckpointError(
                        "The checkpoint does not fit this model (different number "
                        "of variables). Use a new checkpoint_dir. Received: "
                        f"{len(stored)} stored, {len(variables)} in the model"
                    )
                for key, variable in zip(stored, variables, strict=True):
                    value = data[key]
                    if tuple(value.shape) != tuple(variable.shape):
                        raise CheckpointError(
                            "The checkpoint does not fit this model (variable "
                            f"{variable.path} has another shape). Use a new "
                            f"checkpoint_dir. Received: stored shape {value.shape}, "
                            f"model shape {tuple(variable.shape)}"
                        )
                    variable.assign(value)
