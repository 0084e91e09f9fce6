"""GPU code paths exercised on CPU: mixed precision, XLA, MirroredStrategy."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import kerastransfer as kt
from tests.conftest import separable_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The mixed-precision tests build a tiny registered backbone (three conv blocks
# with BatchNorm: the `tiny_spec` fixture of tests/conftest.py): the policy
# applies to it as to any catalog backbone, and two phases train in seconds.
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_float32_output(policy, tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None,
                             input_shape=(32, 32, 3), mixed_precision=policy)
    model.pretrained = True
    assert model.backbone.layers[1].compute_dtype == policy.split("_")[1]
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if policy == "mixed_float16":  # Keras wraps the optimizer for loss scaling
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    probs = model.predict(x[:2], verbose=0)
    assert probs.dtype == np.float32


def test_mixed_precision_with_discriminative_rates_and_reload(tmp_path, tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None,
                             input_shape=(32, 32, 3), mixed_precision="mixed_float16")
    model.pretrained = True
    model.fit(x, y, epochs=1, fine_tune_epochs=1, lr_decay=0.5, batch_size=8,
              verbose=0)
    inner = model.optimizer.inner_optimizer
    assert type(inner).__name__ == "GroupedOptimizer"
    path = tmp_path / "mp.keras"
    model.save(path)
    loaded = kt.load_model(path)
    assert loaded.mixed_precision == "mixed_float16"
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


def test_xla_jit_compile_on_cpu():
    # A tiny backbone: XLA compiles each phase's train step, and compile time
    # grows with the graph (MobileNetV2: ~45 s of this test, for the same check).
    from tests.training_helpers import tiny_backbone

    x, y = separable_images(n_per_class=8)
    model = kt.TransferModel(tiny_backbone(), num_classes=2)
    assert model.pretrained  # its own weights: the fit below has two phases
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0)
    assert [p["name"] for p in history.phases] == ["frozen", "fine_tune"]
    assert model.jit_compile is True  # kept through the phase recompile
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus():
    # Logical devices must be configured before TensorFlow starts: own process.
    script = textwrap.dedent("""
        import json, os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        import kerastransfer as kt
        from tests.conftest import separable_images
        keras.utils.set_random_seed(0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x, y = separable_images(n_per_class=16)
        model = kt.TransferModel("mobilenet_v2", num_classes=2, weights=None,
                                 input_shape=(32, 32, 3), strategy=strategy)
        model.pretrained = True
        before = [np.array(w) for w in model.backbone.weights]
        history = model.fit(x, y, epochs=1, fine_tune_epochs=1, lr_decay=0.5,
                            batch_size=16, verbose=0)
        changed = any(not np.array_equal(a, np.array(b))
                      for a, b in zip(before, model.backbone.weights))
        var = model.get_layer("logits").kernel.value
        print(json.dumps({
            "replicas": strategy.num_replicas_in_sync,
            "phases": [p["name"] for p in history.phases],
            "loss": history.history["loss"],
            "changed": changed,
            "mirrored": type(var).__name__,
        }))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["phases"] == ["frozen", "fine_tune"]
    assert all(np.isfinite(report["loss"]))
    assert report["changed"] is True
