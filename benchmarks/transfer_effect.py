"""Measure the transfer-learning effect on the offline digits demo.

Source: the 10,000 vendored MNIST digits; `digits_cnn` pretrained on them by
`python -m kerastransfer.demo.pretrain` (weights shipped in
`kerastransfer/demo/data/digits_cnn.weights.h5`). Target: scikit-learn's
`load_digits` in MNIST's 28x28 framing, `k` labelled images per class, scored
on a fixed held-out set of 800 target images (`kerastransfer.demo.target_split`).

Arms, all with the same `digits_cnn` architecture and a `Dense(10, softmax)` head:

* `pretrained`: a user's fine-tuning protocol. Phase 1: backbone frozen
  (every layer, BatchNorm included, `trainable=False`, so BatchNorm runs in
  inference mode with the source statistics), the new head trained on
  cached backbone features for `--head-steps` optimizer steps. Phase 2:
  convolutions unfrozen, BatchNorm kept frozen, the whole model trained for
  `--fine-tune-steps` steps at a low learning rate.
* `scratch`: the same architecture from random initialization, everything
  trainable (BatchNorm in training mode), trained for the same total number
  of steps (`--head-steps + --fine-tune-steps`). Its BatchNorm moving
  statistics are recalibrated on the labelled images before every
  evaluation (otherwise, with so few steps, they lag and evaluation sits
  near chance - DESIGN.md fact 2 - which would flatter pretraining).
* `random-frozen` (control): the pretrained arm's phase 1 on a randomly
  initialized frozen backbone (BatchNorm statistics recalibrated on the
  labelled images).

An "epoch" is one pass over the `10 * k` labelled images (batch size
`min(32, 10 * k)`, so one step per epoch at k=1, four at k=10); step budgets
are turned into whole epochs. Test accuracy is recorded after every epoch to
find the first epoch (cumulative over the two phases) reaching `--target`;
the reported accuracy is the one after the last epoch (nothing is selected
on the test set).

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/transfer_effect.py
    python benchmarks/transfer_effect.py --budgets 1 3 10 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerastransfer.demo.digits import NUM_CLASSES  # noqa: E402
from kerastransfer.demo.digits import target_split  # noqa: E402
from kerastransfer.demo.pretrain import digits_cnn  # noqa: E402
from kerastransfer.demo.pretrain import recalibrate_batchnorm  # noqa: E402


class TestAccuracy(keras.callbacks.Callback):
    """Record held-out accuracy after every epoch (optionally after a hook)."""

    def __init__(self, x_test, y_test, before_eval=None):
        super().__init__()
        self.x_test, self.y_test, self.before_eval = x_test, y_test, before_eval
        self.history: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        if self.before_eval is not None:
            self.before_eval()
        probabilities = self.model(self.x_test, training=False)
        predictions = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
        self.history.append(float(np.mean(predictions == self.y_test)))


def _epochs_for(steps: int, n: int, batch_size: int) -> int:
    return max(1, math.ceil(steps / math.ceil(n / batch_size)))


def _head():
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")


def _compile(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _freeze_all(model):
    model.trainable = False
    for layer in model.layers:
        layer.trainable = False


def _train_head_on_features(backbone, split, args, batch_size):
    """Phase 1: frozen backbone, head trained on cached features."""
    features_train = backbone.predict(split["x_train"], batch_size=256, verbose=0)
    features_test = backbone.predict(split["x_test"], batch_size=256, verbose=0)
    head = _head()
    inputs = keras.Input(shape=features_train.shape[1:])
    head_model = keras.Model(inputs, head(inputs))
    _compile(head_model, args.head_lr)
    callback = TestAccuracy(features_test, split["y_test"])
    epochs = _epochs_for(args.head_steps, len(features_train), batch_size)
    history = head_model.fit(
        features_train,
        split["y_train"],
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    return head, callback.history, float(history.history["loss"][-1])


def run_pretrained(split, args, batch_size, weights="mnist"):
    backbone = digits_cnn(weights=weights)
    if weights is None:
        recalibrate_batchnorm(backbone, split["x_train"])
    _freeze_all(backbone)
    head, curve, head_loss = _train_head_on_features(backbone, split, args, batch_size)
    result = {"curve": curve, "head_loss": head_loss, "head_epochs": len(curve)}
    if weights is None or args.fine_tune_steps <= 0:
        return result
    # Phase 2: unfreeze the convolutions, keep BatchNorm frozen (inference mode).
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input(shape=split["x_train"].shape[1:])
    model = keras.Model(inputs, head(backbone(inputs)))
    _compile(model, args.fine_tune_lr)
    moving_mean_before = [
        np.array(layer.moving_mean)
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    callback = TestAccuracy(split["x_test"], split["y_test"])
    history = model.fit(
        split["x_train"],
        split["y_train"],
        batch_size=batch_size,
        epochs=_epochs_for(args.fine_tune_steps, len(split["x_train"]), batch_size),
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    moving_mean_after = [
        np.array(layer.moving_mean)
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not all(np.array_equal(a, b) for a, b in zip(moving_mean_before, moving_mean_after)):
        raise RuntimeError("frozen BatchNorm moving statistics changed during fine-tuning")
    result["curve"] = curve + callback.history
    result["fine_tune_loss"] = float(history.history["loss"][-1])
    return result


def run_scratch(split, args, batch_size):
    backbone = digits_cnn(weights=None)
    inputs = keras.Input(shape=split["x_train"].shape[1:])
    model = keras.Model(inputs, _head()(backbone(inputs)))
    _compile(model, args.scratch_lr)
    callback = TestAccuracy(
        split["x_test"],
        split["y_test"],
        before_eval=lambda: recalibrate_batchnorm(backbone, split["x_train"]),
    )
    steps = args.head_steps + args.fine_tune_steps
    history = model.fit(
        split["x_train"],
        split["y_train"],
        batch_size=batch_size,
        epochs=_epochs_for(steps, len(split["x_train"]), batch_size),
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    return {"curve": callback.history, "loss": float(history.history["loss"][-1])}


def _first_reaching(curve, target):
    for epoch, accuracy in enumerate(curve, start=1):
        if accuracy >= target:
            return epoch
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=["pretrained", "scratch", "random-frozen"])
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--head-steps", type=int, default=200)
    parser.add_argument("--head-lr", type=float, default=1e-2)
    parser.add_argument("--fine-tune-steps", type=int, default=50)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4)
    parser.add_argument("--scratch-lr", type=float, default=1e-3)
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = []
    for k in args.budgets:
        for seed in args.seeds:
            split = target_split(labels_per_class=k, seed=seed)
            batch_size = min(32, len(split["x_train"]))
            for arm in args.arms:
                keras.utils.set_random_seed(seed)
                arm_start = time.perf_counter()
                if arm == "pretrained":
                    result = run_pretrained(split, args, batch_size, weights="mnist")
                elif arm == "random-frozen":
                    result = run_pretrained(split, args, batch_size, weights=None)
                elif arm == "scratch":
                    result = run_scratch(split, args, batch_size)
                else:
                    raise SystemExit(f"unknown arm {arm!r}")
                result.update(
                    arm=arm,
                    k=k,
                    seed=seed,
                    accuracy=result["curve"][-1],
                    epochs=len(result["curve"]),
                    steps_per_epoch=math.ceil(len(split["x_train"]) / batch_size),
                    epochs_to_target=_first_reaching(result["curve"], args.target),
                    seconds=time.perf_counter() - arm_start,
                )
                rows.append(result)
                print(
                    f"k={k:<3d} seed={seed} {arm:<13s} acc={result['accuracy']:.3f} "
                    f"epochs_to_{args.target:g}={result['epochs_to_target']} "
                    f"({result['seconds']:.1f} s)",
                    file=sys.stderr,
                )
    total = time.perf_counter() - start

    print(
        f"\nTarget: load_digits 28x28, held-out test = 800 images; "
        f"mean ± std over seeds {args.seeds}; target accuracy {args.target:g}"
    )
    print(
        f"pretrained: head {args.head_steps} steps @ {args.head_lr:g}, "
        f"fine-tune {args.fine_tune_steps} steps @ {args.fine_tune_lr:g} (BN frozen); "
        f"scratch: {args.head_steps + args.fine_tune_steps} steps @ {args.scratch_lr:g}\n"
    )
    print(
        f"{'k/class':>7s}  {'arm':<13s} {'accuracy':>15s}  "
        f"{'epochs to target (reached)':>27s}  {'steps/epoch':>11s}"
    )
    for k in args.budgets:
        for arm in args.arms:
            sel = [r for r in rows if r["k"] == k and r["arm"] == arm]
            acc = np.array([r["accuracy"] for r in sel])
            reached = [r["epochs_to_target"] for r in sel if r["epochs_to_target"]]
            ett = (
                f"{np.mean(reached):.1f} ± {np.std(reached):.1f} ({len(reached)}/{len(sel)})"
                if reached
                else f"never (0/{len(sel)})"
            )
            print(
                f"{k:>7d}  {arm:<13s} {acc.mean():.3f} ± {acc.std():.3f}  "
                f"{ett:>27s}  {sel[0]['steps_per_epoch']:>11d}"
            )
    print(f"\ntotal time {total:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows, "seconds": total}, handle, indent=1)


if __name__ == "__main__":
    main()
