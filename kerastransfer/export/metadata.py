"""ONNX metadata written by `export_onnx` and read back by `OnnxPredictor`.

Every key is prefixed `kerastransfer.` and every value is a string (ONNX
`metadata_props` hold strings); structured values are JSON. The key names, the
encoder and the reader live in `kerastransfer/runtime/base.py` (the
TensorFlow-free side) and are used here. The same values, decoded, also go to a
JSON sidecar next to the model (`model.onnx` -> `model.json`, `write_sidecar`)
for clients that cannot read ONNX metadata (OpenCV's DNN module,
onnxruntime-node).
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any

from kerastransfer.runtime.base import METADATA_PREFIX as PREFIX
from kerastransfer.runtime.base import decode_metadata, encode_metadata, sidecar_path

__all__ = ["PREFIX", "build_metadata", "set_metadata", "read_metadata", "decode",
           "write_sidecar"]


def _version(module: str) -> str:
    import importlib

    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001 - a missing package is reported as unknown
        return "unknown"


def version_values() -> dict[str, str]:
    """The versions every export records (kerastransfer, Keras, TensorFlow,
    tf2onnx, onnx, onnxruntime, Python)."""
    import kerastransfer

    return {
        "kerastransfer_version": kerastransfer.__version__,
        "keras_version": _version("keras"),
        "tensorflow_version": _version("tensorflow"),
        "tf2onnx_version": _version("tf2onnx"),
        "onnx_version": _version("onnx"),
        "onnxruntime_version": _version("onnxruntime"),
        "python_version": platform.python_version(),
    }


def build_metadata(
    model: Any,
    *,
    include_preprocessing: bool,
    output: str,
    quantization: str | None,
    opset: int,
    optimized: str | None,
) -> dict[str, str]:
    """Returns the `kerastransfer.*` metadata of an export (all values strings).

    Args:
        model: the exported `TransferModel`.
        include_preprocessing: whether the ONNX graph normalizes its input.
        output: `"predictions"` or `"features"`.
        quantization: `"dynamic"`, `"static"`, `"fp16"` or `None`.
        opset: the ONNX opset.
        optimized: the onnxruntime optimization level saved offline, or `None`.

    Returns:
        A dict of metadata keys (with the `kerastransfer.` prefix) to strings.
    """

    values: dict[str, Any] = {
        "format_version": "1",
        "class_names": list(model.class_names),
        "num_classes": str(model.num_classes),
        "task": model.task,
        "output": output,
        "backbone": str(model.backbone_name),
        "input_name": "image",
        "input_shape": [None, *model.image_shape],
        "input_layout": "NHWC",
        "input_dtype": "float32",
        "color_order": "RGB",
        "value_range": [0, 255],
        "include_preprocessing": bool(include_preprocessing),
        "preprocessing_mode": model.preprocessing_mode,
        "quantization": quantization or "none",
        "opset": str(opset),
        "optimization": optimized or "none",
        **version_values(),
    }
    # What the task's contract adds (e.g. "kind": "segmentation"); the keys
    # above keep their meaning.
    contract = model.export_contract() if hasattr(model, "export_contract") else {}
    for key, value in contract.items():
        values.setdefault(key, value)
    return encode_metadata(values)


def set_metadata(model_proto: Any, metadata: dict[str, str]) -> None:
    """Writes `metadata` into `model_proto.metadata_props`, replacing equal keys."""
    existing = {p.key: p for p in model_proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            prop = model_proto.metadata_props.add()
            prop.key, prop.value = key, value


# The reader lives on the deployment side (no TensorFlow there); one definition.
decode = decode_metadata


def read_metadata(path: str) -> dict[str, Any]:
    """Reads the `kerastransfer.*` metadata of an ONNX file.

    Args:
        path: an ONNX file written by `export_onnx`.

    Returns:
        A dict such as `{"class_names": [...], "task": "multiclass", ...}`.

    Example:

    >>> read_metadata("model.onnx")["class_names"]  # doctest: +SKIP
    ['cat', 'dog']
    """
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return decode({p.key: p.value for p in proto.metadata_props})


def write_sidecar(model_path: str | os.PathLike, metadata: dict[str, str]) -> str:
    """Writes the decoded `metadata` next to the model, atomically.

    Args:
        model_path: the `.onnx` file; the sidecar is the same path with `.json`.
        metadata: the prefixed `kerastransfer.*` strings written into the file.

    Returns:
        The sidecar's path.

    Example:

    >>> write_sidecar("model.onnx", report.metadata)  # doctest: +SKIP
    'model.json'
    """
    from kerastransfer.io import atomic_write_text

    path = sidecar_path(model_path)
    atomic_write_text(path, json.dumps(decode(metadata), indent=2) + "\n")
    return path
