"""Timing helpers and test images shared by the benchmark scripts.

Import it after setting `TF_CPP_MIN_LOG_LEVEL`: it imports Keras.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from kerastransfer.startup import import_tensorflow_quietly

import_tensorflow_quietly()  # a benchmark prints its numbers, not start-up lines
import keras  # noqa: E402


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    """The median wall-clock seconds of `repeats` calls of `fn`, after `warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """`(n, size, size, 3)` float32 images in [0, 255]: 8x8 blocks of colour plus
    noise, not white noise (which saturates BatchNorm and softmax)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 8, 8, 3))
    x = np.repeat(np.repeat(small, size // 8 + 1, axis=1), size // 8 + 1, axis=2)
    x = x[:, :size, :size] + rng.normal(0, 10, (n, size, size, 3))
    return np.clip(x, 0, 255).astype("float32")


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of every epoch in `times`."""

    def __init__(self):
        super().__init__()
        self.times, self._start = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def alternating_medians(runs: dict, inputs: dict, repeats: int) -> dict:
    """`{(name, batch): seconds}`: each `runs[name](inputs[batch])` timed by
    `median_seconds`, the names alternating twice so every one sees the same
    machine load (the smaller median is kept). Batches above 1 get a quarter
    of the repeats (at least 3)."""
    results: dict = {}
    for batch, x in inputs.items():
        reps = repeats if batch == 1 else max(3, repeats // 4)
        for _ in range(2):
            for name, run in runs.items():
                t = median_seconds(lambda run=run, x=x: run(x), reps)
                results[(name, batch)] = min(t, results.get((name, batch), t))
    return results


def print_ratio_table(results: dict, labels: dict, batches, width: int = 28) -> None:
    """Prints milliseconds per `labels` row (`{name: label}`, the first name the
    reference) for each batch, then each other row's time over the reference's."""
    names = list(labels)
    print(f"{'':<{width}}" + "".join(f"{f'batch {b}':>12}" for b in batches))
    for name in names:
        print(f"{labels[name]:<{width}}"
              + "".join(f"{results[(name, b)] * 1e3:>12.2f}" for b in batches))
    for name in names[1:]:
        print(f"{f'{name} / {names[0]}':<{width}}"
              + "".join(f"{results[(name, b)] / results[(names[0], b)]:>12.2f}"
                        for b in batches))
