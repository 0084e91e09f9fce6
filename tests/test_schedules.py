"""Warmup-cosine and one-cycle schedules: values, serialization, use per phase."""

import math

import keras
import numpy as np
import pytest
from conftest import separable_images
from test_features import build

import kerastransfer as kt
from kerastransfer.training.schedules import OneCycle, WarmupCosineDecay, steps_for


def approx(expected):
    return pytest.approx(expected, rel=1e-5)  # the schedules compute in float32


def value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_warmup_cosine_values():
    s = WarmupCosineDecay(1e-2, total_steps=110, warmup_steps=10,
                          initial_learning_rate=1e-4, final_learning_rate=1e-5)
    assert value(s, 0) == approx(1e-4)
    assert value(s, 5) == approx(1e-4 + 0.5 * (1e-2 - 1e-4))
    assert value(s, 10) == approx(1e-2)
    assert value(s, 60) == approx(1e-5 + 0.5 * (1e-2 - 1e-5))  # half-way
    assert value(s, 110) == approx(1e-5)
    assert value(s, 500) == approx(1e-5)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineDecay(1e-3, total_steps=10, warmup_steps=20)


def previous_warmup_cosine(step, peak, total, warmup, initial, final):
    """The formula of the hand-written WarmupCosineDecay this one replaces."""
    if step < warmup:
        return initial + (peak - initial) * step / max(warmup, 1)
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("peak, total, warmup, initial, final", [
    (1e-2, 110, 10, 1e-4, 1e-5),
    (1e-3, 50, 0, 0.0, 0.0),
    (3e-3, 7, 7, 1e-5, 0.0),  # all warmup: the rate drops to final after it
    (5e-4, 20, 3, 0.0, 1e-4),
    (2e-1, 1, 0, 0.0, 1e-3),
])
def test_warmup_cosine_equals_previous_implementation(peak, total, warmup, initial,
                                                      final):
    s = WarmupCosineDecay(peak, total_steps=total, warmup_steps=warmup,
                          initial_learning_rate=initial, final_learning_rate=final)
    assert isinstance(s, keras.optimizers.schedules.CosineDecay)  # Keras's own
    for step in range(total + 6):
        expected = previous_warmup_cosine(step, peak, total, warmup, initial, final)
        assert abs(value(s, step) - expected) <= 1e-6, step


def test_warmup_cosine_config_saved_by_the_previous_version_loads():
    # What `serialize_keras_object` wrote for the hand-written class (module path
    # before the package layout changed): saved .keras files hold this.
    old = {
        "module": "kerastransfer.schedules",
        "class_name": "WarmupCosineDecay",
        "config": {"peak_learning_rate": 0.01, "total_steps": 110,
                   "warmup_steps": 10, "initial_learning_rate": 0.0001,
                   "final_learning_rate": 1e-05, "name": "warmup_cosine"},
        "registered_name": "kerastransfer>WarmupCosineDecay",
    }
    restored = keras.saving.deserialize_keras_object(old)
    assert type(restored) is WarmupCosineDecay
    assert restored.get_config() == old["config"]
    assert keras.saving.serialize_keras_object(restored)["registered_name"] == (
        "kerastransfer>WarmupCosineDecay")
    optimizer = keras.optimizers.deserialize(
        {"class_name": "Adam", "config": {"learning_rate": old}})
    assert isinstance(optimizer._learning_rate, WarmupCosineDecay)
    for step in (0, 5, 10, 60, 110, 200):
        assert abs(value(restored, step) - previous_warmup_cosine(
            step, 0.01, 110, 10, 1e-4, 1e-5)) <= 1e-6


def test_one_cycle_values():
    s = OneCycle(1e-2, total_steps=100, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4)
    assert value(s, 0) == approx(1e-2 / 25)
    assert value(s, 15) == approx((1e-2 / 25 + 1e-2) / 2)
    assert value(s, 30) == approx(1e-2)
    assert value(s, 100) == approx(1e-2 / 25 / 1e4)
    rates = [value(s, i) for i in range(101)]
    assert int(np.argmax(rates)) == 30
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(1e-2, total_steps=10, pct_start=1.5)


@pytest.mark.parametrize("schedule", [
    WarmupCosineDecay(1e-3, total_steps=50, warmup_steps=5),
    OneCycle(3e-3, total_steps=40),
])
def test_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 3, 17, 49):
        assert value(restored, step) == approx(value(schedule, step))


def test_phase_schedules_train_save_and_load(tmp_path):
    x, y = separable_images(n_per_class=6, size=32, num_classes=3)
    model = build()  # a tiny two-phase model
    steps = steps_for(len(x), 8, 1)
    assert steps == 3  # 18 images in batches of 8
    plan = kt.PhasePlan([
        kt.Phase(1, None, learning_rate=OneCycle(1e-2, total_steps=steps)),
        kt.Phase(1, "all", learning_rate=WarmupCosineDecay(1e-3, total_steps=steps,
                                                           warmup_steps=1)),
    ])
    history = model.fit(x, y, plan=plan, batch_size=8, verbose=0)
    assert history.phases[1]["learning_rate"]["class_name"] == "WarmupCosineDecay"
    assert isinstance(model.optimizer._learning_rate, WarmupCosineDecay)
    path = str(tmp_path / "scheduled.keras")
    model.save(path)
    loaded = kt.load_model(path)
    schedule = loaded.optimizer._learning_rate
    assert isinstance(schedule, WarmupCosineDecay)
    assert schedule.get_config() == model.optimizer._learning_rate.get_config()
    assert int(loaded.optimizer.iterations) == steps
    assert math.isclose(value(schedule, 1), 1e-3, rel_tol=1e-6)
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0),
                               model.predict(x[:4], verbose=0), atol=1e-5)
