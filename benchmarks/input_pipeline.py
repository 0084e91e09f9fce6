"""Step time with an image-folder pipeline vs data already in memory, in one run.

Writes a folder of JPEGs (5 classes, 320x240, smooth images with noise, as
photos compress), then trains the same MobileNetV3Small (random weights, 224 px,
backbone frozen: the light first phase, where input costs show most) for a few
epochs on:

* `memory` (the baseline): the decoded, resized images as batches of tensors
  already in memory (a cached, prefetched `tf.data.Dataset`);
* `numpy arrays`: the same images as numpy arrays, `fit(x, y)` (Keras slices
  and converts them every epoch);
* `folder+cache`: `load_image_folder(..., cache=True)` - parallel decode and
  resize in `tf.data`, cached after the first epoch, prefetched;
* `folder, no cache`: `load_image_folder(..., cache=False)` - decode every epoch.

Prints the time per training step of each and its ratio to `memory` (first
epoch, which includes tracing and decoding, and the median of later epochs).
The arms run interleaved, epoch by epoch, so load drift hits them alike.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --images 512 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import keras
import numpy as np
from PIL import Image

import kerastransfer as kt
from kerastransfer import data as kd


def write_folder(root, images, classes=5):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320].astype("float32")
    for i in range(images):
        label = i % classes
        base = np.stack([
            128 + 100 * np.sin(xx / (20 + 7 * label) + i),
            128 + 100 * np.cos(yy / (25 + 5 * label) - i),
            np.full_like(xx, 40.0 * label),
        ], axis=-1)
        pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype("uint8")
        folder = os.path.join(root, f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def model_for(size):
    keras.utils.set_random_seed(0)
    model = kt.TransferModel("mobilenet_v3_small", num_classes=5, weights=None,
                             input_shape=(size, size, 3))
    model.freeze_backbone()  # the frozen first phase
    model.compile(optimizer="adam")
    return model


def interleaved(arms: dict, epochs: int, batch_size: int, size: int) -> dict:
    """Round-robin: epoch e of every arm, then epoch e+1... (the machine's load
    drifts; interleaving spreads it evenly over the arms)."""
    models = {name: model_for(size) for name in arms}
    times = {name: [] for name in arms}
    for _ in range(epochs):
        for name, (x, y) in arms.items():
            start = time.perf_counter()
            keras.Model.fit(models[name], x, y, epochs=1, verbose=0,
                            batch_size=batch_size if y is not None else None)
            times[name].append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    steps = -(-args.images // args.batch_size)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_folder(root, args.images)
        kwargs = dict(image_size=(args.size, args.size), batch_size=args.batch_size,
                      seed=0)
        t0 = time.perf_counter()
        cached = kd.load_image_folder(root, cache=True, **kwargs)
        scan = time.perf_counter() - t0
        uncached = kd.load_image_folder(root, cache=False, **kwargs)
        in_memory = kd.load_image_folder(root, cache=False, shuffle=False, **kwargs)
        batches = [(a.numpy(), b.numpy()) for a, b in in_memory.train]
        xs, ys = zip(*batches, strict=True)
        x, y = np.concatenate(xs), np.concatenate(ys)
        print(f"{args.images} JPEGs 320x240 -> {args.size}px, batch {args.batch_size}, "
              f"{steps} steps/epoch, MobileNetV3Small frozen backbone "
              f"(written in {t0 - start:.1f}s, checked with Pillow in {scan:.2f}s)")
        import tensorflow as tf

        tensors = tf.data.Dataset.from_tensor_slices((x, y)).batch(
            args.batch_size).cache().prefetch(tf.data.AUTOTUNE)
        for _ in tensors:  # fill: every batch is a tensor in memory
            pass
        arms = interleaved({
            "memory": (tensors, None),
            "numpy arrays": (x, y),
            "folder+cache": (cached.train, None),
            "folder, no cache": (uncached.train, None),
        }, args.epochs, args.batch_size, args.size)
    base_first = arms["memory"][0] / steps
    base_later = statistics.median(arms["memory"][1:]) / steps
    print(f"{'':20}{'epoch 1 s/step':>16}{'ratio':>8}{'later s/step':>15}{'ratio':>8}")
    for name, times in arms.items():
        first = times[0] / steps
        later = statistics.median(times[1:]) / steps
        print(f"{name:20}{first:16.4f}{first / base_first:8.2f}{later:15.4f}"
              f"{later / base_later:8.2f}")
    print("ratio = step time / step time with data already in memory")


if __name__ == "__main__":
    main()
