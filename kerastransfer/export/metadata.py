"""ONNX metadata written by `export_onnx` and read back by `OnnxPredictor`.

Every key is prefixed `kerastransfer.` and every value is a string (ONNX
`metadata_props` hold strings); structured values are JSON. The key names and the
reader live in `kerastransfer.runtime` (the TensorFlow-free side) and are used here.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from kerastransfer.runtime import METADATA_JSON_KEYS as _JSON_KEYS
from kerastransfer.runtime import METADATA_PREFIX as PREFIX
from kerastransfer.runtime import decode_metadata

__all__ = ["PREFIX", "build_metadata", "set_metadata", "read_metadata", "decode"]


def _version(module: str) -> str:
    import importlib

    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001 - a missing package is reported as unknown
        return "unknown"


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
    import kerastransfer

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
        "kerastransfer_version": kerastransfer.__version__,
        "keras_version": _version("keras"),
        "tensorflow_version": _version("tensorflow"),
        "tf2onnx_version": _version("tf2onnx"),
        "onnx_version": _version("onnx"),
        "onnxruntime_version": _version("onnxruntime"),
        "python_version": platform.python_version(),
    }
    return {
        PREFIX + k: json.dumps(v) if k in _JSON_KEYS else str(v)
        for k, v in values.items()
    }


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
