"""What a cached frozen phase costs next to the feature pass alone.

With the backbone frozen, the head's phase can run on features computed once
(`cache_features=True`). This measures, side by side in one run (interleaved
repeats; this machine is shared, so compare ratios):

* `feature pass`: `feature_extractor().predict` over the training images -
  the floor of any frozen phase;
* `fit, 10 cached epochs`: `TransferModel.fit(epochs=10, cache_features=True)`
  (the feature pass + 10 Keras epochs of the Dense head);
* `linear probe`: `TransferModel.fit(epochs=1, head="linear_probe")` (the
  feature pass + the head solved to convergence by `fit_linear_probe`,
  cross-validation of its L2 strength included).

Each is timed twice: *cold*, on a freshly built model (what a user's `fit`
call pays: the backbone is traced once, by `predict` or by `fit`), and
*warm*, called again on the same model (traced functions reused).

With `--parts`, also the pieces, to see where the time goes: fit's
extraction alone (`training.features.extract_features`, traced once per
model), the head's 10 epochs on cached features given to Keras as arrays
(a new shuffled iterator per epoch, as before the repeated pipeline), and
the probe's solver with `standardize=True`, `"auto"` and `False`.

Random weights stand in for pretrained ones (nothing can be downloaded here);
the model is marked pretrained so that `fit` runs a frozen phase.
Measured 2026-12-03: see benchmarks/results.md and docs/design.md fact 29.

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
    steps = math.ceil(args.images / args.batch_size)

    def build():
        keras.utils.set_random_seed(0)
        model = kt.TransferModel(args.backbone, num_classes=args.classes,
                                 weights=None, input_shape=(args.size, args.size, 3),
                                 dropout=0.0)
        model.pretrained = True  # random weights stand in for pretrained ones
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        return model

    extractors = {}  # one per model, so that its predict function is reused

    def feature_pass(model):
        if id(model) not in extractors:
            extractors[id(model)] = model.feature_extractor()
        return extractors[id(model)].predict(x, batch_size=args.batch_size,
                                             verbose=0)

    def fit_cached(model):
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                  cache_features=True, verbose=0)

    def linear_probe(model):
        model.fit(x, y, epochs=1, batch_size=args.batch_size, head="linear_probe",
                  verbose=0)

    candidates = {"feature pass": feature_pass,
                  f"fit, {args.epochs} cached epochs": fit_cached,
                  "linear probe": linear_probe}
    warm_model = build()
    if args.parts:
        candidates.update(_parts(warm_model, x, y, args))
    for fn in candidates.values():  # warm up: thread pools, the warm model
        fn(warm_model)
    times = {(name, mode): [] for name in candidates for mode in ("cold", "warm")}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            for mode in ("cold", "warm"):
                if mode == "cold" and name.startswith("  "):
                    continue  # the parts are timed warm only
                model = build() if mode == "cold" else warm_model
                start = time.perf_counter()
                fn(model)
                times[name, mode].append(time.perf_counter() - start)
    medians = {key: statistics.median(v) for key, v in times.items() if v}
    print(f"{args.backbone} (random weights) at {args.size} px, {args.images} images, "
          f"batch {args.batch_size} ({steps} steps/epoch), {args.repeats} interleaved "
          "repeats, medians:")
    print(f"  {'':<40s} {'cold':>8s} {'ratio':>6s} {'warm':>8s} {'ratio':>6s}")
    for name in candidates:
        row = f"  {name:<40s}"
        for mode in ("cold", "warm"):
            if (name, mode) in medians:
                value = medians[name, mode]
                row += f" {value:7.3f}s {value / medians['feature pass', mode]:5.2f}x"
            else:
                row += f" {'-':>8s} {'':>6s}"
        print(row)
    print("ratio = time / the feature pass's time (same mode); cold = a freshly "
          "built model, warm = the same model again")


def _parts(model, x, y, args) -> dict:
    """The pieces of the fit calls, each timed alone on a warm model."""
    from kerastransfer.training import features as features_lib
    from kerastransfer.training.probe import fit_linear_probe

    model.freeze_backbone()
    features = model.feature_extractor().predict(x, batch_size=args.batch_size,
                                                 verbose=0)

    def head_epochs_as_arrays(_):
        head = model.head_model()
        model._compile_head(head)  # as fit does: a fresh train function
        head.fit(features, y, batch_size=args.batch_size, epochs=args.epochs,
                 verbose=0)

    def solver(standardize):
        return lambda _: fit_linear_probe(features, y, num_classes=args.classes,
                                          standardize=standardize)

    return {
        "  fit's extraction (traced once)": lambda _: features_lib.extract_features(
            model, x, y, batch_size=args.batch_size),
        f"  {args.epochs} head epochs, arrays": head_epochs_as_arrays,
        "  probe solver, standardize=True": solver(True),
        "  probe solver, standardize='auto'": solver("auto"),
        "  probe solver, standardize=False": solver(False),
    }


if __name__ == "__main__":
    main()
