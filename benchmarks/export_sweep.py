"""Exports every catalog backbone to ONNX and prints how well each matches Keras.

Random weights (`weights=None`, nothing is downloaded) with BatchNorm statistics
set from one pass over random images, so outputs depend on the input. For each
backbone one ONNX graph with two outputs (probabilities and pooled backbone
features) is converted with the same code as `export_onnx` (tf2onnx with the
export patches, onnxruntime's basic offline optimization), loaded in onnxruntime
and compared with Keras at batch sizes 1 and 3.

Usage:
    python benchmarks/export_sweep.py [--subset] [--size 96] [--only resnet50,...]

Columns: ok, seconds (convert + optimize + check), max |diff| of probabilities,
max |diff| of features and that difference relative to max |feature|, file size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_SMALLEST = [
    "mobilenet_v3_small", "mobilenet", "mobilenet_v2", "efficientnet_b0",
    "efficientnet_v2_b0", "resnet50", "resnet50_v2", "densenet121", "vgg16",
    "inception_v3", "inception_resnet_v2", "xception", "nasnet_mobile",
    "convnext_tiny",
]


def sweep_row(name: str, size: int, folder: str) -> dict:
    import keras
    import numpy as np
    import onnx

    import kerastransfer as kt
    from kerastransfer.export.onnx import convert_to_onnx
    from kerastransfer.export.optimize import optimize_onnx
    from kerastransfer.export.validate import load_session, random_images
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    spec = kt.get_backbone(name)
    size = max(size, spec.min_size)
    keras.utils.set_random_seed(0)
    model = kt.TransferModel(name, num_classes=5, weights=None,
                             input_shape=(size, size, 3))
    recalibrate_batchnorm(model, random_images(8, (size, size, 3), seed=42),
                          layers="backbone")
    both = keras.Model(model.input, [model.output, model.feature_extractor().output])
    start = time.perf_counter()
    proto = optimize_onnx(convert_to_onnx(both, (size, size, 3)))
    path = os.path.join(folder, f"{name}.onnx")
    onnx.save(proto, path)
    session = load_session(path)
    prob_diff = feat_diff = feat_scale = 0.0
    for batch in (1, 3):
        x = random_images(batch, (size, size, 3), seed=batch)
        expected = [np.asarray(t) for t in both(x)]
        actual = session.run(None, {"image": x})
        prob_diff = max(prob_diff, float(np.abs(actual[0] - expected[0]).max()))
        feat_diff = max(feat_diff, float(np.abs(actual[1] - expected[1]).max()))
        feat_scale = max(feat_scale, float(np.abs(expected[1]).max()))
    seconds = time.perf_counter() - start
    size_mb = os.path.getsize(path) / 1e6
    os.remove(path)
    return dict(name=name, size=size, ok=prob_diff <= 1e-4, seconds=seconds,
                prob_diff=prob_diff, feat_diff=feat_diff,
                feat_rel=feat_diff / max(feat_scale, 1e-12), mb=size_mb)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="store_true",
                        help="one backbone per family")
    parser.add_argument("--size", type=int, default=96, help="input size (px)")
    parser.add_argument("--only", default="", help="comma-separated backbones")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    import kerastransfer as kt

    names = kt.list_backbones(source="keras")
    if args.only:
        names = args.only.split(",")
    elif args.subset:
        # the smallest backbone of each family, then any family not listed
        subset = [n for n in _SMALLEST if n in names]
        seen = {kt.get_backbone(n).family for n in subset}
        for name in names:
            family = kt.get_backbone(name).family
            if family not in seen:
                seen.add(family)
                subset.append(name)
        names = subset
    header = (f"{'backbone':<22} {'px':>4} {'ok':>4} {'seconds':>8} "
              f"{'max|dprob|':>11} {'max|dfeat|':>11} {'rel dfeat':>10} {'MB':>8}")
    print(header)
    print("-" * len(header), flush=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="export_sweep_") as folder:
        for name in names:
            try:
                r = sweep_row(name, args.size, folder)
                print(f"{r['name']:<22} {r['size']:>4} {'yes' if r['ok'] else 'NO':>4} "
                      f"{r['seconds']:>8.1f} {r['prob_diff']:>11.2e} "
                      f"{r['feat_diff']:>11.2e} {r['feat_rel']:>10.2e} "
                      f"{r['mb']:>8.1f}", flush=True)
                failures += not r["ok"]
            except Exception as error:  # noqa: BLE001 - report and go on
                failures += 1
                first = str(error).splitlines()[0][:90] if str(error) else ""
                print(f"{name:<22} {'':>4} {'FAIL':>4}  {type(error).__name__}: "
                      f"{first}", flush=True)
                traceback.print_exc(file=sys.stderr)
            import keras

            keras.backend.clear_session()
    print(f"{len(names) - failures}/{len(names)} backbones exported with "
          "max |dprob| <= 1e-4", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
