"""Static int8 vs float32 onnxruntime for a segmentation model, in one run.

A `SegmentationModel` (default: MobileNetV2 encoder, FPN decoder, 128 px, 3
classes) with random weights made well conditioned as
tests/test_segmentation_catalog.py does (every BatchNorm recalibrated on 16
images, logits scaled to unit spread; no download) is exported twice: float32
and static int8 QDQ calibrated on 32 images. `OnnxPredictor.predict` is timed
on both files side by side at batch sizes 1 and 8 (median of `--repeats`
calls), and the int8 file's per-pixel agreement (same argmax class) with the
float32 file is measured on 32 other images. Random weights give pessimistic
agreement: a trained model's logits have wider margins between classes.

Usage:
    python benchmarks/segmentation_int8.py [--backbone mobilenet_v2]
        [--decoder fpn] [--size 128] [--repeats 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# benchmarks/timing.py (the script's folder), after the log level is set
from timing import alternating_medians, print_ratio_table, smooth_images  # noqa: E402


def conditioned_model(backbone: str, decoder: str, size: int):
    """A random-weight model with data-set BatchNorm statistics and logits of
    unit spread (random logits reach +-40 and make every rounding count)."""
    import keras
    import numpy as np

    import kerastransfer as kt
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    model = kt.SegmentationModel(backbone, 3, weights=None,
                                 input_shape=(size, size, 3), decoder=decoder)
    images = smooth_images(16, size, seed=1)
    recalibrate_batchnorm(model, images, layers="all")
    classifier = model.get_layer("decoder_logits")
    logits = keras.Model(model.input, classifier.output)(images, training=False)
    spread = float(np.std(np.asarray(logits)))
    classifier.kernel.assign(np.asarray(classifier.kernel) / spread)
    classifier.bias.assign(np.asarray(classifier.bias) / spread)
    return model


def bench(backbone: str, decoder: str, size: int, repeats: int, folder: str) -> None:
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import OnnxPredictor

    model = conditioned_model(backbone, decoder, size)
    calibration = smooth_images(32, size, seed=2)
    evaluation = smooth_images(32, size, seed=3)
    paths = {k: os.path.join(folder, f"{backbone}_{k}.onnx") for k in ("fp32", "int8")}
    export_onnx(model, paths["fp32"])
    q = export_onnx(model, paths["int8"], quantize="static",
                    calibration_data=calibration, validation_data=evaluation)
    predictors = {k: OnnxPredictor(p) for k, p in paths.items()}
    masks = {k: p.predict_masks(evaluation) for k, p in predictors.items()}
    agreement = float((masks["fp32"] == masks["int8"]).mean())

    results = alternating_medians(
        {k: (lambda x, p=p: p.predict(x, batch_size=len(x)))
         for k, p in predictors.items()},
        {b: smooth_images(b, size, seed=10 + b) for b in (1, 8)}, repeats)

    print(f"\n== {backbone} + {decoder} at {size}px, 3 classes ==")
    print_ratio_table(results, {"fp32": "ORT fp32 (ms)",
                                "int8": "ORT int8 static (ms)"}, (1, 8), width=26)
    print(f"int8 pixel agreement with fp32 on {len(evaluation)} images: "
          f"{agreement:.4f} (export report: {q.agreement:.4f}, "
          f"max |dprob| {q.quantized_max_abs_diff:.3g}); file size "
          f"{os.path.getsize(paths['int8']) / os.path.getsize(paths['fp32']):.2f}x",
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--decoder", default="fpn", choices=["fpn", "unet"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("root").setLevel(logging.ERROR)  # quantizer's INFO/WARNING
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory(prefix="segmentation_int8_") as folder:
        bench(args.backbone, args.decoder, args.size, args.repeats, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
