"""Resumable training (fit(checkpoint_dir=...)) and divergence handling."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.errors import CheckpointError, TrainingDivergedError
from kerastransfer.training.checkpoint import CHECKPOINT_FILE, read_checkpoint_state

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "resume_worker.py")
sys.path.insert(0, HERE)
import resume_worker  # noqa: E402

from tests.training_helpers import StopAt, checkpoint_optimizer_values  # noqa: E402


def _model(**kwargs):
    kwargs.setdefault("dropout", 0.3)
    return kt.TransferModel(resume_worker.small_backbone(), num_classes=2, **kwargs)


def _values(model):
    return [v.numpy().copy() for v in model.variables]


class _Count(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def _run_worker(ckpt, prefix, kill_at=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KT_KILL_AT_EPOCH", None)
    if kill_at is not None:
        env["KT_KILL_AT_EPOCH"] = str(kill_at)
    return subprocess.run([sys.executable, WORKER, str(ckpt), str(prefix)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sigkill_in_fine_tuning_resumes_exactly(tmp_path):
    # Plan: 2 frozen epochs (0, 1), then 3 fine-tuning epochs (2, 3, 4).
    ref = _run_worker(tmp_path / "ref_ckpt", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = _run_worker(tmp_path / "ckpt", tmp_path / "run", kill_at=3)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run.json").exists()
    state = read_checkpoint_state(tmp_path / "ckpt")
    # Killed during epoch 3 (phase 2): epochs 0-2 are safely stored.
    position = (state["phase_index"], state["phase_start"], state["next_epoch"])
    assert position == (1, 2, 3)
    assert not state["finished"]
    assert len(state["epoch_logs"]) == 3

    resumed = _run_worker(tmp_path / "ckpt", tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    begun = [int(line) for line in (tmp_path / "run.epochs").read_text().split()]
    assert begun == [0, 1, 2, 3, 3, 4]  # first process: 0-3 (killed), then 3, 4

    ref_out = json.loads((tmp_path / "ref.json").read_text())
    out = json.loads((tmp_path / "run.json").read_text())
    assert out["epoch"] == ref_out["epoch"] == [0, 1, 2, 3, 4]
    assert [(p["name"], p["start_epoch"], p["end_epoch"]) for p in out["phases"]] == [
        ("frozen", 0, 2), ("fine_tune", 2, 5)]
    assert out["iterations"] == ref_out["iterations"] == 18  # schedule position
    np.testing.assert_allclose(out["history"]["loss"], ref_out["history"]["loss"],
                               rtol=0, atol=1e-6)
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "run.npz")
    max_diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)
    # Seeded + op determinism + restored optimizer/RNG/data order: bit-exact here
    # (measured 0.0); the stated tolerance allows for other CPUs' kernels.
    assert max_diff <= 1e-6, max_diff
    assert read_checkpoint_state(tmp_path / "ckpt")["finished"]


def test_finished_checkpoint_returns_history_without_training(tmp_path, tiny_data):
    x, y = tiny_data
    x = x[:, :24, :24]
    model = _model()
    first = model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=16, verbose=0,
                      checkpoint_dir=tmp_path)
    trained = _values(model)
    assert read_checkpoint_state(tmp_path)["finished"] is True

    keras.utils.set_random_seed(99)  # a different initialization
    again = _model()
    count = _Count()
    second = again.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=16, verbose=0,
                       checkpoint_dir=tmp_path, callbacks=[count])
    assert count.epochs == []  # nothing retrained
    assert second.history == first.history
    assert [p["name"] for p in second.phases] == ["frozen", "fine_tune"]
    for a, b in zip(trained, _values(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.phase_state["unfreeze"] == "all"  # the last phase's state


def test_checkpoint_from_another_plan_is_refused(tmp_path, tiny_data):
    x, y = tiny_data
    x = x[:, :24, :24]
    _model().fit(x, y, epochs=1, batch_size=16, verbose=0, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="different model or training plan"):
        _model().fit(x, y, epochs=2, batch_size=16, verbose=0,
                     checkpoint_dir=tmp_path)


def test_corrupt_checkpoint_is_reported(tmp_path, tiny_data):
    x, y = tiny_data
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="corrupt"):
        _model().fit(x[:, :24, :24], y, epochs=1, verbose=0, checkpoint_dir=tmp_path)


def test_grouped_optimizer_state_is_restored(tmp_path, tiny_spec):
    """lr_decay (GroupedOptimizer): every sub-optimizer's slots and iterations
    are restored when resuming inside the fine-tuning phase (a tiny registered
    backbone of three blocks: three learning-rate groups and the head's)."""
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.array([0, 1] * 8)

    def build():
        model = kt.TransferModel("tiny_test_net", 2, weights=None,
                                 input_shape=(32, 32, 3))
        model.pretrained = True
        return model

    args = dict(epochs=1, fine_tune_epochs=2, lr_decay=0.5, batch_size=8, verbose=0,
                checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        build().fit(x, y, callbacks=[StopAt(2)], **args)
    state, stored = checkpoint_optimizer_values(tmp_path)
    assert (state["phase_index"], state["next_epoch"]) == (1, 2)

    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            seen["type"] = type(optimizer).__name__
            seen["values"] = [v.numpy().copy() for v in optimizer.variables]
            seen["iterations"] = [int(o.iterations.numpy())
                                  for o in optimizer.optimizers]

    model = build()
    history = model.fit(x, y, callbacks=[Probe()], **args)
    assert seen["type"] == "GroupedOptimizer"
    assert len(seen["values"]) == len(stored) > 10
    for a, b in zip(stored, seen["values"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(i == 2 for i in seen["iterations"])  # one fine-tune epoch, 2 steps
    assert history.epoch == [0, 1, 2]
    assert history.phases[1]["start_epoch"] == 1


def _regression_model():
    return kt.TransferModel(resume_worker.small_backbone(), task="regression",
                            dropout=0.0)


def test_huge_learning_rate_raises_and_keeps_good_weights(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 24, 24, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32") * 100
    model = _regression_model()
    model.compile(optimizer=keras.optimizers.SGD())
    saved = tmp_path / "best.weights.h5"
    user_checkpoint = keras.callbacks.ModelCheckpoint(str(saved),
                                                      save_weights_only=True)
    # Phase 1 at a sane rate; phase 2 at an absurd one.
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(x, y, epochs=1, fine_tune_epochs=3, learning_rate=1e-6,
                  fine_tune_lr=1e12, batch_size=8, verbose=0,
                  checkpoint_dir=tmp_path / "ckpt", callbacks=[user_checkpoint])
    message = str(info.value)
    assert "phase 2/2 'fine_tune'" in message
    assert "at epoch 2" in message
    assert "learning rate (1000000000000.0) is probably too high" in message
    assert "restored to the end of epoch 1" in message
    values = _values(model)
    assert all(np.isfinite(v).all() for v in values if v.dtype.kind == "f")
    # The checkpoint still holds epoch 1's finite weights, equal to the model's.
    state = read_checkpoint_state(tmp_path / "ckpt")
    assert state["next_epoch"] == 1 and not state["finished"]
    with np.load(tmp_path / "ckpt" / CHECKPOINT_FILE) as data:
        for i, value in enumerate(values):
            np.testing.assert_array_equal(data[f"m{i}"], value)
    # ModelCheckpoint saved at the end of the diverged epoch: good weights only.
    fresh = _regression_model()
    fresh.load_weights(str(saved))
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_nan_inputs_in_a_dataset_raise_diverged():
    import tensorflow as tf

    x = np.full((8, 24, 24, 3), 100.0, dtype="float32")
    x[3, 0, 0, 0] = np.nan
    y = np.array([0, 1] * 4)
    model = _model()
    before = _values(model)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(TrainingDivergedError, match=r"phase 1/1 .* at epoch 1 "
                       r"\(batch 1\).*NaN/Inf"):
        model.fit(data, epochs=2, verbose=0)
    # Restored to the start of training.
    for a, b in zip(before, _values(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_seeded_dataset_order_depends_only_on_seed_and_epoch():
    from kerastransfer.training.checkpoint import SeededArrayDataset

    x = np.arange(10, dtype="float32")[:, None]
    a = SeededArrayDataset(x, x, batch_size=4, seed=5)
    b = SeededArrayDataset(x, x, batch_size=4, seed=5)
    a.set_epoch(3)
    b.set_epoch(0)
    b.set_epoch(3)
    assert len(a) == 3
    for i in range(3):
        np.testing.assert_array_equal(a[i][0], b[i][0])
    a.set_epoch(4)
    assert not np.array_equal(a.order, b.order)
    assert sorted(a.order.tolist()) == list(range(10))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_optimizer_state_is_restored(tmp_path, policy):
    """mixed_float16 wraps the optimizer in a LossScaleOptimizer: its loss scale
    and the inner optimizer's slots resume too."""
    x, y = resume_worker.data(n_per_class=8)

    def build():
        return kt.TransferModel(resume_worker.small_backbone(), num_classes=2,
                                mixed_precision=policy)

    args = dict(epochs=1, fine_tune_epochs=2, batch_size=8, verbose=0,
                checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        build().fit(x, y, callbacks=[StopAt(2)], **args)
    state, stored = checkpoint_optimizer_values(tmp_path)
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            seen["type"] = type(optimizer).__name__
            seen["values"] = [v.numpy().copy() for v in optimizer.variables]
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            seen["iterations"] = int(inner.iterations.numpy())

    history = build().fit(x, y, callbacks=[Probe()], **args)
    expected = "LossScaleOptimizer" if policy == "mixed_float16" else "Adam"
    assert seen["type"] == expected
    assert len(seen["values"]) == len(stored)
    for a, b in zip(stored, seen["values"], strict=True):
        np.testing.assert_array_equal(a, b)
    # Steps whose float16 gradients overflow are skipped (and the loss scale
    # halved), so the count is whatever the interrupted run reached: <= 2 steps.
    assert state["next_epoch"] == 2 and 0 <= seen["iterations"] <= 2
    assert history.epoch == [0, 1, 2]
    assert all(np.isfinite(history.history["loss"]))
