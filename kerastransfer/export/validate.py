"""Checks an exported ONNX model against the Keras model, like Hugging Face Optimum.

Both run on the same random inputs at several batch sizes; every output of every
batch is compared against a tolerance, every mismatch is collected, and one
`ExportValidationError` lists them all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError, ExportValidationError

__all__ = ["load_session", "validate_onnx", "random_images"]

logger = logging.getLogger(__name__)


def load_session(path_or_bytes: Any) -> Any:
    """Loads an ONNX model in onnxruntime (CPU), turning a refusal into ExportError.

    tf2onnx can write a file that onnxruntime rejects without raising (string ops,
    unconverted function calls): every export is loaded here.
    """
    import onnxruntime as ort

    try:
        return ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
        raise ExportError(
            f"onnxruntime refuses the exported model: {error}. The model uses "
            "operations ONNX or onnxruntime cannot run; change the backbone or "
            "report it. Received: model=<exported ONNX graph>"
        ) from error


def random_images(batch: int, image_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform random RGB images in [0, 255], float32 NHWC."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (batch, *image_shape)).astype("float32")


def validate_onnx(
    keras_model: Any,
    session: Any,
    inputs: Sequence[np.ndarray],
    *,
    atol: float = 1e-4,
) -> dict[str, float]:
    """Compares a Keras model and an onnxruntime session on the same inputs.

    Args:
        keras_model: the reference `keras.Model`.
        session: an `onnxruntime.InferenceSession` of the export.
        inputs: input batches (e.g. of batch size 1 and 3).
        atol: the largest absolute difference allowed. Defaults to `1e-4`.

    Returns:
        `{"max_abs_diff": ..., "batches": ...}` over every output and batch.

    Raises:
        ExportValidationError: listing every output/batch that differs by more
            than `atol`, shape mismatches and non-finite values.
    """
    if atol < 0:
        raise ValueError(f"atol must be >= 0. Received: atol={atol}")
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    mismatches: list[str] = []
    max_diff = 0.0
    for x in inputs:
        expected = keras_model(x, training=False)
        if not isinstance(expected, (list, tuple)):
            expected = [expected]
        expected = [np.asarray(e, dtype="float32") for e in expected]
        actual = session.run(None, {input_name: x})
        if len(actual) != len(expected):
            mismatches.append(
                f"batch {len(x)}: {len(actual)} ONNX outputs vs "
                f"{len(expected)} Keras outputs"
            )
            continue
        for name, a, e in zip(output_names, actual, expected, strict=True):
            where = f"output {name!r}, batch size {len(x)}"
            if a.shape != e.shape:
                mismatches.append(f"{where}: shape {a.shape} != Keras {e.shape}")
                continue
            if not np.all(np.isfinite(a)):
                mismatches.append(f"{where}: non-finite values in the ONNX output")
                continue
            diff = float(np.max(np.abs(a.astype("float64") - e))) if a.size else 0.0
            max_diff = max(max_diff, diff)
            if diff > atol:
                mismatches.append(
                    f"{where}: max |onnx - keras| = {diff:.3g} > atol={atol:g}"
                )
    if mismatches:
        raise ExportValidationError(mismatches)
    logger.info("ONNX export matches Keras: max |diff| %.3g (atol %g)", max_diff, atol)
    return {"max_abs_diff": max_diff, "batches": [len(x) for x in inputs]}
