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
