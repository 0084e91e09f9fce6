"""onnxruntime vs Keras latency, and int8/fp16 vs float32 onnxruntime, in one run.

For each model (random weights with BatchNorm statistics set from one pass; no
download) at 224 px: median latency of a Keras `tf.function` call, of
`model.predict`, and of `OnnxPredictor.predict` (float32, static int8 QDQ, fp16)
at batch sizes 1 and 32, printed as ratios measured side by side. A ratio below 1
means onnxruntime takes less time. int8 agreement is the top-1 agreement with the
float32 ONNX model on the calibration-like images below (random weights make
these figures pessimistic). Also compares session options at batch 1.

Usage:
    python benchmarks/onnx_speed.py [--size 224] [--repeats 20]
        [--models mobilenet_v3_small,efficientnet_b0,resnet50]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# benchmarks/timing.py (the script's folder), after the log level is set
from timing import median_seconds, smooth_images  # noqa: E402


def bench(name: str, size: int, repeats: int, folder: str) -> None:
    import keras
    import tensorflow as tf

    import kerastransfer as kt
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import OnnxPredictor
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    model = kt.TransferModel(name, num_classes=10, weights=None,
                             input_shape=(size, size, 3))
    recalibrate_batchnorm(model, smooth_images(16, size, seed=1), layers="backbone")
    calibration = smooth_images(32, size, seed=2)
    evaluation = smooth_images(64, size, seed=3)
    paths = {k: os.path.join(folder, f"{name}_{k}.onnx")
             for k in ("fp32", "int8", "fp16")}
    export_onnx(model, paths["fp32"])
    q = export_onnx(model, paths["int8"], quantize="static",
                    calibration_data=calibration, validation_data=evaluation)
    h = export_onnx(model, paths["fp16"], fp16=True, validation_data=evaluation)

    call = tf.function(lambda x: model(x, training=False))
    predictors = {k: OnnxPredictor(p) for k, p in paths.items()}
    results = {}
    for batch in (1, 32):
        x = smooth_images(batch, size, seed=10 + batch)
        tx = tf.constant(x)
        reps = repeats if batch == 1 else max(3, repeats // 5)
        results[("tf.function", batch)] = median_seconds(
            lambda tx=tx: call(tx), reps)
        results[("predict", batch)] = median_seconds(
            lambda x=x, b=batch: model.predict(x, batch_size=b, verbose=0),
            max(3, reps // 4))
        for k, predictor in predictors.items():
            results[(k, batch)] = median_seconds(
                lambda p=predictor, x=x, b=batch: p.predict(x, batch_size=b), reps)

    print(f"\n== {name} at {size}px ==")
    print(f"{'':<28}{'batch 1':>12}{'batch 32':>12}")
    for label, key in [("tf.function call (ms)", "tf.function"),
                       ("model.predict (ms)", "predict"),
                       ("ORT fp32 (ms)", "fp32"), ("ORT int8 static (ms)", "int8"),
                       ("ORT fp16 (ms)", "fp16")]:
        print(f"{label:<28}{results[(key, 1)] * 1e3:>12.2f}"
              f"{results[(key, 32)] * 1e3:>12.2f}")
    for label, num, den in [("ORT fp32 / tf.function", "fp32", "tf.function"),
                            ("ORT fp32 / model.predict", "fp32", "predict"),
                            ("int8 / ORT fp32", "int8", "fp32"),
                            ("fp16 / ORT fp32", "fp16", "fp32")]:
        print(f"{label:<28}{results[(num, 1)] / results[(den, 1)]:>12.2f}"
              f"{results[(num, 32)] / results[(den, 32)]:>12.2f}")
    print(f"int8 top-1 agreement with fp32: {q.agreement:.3f} "
          f"(max |dprob| {q.quantized_max_abs_diff:.3g}); fp16: {h.agreement:.3f} "
          f"(max |dprob| {h.quantized_max_abs_diff:.3g})")

    # session options at batch 1 (ratio to the default predictor: spinning off,
    # all cores, ORT_ENABLE_ALL)
    x = smooth_images(1, size, seed=99)
    base = results[("fp32", 1)]
    variants = {
        "spinning on": dict(allow_spinning=True),
        "1 thread": dict(intra_op_threads=1),
    }
    parts = []
    for label, kwargs in variants.items():
        predictor = OnnxPredictor(paths["fp32"], **kwargs)
        t = median_seconds(lambda p=predictor: p.predict(x), repeats)
        parts.append(f"{label} {t / base:.2f}x")
    print("session options vs default (batch 1): " + ", ".join(parts), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models",
                        default="mobilenet_v3_small,efficientnet_b0,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("root").setLevel(logging.ERROR)  # quantizer's INFO/WARNING
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}, "
          f"{os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory(prefix="onnx_speed_") as folder:
        for name in args.models.split(","):
            bench(name, args.size, args.repeats, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
