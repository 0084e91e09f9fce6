"""Frozen-phase epoch time with and without cached backbone features, in one run.

Two identical MobileNetV3Small models (random weights, 224 px, the backbone
frozen as in the first phase of transfer learning) train their head on the same
images: one with `fit(..., cache_features=False)` (every epoch runs the frozen
backbone on every image), one with `cache_features=True` (the backbone runs once,
then each epoch trains the head on the cached features). Prints per-epoch times
(median over the epochs after the first), the one-off extraction cost, the
per-epoch speed-up and the speed-up of the whole frozen phase, and checks that
both heads end with the same weights.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/feature_cache.py
    python benchmarks/feature_cache.py --images 512 --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
from timing import EpochTimer  # benchmarks/timing.py (the script's folder)

import kerastransfer as kt


def build(size):
    keras.utils.set_random_seed(0)
    model = kt.TransferModel("mobilenet_v3_small", num_classes=5, weights=None,
                             input_shape=(size, size, 3), dropout=0.0)
    model.pretrained = True  # train as a transfer model: frozen phase first
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 5, args.images)

    results = {}
    for cached in (False, True):
        model = build(args.size)
        timer = EpochTimer()
        keras.utils.set_random_seed(1)
        start = time.perf_counter()
        model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, shuffle=False,
                  verbose=0, cache_features=cached, callbacks=[timer])
        total = time.perf_counter() - start
        head = [w.numpy() for layer in model.head_layers for w in layer.weights]
        results[cached] = {"epochs": timer.times, "total": total, "head": head}

    plain, fast = results[False], results[True]
    plain_epoch = statistics.median(plain["epochs"][1:] or plain["epochs"])
    fast_epoch = statistics.median(fast["epochs"][1:] or fast["epochs"])
    extraction = fast["total"] - sum(fast["epochs"])
    pairs = zip(plain["head"], fast["head"], strict=True)
    diff = max(float(np.abs(a - b).max()) for a, b in pairs)
    print(f"MobileNetV3Small, {args.images} images at {args.size}px, batch "
          f"{args.batch_size}, {args.epochs} frozen-phase epochs")
    print(f"{'':28}{'uncached':>12}{'cached':>12}")
    for i, (a, b) in enumerate(zip(plain["epochs"], fast["epochs"], strict=False)):
        print(f"{'epoch ' + str(i + 1) + ' (s)':28}{a:12.3f}{b:12.3f}")
    print(f"{'median epoch 2+ (s)':28}{plain_epoch:12.3f}{fast_epoch:12.3f}")
    print(f"{'one-off extraction (s)':28}{'-':>12}{extraction:12.3f}")
    print(f"{'whole fit() call (s)':28}{plain['total']:12.3f}{fast['total']:12.3f}")
    print(f"per-epoch speed-up: {plain_epoch / fast_epoch:.1f}x")
    print(f"whole frozen phase speed-up ({args.epochs} epochs, extraction included): "
          f"{plain['total'] / fast['total']:.1f}x")
    print(f"max |head weight difference| cached vs uncached: {diff:.2e}")


if __name__ == "__main__":
    main()
