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

Random weights stand in for pretrained ones (nothing can be downloaded here);
the model is marked pretrained so that `fit` runs a frozen phase. (A first run
built the model with `weights=None` and no such mark: `fit` then trained the
whole network from scratch, which is what its 71.8x measured.)
Measured 2026-12-03: see benchmarks/results.md.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/frozen_phase.py
    python benchmarks/frozen_phase.py --images 512 --size 128 --repeats 3
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
    for fn in candidates.values():  # warm up: tracing, thread pools
        fn()
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(v) for name, v in times.items()}
    base = medians["feature pass"]
    print(f"{args.backbone} (random weights) at {args.size} px, {args.images} images, "
          f"batch {args.batch_size} ({steps} steps/epoch), {args.repeats} interleaved "
          "repeats, medians:")
    for name, seconds in medians.items():
        print(f"  {name:<34s} {seconds:7.3f} s   "
              f"{seconds / base:5.2f}x the feature pass")


if __name__ == "__main__":
    main()
