"""fit() overhead: TransferModel.fit against a hand-written Keras/TF training loop.

Both train the same architecture (same backbone, head, optimizer, batch size,
data already in memory) for the same number of epochs with the backbone
unfrozen; the hand-written loop is a `tf.function` step with `GradientTape`
and `optimizer.apply`. Epochs are interleaved (A, B, A, B, ...) so the noisy
two-core machine slows both alike; the first epoch of each (tracing) is reported
apart. Prints the median per-epoch time ratio fit()/hand loop.

    python benchmarks/fit_overhead.py [--backbone mobilenet_v3_small] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="fewer images/epochs")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs = 128, 3

    import keras
    import numpy as np
    import tensorflow as tf

    import kerastransfer as kt

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 5, args.images)
    shape = (args.size, args.size, 3)

    ours = kt.TransferModel(args.backbone, num_classes=5, weights=None,
                            input_shape=shape)
    ours.compile(optimizer=keras.optimizers.Adam(1e-4))

    hand = kt.TransferModel(args.backbone, num_classes=5, weights=None,
                            input_shape=shape)
    optimizer = keras.optimizers.Adam(1e-4)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, hand(images, training=True))
        grads = tape.gradient(loss, hand.trainable_variables)
        optimizer.apply(grads, hand.trainable_variables)
        return loss

    def hand_epoch():
        for images, labels in dataset:
            step(images, labels)

    def fit_epoch(epoch):
        # Keras's own loop on the compiled TransferModel: what each phase runs.
        keras.Model.fit(ours, x, y, epochs=epoch + 1, initial_epoch=epoch,
                        batch_size=args.batch_size, shuffle=False, verbose=0)

    # TransferModel.fit's phase set-up (unfreeze + recompile) is part of fit():
    # time one whole fit() call of N epochs against N hand epochs, interleaved
    # per epoch through Keras's own loop for the steady state.
    times = {"fit": [], "hand": []}
    start = time.perf_counter()
    history = ours.fit(x, y, epochs=1, batch_size=args.batch_size, shuffle=False,
                       verbose=0)  # weights=None -> one from-scratch phase
    first_fit = time.perf_counter() - start
    start = time.perf_counter()
    hand_epoch()
    first_hand = time.perf_counter() - start
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        fit_epoch(epoch)
        times["fit"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hand_epoch()
        times["hand"].append(time.perf_counter() - start)
    fit_median = statistics.median(times["fit"])
    hand_median = statistics.median(times["hand"])
    result = {
        "title": "fit() overhead vs a hand-written tf.function loop",
        "backbone": args.backbone, "size": args.size, "images": args.images,
        "batch_size": args.batch_size, "phases": [p["name"] for p in history.phases],
        "first_epoch_ratio": first_fit / first_hand,
        "steady_epoch_ratio": fit_median / hand_median,
        "fit_epoch_seconds": fit_median, "hand_epoch_seconds": hand_median,
    }
    print(f"{args.backbone} {args.size}px, {args.images} images, batch "
          f"{args.batch_size}, epochs interleaved on one machine:")
    print(f"  first epoch (incl. tracing + phase set-up): fit/hand = "
          f"{result['first_epoch_ratio']:.2f}")
    print(f"  steady-state epoch (median of {args.epochs}): fit/hand = "
          f"{result['steady_epoch_ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
