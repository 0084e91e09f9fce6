"""The learning-rate range test (Smith 2015; fastai's `lr_find`).

Trains for `num_steps` batches while the learning rate grows exponentially from
`start_lr` to `end_lr`, records the loss of every batch, and suggests the rate
where the smoothed loss falls fastest. The sweep runs its own training loop with
a fresh optimizer of the compiled type, so the model's compiled optimizer and its
state are never touched; every model variable (weights, BatchNorm statistics,
dropout seed states) is restored afterwards, as is the trainable state.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from kerastransfer.errors import DataError

__all__ = ["LRFinderResult", "lr_find", "suggest_learning_rate"]

logger = logging.getLogger("kerastransfer")


def _smooth(losses: np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as fastai)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out.append(avg / (1.0 - beta**i))
    return np.asarray(out)


def suggest_learning_rate(lrs, smoothed, skip_start: int = 5, skip_end: int = 2):
    """The rate at the steepest descent of the smoothed loss over log(rate).

    Returns:
        The suggested rate, or `None` with fewer than 4 usable points.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    end = len(lrs) - skip_end if len(lrs) - skip_end > skip_start + 3 else len(lrs)
    start = skip_start if end - skip_start >= 4 else 0
    lrs, smoothed = lrs[start:end], smoothed[start:end]
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    if len(lrs) < 4:
        return None
    slope = np.gradient(smoothed, np.log(lrs))
    return float(lrs[int(np.argmin(slope))])


@dataclass
class LRFinderResult:
    """What a learning-rate sweep found.

    Attributes:
        lrs: the learning rate of each step.
        losses: the raw loss of each step.
        smoothed: the smoothed losses.
        suggestion: the suggested learning rate (steepest descent), or `None`.
        diverged: whether the sweep stopped early because the loss exploded.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    diverged: bool = False

    def plot(self, path: str) -> str:
        """Writes the loss-vs-rate curve (log scale) as a PNG, atomically.

        Args:
            path: the `.png` file to write.

        Returns:
            `path`.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from kerastransfer.io import atomic_path

        fig, ax = plt.subplots(figsize=(6, 4))
        try:
            ax.plot(self.lrs, self.losses, alpha=0.3, label="loss")
            ax.plot(self.lrs, self.smoothed, label="smoothed loss")
            if self.suggestion is not None:
                ax.axvline(self.suggestion, color="red", linestyle="--",
                           label=f"suggestion {self.suggestion:.2e}")
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("loss")
            finite = [v for v in self.smoothed if math.isfinite(v)]
            if finite:
                low = min(finite)
                ax.set_ylim(low - 0.1 * abs(low), max(finite[0], low) * 1.5 + 1e-3)
            ax.legend()
            fig.tight_layout()
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=100)
        finally:
            plt.close(fig)
        return path


def _batches(x, y, batch_size, seed):
    import tensorflow as tf

    if hasattr(x, "element_spec"):
        dataset = x
    else:
        if y is None:
            raise DataError("lr_find needs labels: pass y with numpy images. "
                            "Received: y=None")
        x = np.asarray(x, dtype=np.float32)
        dataset = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)))
        dataset = dataset.shuffle(len(x), seed=seed).batch(batch_size)
    return dataset.repeat()


def lr_find(model, x, y=None, *, start_lr: float = 1e-7, end_lr: float = 1.0,
            num_steps: int = 100, batch_size: int = 32, phase: str | None = None,
            beta: float = 0.98, diverge_factor: float = 4.0, seed: int = 0,
            ) -> LRFinderResult:
    """Sweeps the learning rate exponentially and suggests one.

    Args:
        model: a task (`TransferModel`, or any `TransferTask`): the sweep uses
            its compiled optimizer type and loss (or the task's defaults).
        x: images (numpy) or a `tf.data.Dataset` of `(images, labels)` batches
            (repeated as needed).
        y: labels for numpy images. Defaults to `None`.
        start_lr: the first learning rate. Defaults to `1e-7`.
        end_lr: the last learning rate. Defaults to `1.0`.
        num_steps: training steps (batches) in the sweep. Defaults to `100`.
        batch_size: batch size for numpy images. Defaults to `32`.
        phase: `"frozen"` (sweep with the backbone frozen: the rate for the head
            phase) or `"current"` (the model's current trainable state).
            Defaults to `"frozen"` for pretrained models, else `"current"`.
        beta: smoothing factor of the loss. Defaults to `0.98`.
        diverge_factor: stop once the smoothed loss exceeds this multiple of its
            minimum. Defaults to `4.0`.
        seed: seed of the shuffling. Defaults to `0`.

    Returns:
        An `LRFinderResult` with `lrs`, `losses`, `suggestion` and `.plot(path)`.

    Raises:
        ValueError: bad rates or step count.

    Example:

    >>> result = model.lr_find(x, y, num_steps=50)  # doctest: +SKIP
    >>> model.fit(x, y, epochs=3, learning_rate=result.suggestion)  # doctest: +SKIP
    """
    import keras
    import tensorflow as tf

    if not (0 < start_lr < end_lr):
        raise ValueError("lr_find needs 0 < start_lr < end_lr. "
                         f"Received: start_lr={start_lr}, end_lr={end_lr}")
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError("num_steps must be an int >= 2. "
                         f"Received: num_steps={num_steps!r}")
    if phase is None:
        phase = "frozen" if model.pretrained else "current"
    if phase not in ("frozen", "current"):
        raise ValueError("phase must be 'frozen' or 'current'. "
                         f"Received: phase={phase!r}")

    saved_state = model.phase_state
    saved_values = [v.numpy() for v in model.variables]
    try:
        if phase == "frozen":
            model.freeze_backbone()
        template = model._template_optimizer()
        config = template.get_config()
        config["learning_rate"] = float(start_lr)
        optimizer = template.__class__.from_config(config)
        loss_fn = keras.losses.get(model._training_loss())
        variables = model.trainable_variables
        optimizer.build(variables)
        lr_var = optimizer.learning_rate

        @tf.function(reduce_retracing=True)
        def step(images, labels, rate):
            lr_var.assign(rate)
            with tf.GradientTape() as tape:
                predictions = model(images, training=True)
                loss = tf.reduce_mean(loss_fn(labels, predictions))
                if model.losses:
                    loss = loss + tf.add_n(model.losses)
            grads = tape.gradient(loss, variables)
            optimizer.apply(grads, variables)
            return loss

        ratio = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
        result = LRFinderResult()
        best = math.inf
        for i, batch in enumerate(_batches(x, y, batch_size, seed)):
            if i >= num_steps:
                break
            rate = start_lr * ratio**i
            loss = float(step(batch[0], batch[1], tf.constant(rate, tf.float32)))
            result.lrs.append(rate)
            result.losses.append(loss)
            smoothed = _smooth(np.asarray(result.losses), beta)[-1]
            result.smoothed.append(float(smoothed))
            if not math.isfinite(smoothed) or (
                i > 5 and smoothed > diverge_factor * best
            ):
                result.diverged = True
                break
            best = min(best, smoothed)
        result.suggestion = suggest_learning_rate(result.lrs, result.smoothed)
        logger.info("lr_find: %d steps, suggested learning rate %s%s", len(result.lrs),
                    result.suggestion, " (stopped: loss diverged)" if result.diverged
                    else "")
        return result
    finally:
        for variable, value in zip(model.variables, saved_values, strict=False):
            variable.assign(value)
        model.set_phase_state(saved_state)
