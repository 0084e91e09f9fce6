"""Shared steps of the example scripts: data for --smoke, and the ONNX check."""

from __future__ import annotations

import logging
import os

import numpy as np

logger = logging.getLogger("examples")


def smoke_folder(out_dir: str, classes=("cat", "dog"), per_class=12,
                 size=80) -> str:
    """A tiny synthetic image folder standing in for the real data set, made
    in `out_dir/smoke_data` (next to the run's outputs, not left in /tmp)."""
    from kerastransfer.data.synthetic import write_image_folder

    return write_image_folder(os.path.join(out_dir, "smoke_data"), classes,
                              per_class=per_class, size=size)


def export_and_check(model, data, out_dir: str) -> dict:
    """Exports `model` to ONNX (validated against Keras), then checks that the
    TensorFlow-free predictor agrees with Keras on validation images."""
    from kerastransfer.export import export_onnx
    from kerastransfer.runtime import OnnxPredictor

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.onnx")
    images = next(iter(data.validation or data.train))[0].numpy()
    report = export_onnx(model, path, validation_data=images)
    predictor = OnnxPredictor(path)
    onnx_probs = predictor.predict(images)
    keras_probs = model.predict(images, verbose=0)
    agreement = float(np.mean(onnx_probs.argmax(1) == keras_probs.argmax(1)))
    result = {"onnx": path, "max_abs_diff": float(np.abs(onnx_probs - keras_probs)
                                                  .max()),
              "top1_agreement": agreement, "export_max_abs_diff": report.max_abs_diff}
    logger.info("ONNX export: %s", result)
    if agreement < 1.0:
        raise SystemExit(f"ONNX and Keras disagree on {1 - agreement:.1%} of images")
    return result
