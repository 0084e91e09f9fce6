"""Freezing, unfreezing, BatchNorm, discriminative learning rates, phased fit."""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.training.phases import Unfreeze, backbone_blocks
from kerastransfer.training.plan import Phase, PhasePlan
from tests.conftest import separable_images


def make(tiny_spec, **kwargs):
    model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None,
                             dropout=0.0, **kwargs)
    model.pretrained = True  # treat the random backbone as a pretrained one
    return model


def weights_of(layer):
    return [np.array(w) for w in layer.weights]


def bn_stats(model):
    return {layer.name: (np.array(layer.moving_mean), np.array(layer.moving_variance))
            for layer in model.backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def assert_same(a, b):
    for key in a:
        for x, y in zip(a[key], b[key], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=key)


@pytest.mark.parametrize("rule, expected", [
    ("all", Unfreeze("all")), ("none", Unfreeze("none")), (20, Unfreeze("top", 20)),
    ("top:3", Unfreeze("top", 3)), (0.5, Unfreeze("fraction", 0.5)),
    ("blocks:2", Unfreeze("blocks", 2)), ("from:conv5", Unfreeze("from", "conv5")),
    ({"kind": "blocks", "value": 1}, Unfreeze("blocks", 1)),
])
def test_unfreeze_rules_parse(rule, expected):
    assert Unfreeze.parse(rule) == expected
    assert Unfreeze.parse(expected.to_string()) == expected


@pytest.mark.parametrize("rule, match", [
    ("blocks", "needs a value"), ("top:0", "positive whole number"),
    ("top:2.5", "positive whole number"), ("fraction:1.5", r"\(0, 1\]"),
    ("layers:3", "Unknown unfreeze rule"), ([1], "must be a string"),
])
def test_bad_unfreeze_rules(rule, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Unfreeze.parse(rule)


def trainable_layer_names(model):
    return [layer.name for layer in model.backbone.layers if layer.trainable_weights]


def test_unfreeze_selects_the_right_layers(tiny_spec):
    model = make(tiny_spec)
    model.freeze_backbone()
    assert trainable_layer_names(model) == []
    assert not model.backbone.trainable_weights
    model.unfreeze("blocks:1")
    assert trainable_layer_names(model) == ["blockC_conv"]  # BN stays frozen
    model.unfreeze("blocks:1", train_bn=True)
    assert trainable_layer_names(model) == ["blockC_conv", "blockC_bn"]
    model.unfreeze("top:2", train_bn=True)
    assert trainable_layer_names(model) == ["blockC_conv", "blockC_bn"]
    model.unfreeze("from:blockB_conv")
    assert trainable_layer_names(model) == ["blockB_conv", "blockC_conv"]
    # 6 layers with weights -> the top 3 (blockB_bn, blockC_conv, blockC_bn);
    # BatchNorm stays frozen, so only blockC_conv trains.
    assert model.unfreeze(0.5) == ["blockB_bn", "blockB_relu", "blockB_pool",
                                   "blockC_conv", "blockC_bn", "blockC_relu"]
    assert trainable_layer_names(model) == ["blockC_conv"]
    model.unfreeze("all")
    assert trainable_layer_names(model) == ["blockA_conv", "blockB_conv",
                                            "blockC_conv"]
    assert [b for b, _ in backbone_blocks(model)] == ["blockA", "blockB", "blockC"]
    summary = model.trainable_summary()
    assert "blockC" in summary and "BatchNorm: 0/1 training" in summary
    with pytest.raises(ValueError, match="Close names: blockB_conv"):
        model.unfreeze("from:blockB_cnv")
    with pytest.raises(ValueError, match="has 3"):
        model.unfreeze("blocks:4")


def test_real_backbone_blocks():
    model = kt.TransferModel("resnet50", num_classes=2, weights=None,
                             input_shape=(32, 32, 3))
    blocks = [name for name, _ in backbone_blocks(model)]
    assert blocks == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    names = model.unfreeze("blocks:1")
    assert names[0] == "conv5_block1_1_conv" and names[-1] == "conv5_block3_out"


def test_bn_statistics_fixed_through_both_phases(tiny_spec):
    x, y = separable_images(n_per_class=16)
    model = make(tiny_spec)
    before = bn_stats(model)
    backbone_before = weights_of(model.backbone)
    model.fit(x, y, epochs=2, fine_tune_epochs=0, batch_size=8, verbose=0)
    # Frozen phase: nothing in the backbone moved, BN statistics included.
    assert_same(before, bn_stats(model))
    for a, b in zip(backbone_before, weights_of(model.backbone), strict=True):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, epochs=0, fine_tune_epochs=2, unfreeze="all", batch_size=8,
              verbose=0)
    # Fine-tuning: conv kernels change, BN statistics still do not.
    assert_same(before, bn_stats(model))
    changed = [not np.array_equal(a, b) for a, b in
               zip(backbone_before, weights_of(model.backbone), strict=True)]
    assert any(changed)
    # train_bn=True lets the statistics move.
    model.fit(x, y, epochs=0, fine_tune_epochs=1, train_bn=True, batch_size=8,
              verbose=0)
    after = bn_stats(model)
    assert any(not np.allclose(before[k][0], after[k][0]) for k in before)


def test_discriminative_learning_rates_give_real_per_group_update_sizes(tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = make(tiny_spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.freeze_backbone()
    before = {v.path: np.array(v) for v in model.weights}
    plan = PhasePlan([Phase(1, "all", learning_rate=1e-2, lr_decay=0.1)])
    model.fit(x, y, plan=plan, batch_size=len(x), shuffle=False, verbose=0)
    assert type(model.optimizer).__name__ == "GroupedOptimizer"

    def max_step(prefix):
        return max(float(np.abs(np.array(v) - before[v.path]).max())
                   for v in model.weights if v.path.split("/")[-2].startswith(prefix)
                   and v.trainable)

    # Adam's first step moves each weight by ~lr (sign of its gradient):
    # head 1e-2, blockC 1e-3, blockB 1e-4, blockA 1e-5.
    steps = {p: max_step(p) for p in ("logits", "blockC_conv", "blockB_conv",
                                      "blockA_conv")}
    for prefix, expected in [("logits", 1e-2), ("blockC_conv", 1e-3),
                             ("blockB_conv", 1e-4), ("blockA_conv", 1e-5)]:
        assert steps[prefix] == pytest.approx(expected, rel=0.05), steps


def test_phased_fit_learns_and_records_phases(tiny_spec):
    x, y = separable_images(n_per_class=40, seed=1)
    x_test, y_test = separable_images(n_per_class=20, seed=2)
    model = make(tiny_spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, epochs=3, fine_tune_epochs=2, unfreeze="blocks:1",
                        validation_data=(x_test, y_test), batch_size=16, verbose=0)
    assert [p["name"] for p in history.phases] == ["frozen", "fine_tune"]
    assert history.phase_boundaries == [3]
    assert history.epoch == [0, 1, 2, 3, 4]
    assert len(history.history["val_accuracy"]) == 5
    assert history.phases[1]["learning_rate"] == pytest.approx(1e-3)
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test))
    assert accuracy >= 0.9  # chance is 0.5


def test_gradual_plan_unfreezes_one_more_block_per_phase(tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = make(tiny_spec)
    plan = PhasePlan.gradual(epochs_per_phase=1, num_blocks=3)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(trainable_layer_names(model))

    history = model.fit(x, y, plan=plan, callbacks=[Record()], head="epochs",
                        batch_size=8, verbose=0)
    assert seen == [[], ["blockC_conv"], ["blockB_conv", "blockC_conv"],
                    ["blockA_conv", "blockB_conv", "blockC_conv"]]
    assert [p["start_epoch"] for p in history.phases] == [0, 1, 2, 3]


def test_callbacks_work_across_phases(tiny_spec, tmp_path):
    x, y = separable_images(n_per_class=8)
    model = make(tiny_spec)
    epochs = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch)

    path = str(tmp_path / "best.keras")
    model.fit(x, y, epochs=2, fine_tune_epochs=2, head="epochs", batch_size=8,
              verbose=0, callbacks=[Epochs(), keras.callbacks.ModelCheckpoint(path)])
    assert epochs == [0, 1, 2, 3]
    assert kt.load_model(path).class_names == ["0", "1"]


def test_from_scratch_model_trains_in_one_phase(tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None)
    history = model.fit(x, y, epochs=1, fine_tune_epochs=1, batch_size=8, verbose=0)
    assert [p["name"] for p in history.phases] == ["from_scratch"]
    assert history.phases[0]["train_bn"] is True and len(history.epoch) == 2


@pytest.mark.parametrize("precise_bn", [True, False])
def test_precise_bn_recomputes_statistics_after_training_bn(tiny_spec, precise_bn):
    x, y = separable_images(n_per_class=16)
    model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None,
                             dropout=0.0)
    history = model.fit(x, y, epochs=2, batch_size=16, precise_bn=precise_bn,
                        verbose=0)
    assert history.phases[0]["precise_bn_images"] == (32 if precise_bn else 0)
    # The statistics a BatchNorm layer should hold: those of its inputs, with the
    # final weights, over the training images.
    pre = np.asarray(model.get_layer("preprocessing")(x))
    conv = np.asarray(model.backbone.get_layer("blockA_conv")(pre))
    target = conv.mean(axis=(0, 1, 2))
    moving = np.array(model.backbone.get_layer("blockA_bn").moving_mean)
    if precise_bn:
        np.testing.assert_allclose(moving, target, rtol=1e-3, atol=1e-3)
    else:  # 4 EMA steps at momentum 0.99: still near the initial zeros
        assert np.abs(moving - target).max() > 0.3 * np.abs(target).max()


def test_validating_changes_nothing_the_model_learns(tiny_spec):
    """Recalibrating BatchNorm before each validation (precise BN) touches
    only moving statistics, which the phase's end recomputes: a model trained
    with validation equals one trained without (the demo records its curves
    only where it plots them)."""
    x, y = separable_images(n_per_class=16)
    xv, yv = separable_images(n_per_class=8, seed=1)
    outputs = []
    for validation in ({}, {"validation_data": (xv, yv), "validation_freq": 1}):
        keras.utils.set_random_seed(3)
        model = kt.TransferModel("tiny_test_net", num_classes=2, weights=None,
                                 dropout=0.0)
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, **validation)
        outputs.append(model.predict(xv, verbose=0))
    assert len(history.history["val_loss"]) == 3  # the second run validated
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_history_aligns_validation_with_validation_freq(tiny_spec):
    x, y = separable_images(n_per_class=8)
    model = make(tiny_spec)
    history = model.fit(x, y, epochs=3, fine_tune_epochs=3, head="epochs",
                        batch_size=16, validation_data=(x, y), validation_freq=2,
                        verbose=0)
    values = history.history["val_loss"]
    assert len(values) == 6 == len(history.history["loss"])
    assert [v is not None for v in values] == [False, True, False, True, False, True]
