"""Helpers shared by the tests of several tasks: a simulated crash and the
optimizer state a checkpoint holds (the resume tests: `test_resume.py`,
`test_segmentation.py`, ...), a tiny backbone with three blocks (the phase,
resume and GPU-path tests), a tiny pyramid encoder (the detection tests), and
the check that the runtime runs without TensorFlow (every runtime test)."""

import json
import os
import subprocess
import sys

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


def tiny_backbone(input_shape=(32, 32, 3), weights=None):
    """Three conv blocks with BatchNorm (`blockA`-`blockC`): small enough for two
    CPU cores. Registered as "tiny_test_net" by `register_tiny_backbone`."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, (name, filters) in enumerate([("blockA", 8), ("blockB", 16),
                                         ("blockC", 16)]):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"{name}_pool")(x)
    return keras.Model(inputs, x, name="tiny")


def register_tiny_backbone():
    """Registers `tiny_backbone` as "tiny_test_net" (three blocks, so phases and
    per-block learning rates apply; a two-level pyramid, so it can be a
    segmentation encoder); returns its `BackboneSpec`."""
    import kerastransfer as kt

    return kt.register_backbone(
        "tiny_test_net", tiny_backbone, preprocessing="unit", default_size=32,
        feature_dim=16, blocks=kt.BlockRule((r"^(block[A-C])_",)),
        pyramid=((2, "blockB_relu"), (4, "blockC_relu")), overwrite=True,
    )


def tiny_pyramid(size=32, channels=3, widths=(8, 16, 16)):
    """A 3-level encoder (strides 2, 4, 8) with BatchNorm: fast to trace."""
    inputs = keras.Input((size, size, channels))
    x, outputs = inputs, []
    for i, filters in enumerate(widths):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                name=f"enc{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"enc{i}_bn")(x)
        x = keras.layers.ReLU(name=f"enc{i}_relu")(x)
        outputs.append(x)
    return keras.Model(inputs, outputs, name="tiny_pyramid")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_without_tensorflow(code):
    """Runs `code` in a fresh interpreter and asserts it imported neither
    TensorFlow nor Keras (the promise of `kerastransfer.runtime`).

    `code` may set `result` to JSON values, which is returned (else `None`).
    """
    script = (code + "\nimport json as _json, sys as _sys\n"
              "print(_json.dumps({'result': globals().get('result'), 'imported': "
              "sorted(m for m in ('tensorflow', 'keras') if m in _sys.modules)}))\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["imported"] == [], f"the runtime imported {out['imported']}"
    return out["result"]
