"""Atomic writes (an interrupted write leaves the previous file intact) and safe
loading of untrusted .keras files."""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer import io as kt_io
from kerastransfer.saving import ModelLoadError
from kerastransfer.training.checkpoint import CHECKPOINT_FILE, CheckpointRun
from kerastransfer.training.plan import PhasePlan

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import resume_worker  # noqa: E402


def _model():
    return kt.TransferModel(resume_worker.small_backbone(), num_classes=2)


def _images(n=4):
    return np.random.default_rng(1).uniform(0, 255, (n, 24, 24, 3)).astype("float32")


def _no_temp_files(folder):
    return [f for f in os.listdir(folder) if ".tmp" in f] == []


def test_interrupted_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    model = _model()
    run = CheckpointRun(model, PhasePlan.two_phase(1, 1), tmp_path)
    assert run.save(phase_index=0, phase_start=0, next_epoch=1)
    path = tmp_path / CHECKPOINT_FILE
    before = path.read_bytes()

    for v in model.trainable_variables:  # new weights, then a failing write
        v.assign(v.numpy() + 1.0)

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kt_io.os, "fsync", fail)  # after the bytes were written
    with pytest.raises(OSError, match="No space left"):
        run.save(phase_index=0, phase_start=0, next_epoch=2)
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)
    monkeypatch.undo()
    assert CheckpointRun(_model(), PhasePlan.two_phase(1, 1), tmp_path) \
        .resume_state["next_epoch"] == 1


def test_checkpoint_refuses_nan_weights(tmp_path):
    model = _model()
    run = CheckpointRun(model, PhasePlan.two_phase(1, 1), tmp_path)
    assert run.save(phase_index=0, phase_start=0, next_epoch=1)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    assert run.save(phase_index=0, phase_start=0, next_epoch=2) is False
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_interrupted_model_save_keeps_previous(tmp_path, monkeypatch):
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()
    expected = model.predict(_images(), verbose=0)

    def half_write(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(before[: len(before) // 3])
        raise KeyboardInterrupt("interrupted mid-save")

    monkeypatch.setattr(keras.Model, "save", half_write)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path)
    np.testing.assert_allclose(kt.load_model(path).predict(_images(), verbose=0),
                               expected, atol=1e-6)


def test_interrupted_onnx_export_keeps_previous(tmp_path, monkeypatch):
    import onnx

    from kerastransfer.export import export_onnx

    model = _model()
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous export")
    real_save = onnx.save

    def half_save(proto, target, *args, **kwargs):
        real_save(proto, target, *args, **kwargs)
        with open(target, "r+b") as f:
            f.truncate(100)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(onnx, "save", half_save)
    with pytest.raises(OSError, match="Input/output error"):
        export_onnx(model, path, validate=False, optimize=False)
    assert path.read_bytes() == b"previous export"
    assert _no_temp_files(tmp_path)


SAVE_LOOP = textwrap.dedent("""
    import os, sys, time, zipfile
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    path, tests_dir, point, kill_at = sys.argv[1:4] + [int(sys.argv[4])]
    sys.path.insert(0, tests_dir)
    import resume_worker
    import kerastransfer as kt

    current = {"save": 0}

    def wait_for_the_kill(where):
        # the parent kills this process as soon as it reads this line
        print("inside", where, current["save"], flush=True)
        time.sleep(600)

    real_close = zipfile.ZipFile.close
    def close(self):  # Keras is writing the .keras zip: the temp file is a torso
        if current["save"] == kill_at and point == "mid_write" and self.mode == "w":
            wait_for_the_kill(point)
        return real_close(self)
    zipfile.ZipFile.close = close

    real_replace = os.replace
    def replace(src, dst):  # the temp file is complete, not yet renamed
        if current["save"] == kill_at and point == "before_rename":
            wait_for_the_kill(point)
        return real_replace(src, dst)
    os.replace = replace

    model = kt.TransferModel(resume_worker.small_backbone(), num_classes=2)
    for i in range(1, kill_at + 1):
        for v in model.trainable_variables:
            v.assign(v.numpy() * 0 + i)
        current["save"] = i
        model.save(path)
        print("saved", i, flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid_write", "before_rename"])
def test_sigkill_inside_a_save_leaves_the_previous_file(tmp_path, point):
    # Deterministic: the worker signals when it is inside its third save (while
    # Keras writes the temporary zip, or between the write and the rename) and
    # waits there; only then is it killed.
    path = tmp_path / "model.keras"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path), HERE, point,
                             "3"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert lines == ["saved 1", "saved 2", f"inside {point} 3"]
    assert proc.returncode == -signal.SIGKILL
    # the interrupted save left its temporary file, never a torso at `path`
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp" in f]
    assert len(leftovers) == 1
    model = kt.load_model(path)  # the second save, complete
    for v in model.trainable_variables:
        np.testing.assert_array_equal(v.numpy(), 2.0)


# --- safe loading -----------------------------------------------------------------
def test_lambda_layer_is_refused_by_default(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelLoadError, match=r"(?i)safe_mode|lambda"):
        kt.load_model(path)
    loaded = kt.load_model(path, safe_mode=False)  # only for trusted files
    np.testing.assert_allclose(loaded(np.ones((1, 4), "float32")), 2.0)


def test_transfer_model_round_trip_in_safe_mode(tmp_path):
    model = kt.TransferModel("mobilenet_v3_small", num_classes=3, weights=None,
                             input_shape=(32, 32, 3), class_names=["a", "b", "c"],
                             hidden_units=(8,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # Keras's own loader
    assert isinstance(loaded, kt.TransferModel)
    assert loaded.class_names == ["a", "b", "c"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
