"""Deterministic data order for resumable training: batches drawn from `(seed, epoch)`.

A resumed run must see the same batches as an uninterrupted one, so NumPy
training data is not shuffled by Keras: `SeededArrayDataset` (a
`keras.utils.PyDataset`) orders each epoch by a permutation drawn from
`(seed, epoch)` alone, and `EpochSetter` tells it the epoch Keras starts. The
checkpointing (`kerastransfer/training/checkpoint.py`) wraps arrays in it; what
it saves and restores is the seed and the next epoch.
"""

from __future__ import annotations

import math

import keras
import numpy as np

__all__ = ["SeededArrayDataset", "EpochSetter"]


class SeededArrayDataset(keras.utils.PyDataset):
    """NumPy arrays in batches, in an order drawn from `(seed, epoch)`.

    A resumed run that starts at epoch `e` sees exactly the batches an
    uninterrupted run sees at epoch `e`, whatever happened before.

    Args:
        x: images.
        y: labels (or None).
        batch_size: samples per batch. Defaults to `32`.
        seed: the base seed. Defaults to `0`.
        shuffle: reorder every epoch. Defaults to `True`.
        sample_weight: per-sample weights. Defaults to `None`.
    """

    def __init__(self, x, y=None, batch_size: int = 32, seed: int = 0,
                 shuffle: bool = True, sample_weight=None):
        super().__init__()
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Fixes the order of the batches of `epoch`."""
        self.epoch = int(epoch)
        self.order = self.epoch_order(self.epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The order of the samples in `epoch` (a permutation of their indices)."""
        n = len(self.x)
        if self.shuffle:
            return np.random.default_rng([self.seed, int(epoch)]).permutation(n)
        return np.arange(n)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rows = np.sort(rows) if not self.shuffle else rows
        batch = (self.x[rows],)
        if self.y is not None:
            batch += (self.y[rows],)
            if self.sample_weight is not None:
                batch += (self.sample_weight[rows],)
        return batch


class EpochSetter(keras.callbacks.Callback):
    """Sets the epoch of a `SeededArrayDataset` (or anything with
    `set_epoch(epoch)`) at the start of every epoch."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)
