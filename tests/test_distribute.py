"""tf.distribute: MirroredStrategy over two logical CPUs and a real two-worker
MultiWorkerMirroredStrategy on 127.0.0.1, each in its own processes (logical
devices and TF_CONFIG must be set before TensorFlow starts)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_finish_both_phases_with_identical_weights(tmp_path):
    ports = f"{_free_port()},{_free_port()}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    workers = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "mw_worker.py"), str(i),
                          ports, str(tmp_path), "--checkpoint"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
        for i in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    for report in reports:
        assert report["phases"] == ["frozen", "fine_tune"]
        assert report["replicas"] == 2  # one replica per worker, in sync
        assert report["iterations"] == 4
        assert all(np.isfinite(report["loss"]))
    assert reports[0]["loss"] == reports[1]["loss"]
    a, b = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert len(a.files) == len(b.files) == 14
    for key in a.files:  # weights AND BatchNorm statistics (averaged each epoch)
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    from kerastransfer.training.checkpoint import read_checkpoint_state

    for i in range(2):
        assert read_checkpoint_state(tmp_path / f"ckpt{i}")["finished"] is True


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[2])
    import resume_worker
    import kerastransfer as kt

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            opt = self.model.optimizer
            seen.append({
                "in_scope": all(strategy.extended.variable_created_in_scope(v.value)
                                for v in opt.variables + self.model.variables),
                "iterations": int(opt.iterations.numpy()),
                "backbone_trainable": self.model.backbone.trainable,
            })

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = resume_worker.data(n_per_class=16)
    def build():
        with strategy.scope():
            backbone = resume_worker.small_backbone()
        return kt.TransferModel(backbone, num_classes=2, strategy=strategy)
    args = dict(epochs=1, fine_tune_epochs=2, batch_size=8, verbose=0,
                checkpoint_dir=sys.argv[1])
    seen = []
    try:
        build().fit(x, y, callbacks=[Crash(), Probe()], **args)
    except KeyboardInterrupt:
        pass
    model = build()
    history = model.fit(x, y, callbacks=[Probe()], **args)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "seen": seen,
                      "phases": [(p["name"], p["start_epoch"], p["end_epoch"])
                                 for p in history.phases],
                      "epochs": history.epoch,
                      "loss": history.history["loss"]}))
""")


@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus_resumes_inside_scope(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "ckpt"), HERE],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # First process: phase 1 then phase 2 (crash at epoch 2); second: resume.
    assert [s["backbone_trainable"] for s in report["seen"]] == [False, True, True]
    assert all(s["in_scope"] for s in report["seen"])  # recompiles under scope
    assert report["seen"][2]["iterations"] == report["seen"][1]["iterations"] + 4
    assert report["phases"] == [["frozen", 0, 1], ["fine_tune", 1, 3]]
    assert report["epochs"] == [0, 1, 2]
    assert all(np.isfinite(report["loss"]))
