"""Helpers shared by the resume tests of every task (`test_resume.py`,
`test_segmentation.py`, ...): a simulated crash and the optimizer state a
checkpoint holds."""

import keras
import numpy as np

from kerastransfer.training.checkpoint import CHECKPOINT_FILE, read_checkpoint_state


class StopAt(keras.callbacks.Callback):
    """Simulates a crash: raises KeyboardInterrupt at the start of `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def checkpoint_optimizer_values(checkpoint_dir):
    """`(state, values)`: a checkpoint's state and its stored optimizer
    variables, in order."""
    state = read_checkpoint_state(checkpoint_dir)
    with np.load(checkpoint_dir / CHECKPOINT_FILE) as data:
        values = [data[f"o{i}"] for i in range(state["num_optimizer_variables"])]
    return state, values
