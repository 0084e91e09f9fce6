"""What a cached frozen phase costs next to the feature pass alone.

With the backbone frozen, the head's phase can run on features computed once
(`cache_features=True`). This measures, side by side in one run (interleaved
repeats, medians; this machine is shared, so compare ratios):

* `feature pass`: `feature_extractor().predict` over the training images -
  the floor of any frozen phase;
* `fit, 10 cached epochs`: `TransferModel.fit(epochs=10, cache_features=True)`
  (the feature pass + 10 Keras epochs of the Dense head);
* `linear probe`: `TransferModel.fit(epochs=1, head="linear_probe")` (the
  feature pass + the head solved to convergence by `fit_linear_probe`,
  cross-validation of its L2 strength included);
* `one compiled loop`: the feature pass + the same 10 epochs of Adam on the
  cached features as a single Keras epoch (`steps_per_epoch = 10 x steps`),
  so Keras's per-epoch overhead is paid once.

With `--parts`, also the pieces of those calls, to see where the time goes:
fit's feature extraction (`training.features.extract_features`, which traces
a new `tf.function` per call) and the same with one traced function reused;
the head's 10 Keras epochs on cached features alone (as `fit` compiles it),
and with `steps_per_execution=8` (one call per epoch); the probe solver alone
with `standardize=True` (what `fit` uses), `"auto"` and `False`.

Random weights stand in for pretrained ones (nothing can be downloaded here);
the model is marked pretrained so that `fit` runs a frozen phase. (A first run
built the model with `weights=None` and no such mark: `fit` then trained the
whole network from scratch, which is what its 71.8x measured.)
Measured 2026-12-03: see benchmarks/results.md and docs/design.md fact 27.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/frozen_phase.py
    python benchmarks/frozen_phase.py --images 512 --size 128 --repeats 3
    python benchmarks/frozen_phase.py --parts    # + where the time goes
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", action="store_true",
                        help="also time the pieces of the fit calls")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import kerastransfer as kt

    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, args.size, args.size, 3)).astype("float32")
    y = np.arange(args.images) % args.classes
    keras.utils.set_random_seed(0)
    model = kt.TransferModel(args.backbone, num_classes=args.classes, weights=None,
                             input_shape=(args.size, args.size, 3), dropout=0.0)
    model.pretrained = True  # random weights stand in for pretrained ones
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    extractor = model.feature_extractor()
    steps = math.ceil(args.images / args.batch_size)

    def feature_pass():
        return extractor.predict(x, batch_size=args.batch_size, verbose=0)

    def fit_cached():
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                  cache_features=True, verbose=0)

    def linear_probe():
        model.fit(x, y, epochs=1, batch_size=args.batch_size, head="linear_probe",
                  verbose=0)

    head = keras.Sequential([keras.Input((extractor.output_shape[-1],)),
                             keras.layers.Dense(args.classes, activation="softmax")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss="sparse_categorical_crossentropy")

    def one_loop():
        features = feature_pass()
        data = (tf.data.Dataset.from_tensor_slices((features, y))
                .shuffle(len(y), seed=0).batch(args.batch_size).repeat())
        head.fit(data, steps_per_epoch=steps * args.epochs, epochs=1, verbose=0)

    candidates = {"feature pass": feature_pass,
                  f"fit, {args.epochs} cached epochs": fit_cached,
                  "linear probe": linear_probe,
                  f"one compiled loop ({args.epochs} epochs)": one_loop}
    if args.parts:
        candidates.update(_parts(model, x, y, args))
    for fn in candidates.values():  # warm up: tracing, thread pools
        fn()
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(v) for name, v in times.items()}
    # On a shared machine other processes only ever add time: the minimum over
    # repeats is the steadier estimate, the median the more typical one.
    minima = {name: min(v) for name, v in times.items()}
    print(f"{args.backbone} (random weights) at {args.size} px, {args.images} images, "
          f"batch {args.batch_size} ({steps} steps/epoch), {args.repeats} interleaved "
          "repeats:")
    print(f"  {'':<38s} {'median':>9s} {'ratio':>6s} {'minimum':>9s} {'ratio':>6s}")
    for name in candidates:
        print(f"  {name:<38s} {medians[name]:8.3f}s "
              f"{medians[name] / medians['feature pass']:5.2f}x "
              f"{minima[name]:8.3f}s {minima[name] / minima['feature pass']:5.2f}x")
    print("ratio = time / the feature pass's time (same statistic)")


def _parts(model, x, y, args) -> dict:
    """The pieces of the two fit calls, each timed alone (see the docstring)."""
    import keras

    from kerastransfer.training import features as features_lib
    from kerastransfer.training.probe import fit_linear_probe

    model.freeze_backbone()
    features = model.feature_extractor().predict(x, batch_size=args.batch_size,
                                                 verbose=0)
    traced = features_lib._extract_fn(model)  # one tf.function, traced once

    def extract_reused():
        original = features_lib._extract_fn
        features_lib._extract_fn = lambda _: traced
        try:
            features_lib.extract_features(model, x, y, batch_size=args.batch_size)
        finally:
            features_lib._extract_fn = original

    def head_epochs(steps_per_execution):
        def run():
            head = model.head_model()
            model._compile_head(head)  # as fit does: a fresh train function
            if steps_per_execution > 1:
                head.compile(optimizer=keras.optimizers.Adam(1e-3),
                             loss="sparse_categorical_crossentropy",
                             steps_per_execution=steps_per_execution)
            head.fit(features, y, batch_size=args.batch_size, epochs=args.epochs,
                     verbose=0)
        return run

    def solver(standardize):
        return lambda: fit_linear_probe(features, y, num_classes=args.classes,
                                        standardize=standardize)

    steps = math.ceil(args.images / args.batch_size)
    return {
        "  fit's extraction (new tf.function)": lambda: features_lib.extract_features(
            model, x, y, batch_size=args.batch_size),
        "  the same, tf.function reused": extract_reused,
        f"  {args.epochs} head epochs alone": head_epochs(1),
        f"  the same, steps_per_execution={steps}": head_epochs(steps),
        "  probe solver, standardize=True": solver(True),
        "  probe solver, standardize='auto'": solver("auto"),
        "  probe solver, standardize=False": solver(False),
    }


if __name__ == "__main__":
    main()
