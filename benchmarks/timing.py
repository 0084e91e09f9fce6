"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of every epoch in `times`."""

    def __init__(self):
        super().__init__()
        self.times, self._start = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
