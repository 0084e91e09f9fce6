"""lr_find: exponential sweep, suggestion, plot, and full state restore."""

import keras
import numpy as np
import pytest
from conftest import separable_images
from PIL import Image
from test_features import build, head_weights

import kerastransfer as kt
from kerastransfer.training.lr_finder import lr_find, suggest_learning_rate


def test_lr_find_restores_weights_optimizer_and_phase(tmp_path):
    x, y = separable_images(n_per_class=12, size=32, num_classes=3)
    model = build(dropout=0.3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # optimizer built, has state
    optimizer = model.optimizer
    before = [v.numpy().copy() for v in model.variables]
    opt_before = [v.numpy().copy() for v in optimizer.variables]
    state = model.phase_state
    result = model.lr_find(x, y, num_steps=30, start_lr=1e-6, end_lr=10.0,
                           batch_size=8)
    after = [v.numpy() for v in model.variables]
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=False):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer is optimizer
    for a, b in zip(opt_before, optimizer.variables, strict=False):
        np.testing.assert_array_equal(a, b.numpy())
    assert model.phase_state == state
    # the sweep itself
    assert 2 <= len(result.lrs) <= 30 and len(result.losses) == len(result.lrs)
    assert result.lrs[0] == pytest.approx(1e-6)
    ratios = np.diff(np.log(result.lrs))
    np.testing.assert_allclose(ratios, np.log(1e7) / 29, rtol=1e-6)  # exponential
    if not result.diverged:
        assert result.lrs[-1] == pytest.approx(10.0)
    assert result.suggestion is not None
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    path = result.plot(str(tmp_path / "lr.png"))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100
    # the model still trains normally afterwards with its own optimizer
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.optimizer is not None


def _trainable_flags(model):
    """`{layer path: trainable}` for every layer, nested ones included."""
    flags, stack = {}, list(model.layers)
    while stack:
        layer = stack.pop()
        flags[layer.path] = layer.trainable
        stack.extend(getattr(layer, "layers", []))
    return flags


def test_lr_find_frozen_phase_trains_head_only(monkeypatch):
    from kerastransfer.training import lr_finder as lr_finder_module

    x, y = separable_images(n_per_class=8, size=32, num_classes=3)
    model = build(dropout=0.0)
    model.unfreeze("all")
    backbone_before = [w.numpy().copy() for w in model.backbone.weights]
    head_before = head_weights(model)
    flags_before = _trainable_flags(model)
    assert any(flags_before[layer.path] for layer in model.backbone.layers)
    during = {}
    suggest = lr_finder_module.suggest_learning_rate

    def spy(lrs, losses):  # called after the sweep, before the model is restored
        during["backbone"] = [w.numpy().copy() for w in model.backbone.weights]
        during["head"] = head_weights(model)
        during["backbone_trainable"] = [layer.trainable
                                        for layer in model.backbone.layers]
        return suggest(lrs, losses)

    monkeypatch.setattr(lr_finder_module, "suggest_learning_rate", spy)
    result = lr_find(model, x, y, num_steps=10, batch_size=8)  # pretrained: frozen
    assert len(result.lrs) >= 2
    # during the sweep: the backbone frozen and unchanged, the head trained
    assert not any(during["backbone_trainable"])
    for a, b in zip(backbone_before, during["backbone"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - b).max()
               for a, b in zip(head_before, during["head"], strict=True)) > 1e-6
    # afterwards: every weight and every trainable flag as before
    for a, b in zip(backbone_before, model.backbone.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    for a, b in zip(head_before, head_weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _trainable_flags(model) == flags_before
    assert model.phase_state["unfreeze"] == "all"


def test_suggestion_is_steepest_descent():
    lrs = np.logspace(-6, 0, 61)
    # loss falls fastest around 1e-3 (a logistic step in log-rate), rises at the end
    loss = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lrs) + 3.0) * 4.0))
    loss[-5:] += np.linspace(0.5, 3.0, 5)
    suggestion = suggest_learning_rate(lrs, loss)
    assert suggestion == pytest.approx(1e-3, rel=0.3)


def test_lr_find_argument_errors():
    model = build()
    x, y = separable_images(n_per_class=2, size=32, num_classes=3)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(model, x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(kt.DataError, match="needs labels"):
        lr_find(model, x, None, num_steps=3)
