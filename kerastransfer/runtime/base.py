"""The task-independent runtime: onnxruntime sessions, providers and metadata.

numpy and onnxruntime only (onnxruntime imported lazily); never TensorFlow or
Keras. Every predictor (`runtime/images.py` today, other tasks later) opens its
model with `create_session` and reads its contract with `load_metadata`.

The metadata contract, written by `kerastransfer.export.metadata`: ONNX
`metadata_props` hold strings, so every key is prefixed `kerastransfer.` and
structured values are JSON (`METADATA_JSON_KEYS`). The same values, decoded,
are written next to the model as a JSON sidecar (`model.onnx` ->
`model.json`), for clients whose ONNX reader ignores metadata (OpenCV's DNN
module, onnxruntime-node); a predictor reads the sidecar when the file's own
metadata was stripped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "METADATA_PREFIX",
    "METADATA_JSON_KEYS",
    "METADATA_INT_KEYS",
    "encode_metadata",
    "decode_metadata",
    "sidecar_path",
    "read_sidecar",
    "load_metadata",
    "choose_providers",
    "create_session",
    "cpu_count",
]

logger = logging.getLogger("kerastransfer.runtime")

METADATA_PREFIX = "kerastransfer."
METADATA_JSON_KEYS = frozenset({"class_names", "input_shape", "value_range",
                                "include_preprocessing", "output_shape",
                                "window", "threshold", "channels"})
METADATA_INT_KEYS = frozenset({"num_classes"})
# Preferred execution providers, fastest first.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                  "CPUExecutionProvider")


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Turns metadata values into prefixed `kerastransfer.*` strings.

    Args:
        values: unprefixed names to Python values (lists, bools, numbers, str).

    Returns:
        A dict of prefixed keys to strings (JSON for `METADATA_JSON_KEYS`).
    """
    return {METADATA_PREFIX + k: json.dumps(v) if k in METADATA_JSON_KEYS else str(v)
            for k, v in values.items()}


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Turns raw `kerastransfer.*` metadata strings into Python values.

    The inverse of `encode_metadata`: the prefix is removed and other keys are
    dropped.

    Args:
        raw: ONNX metadata, key to string.

    Returns:
        Unprefixed names to values.
    """
    result: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith(METADATA_PREFIX):
            continue
        name = key[len(METADATA_PREFIX):]
        if name in METADATA_JSON_KEYS:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        elif name in METADATA_INT_KEYS:
            value = int(value)
        result[name] = value
    return result


def sidecar_path(model_path: str | os.PathLike) -> str:
    """The JSON sidecar of a model file: same folder and stem, `.json`."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def read_sidecar(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """Reads the metadata sidecar of `model_path` (`None` when there is none).

    Raises:
        ValueError: the sidecar exists but is not a JSON object.
    """
    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            values = json.load(file)
    except ValueError as error:
        raise ValueError(
            f"The model's metadata sidecar is not valid JSON ({error}). Export the "
            f"model again or delete the file. Received: path={path!r}"
        ) from None
    if not isinstance(values, dict):
        raise ValueError(
            "The model's metadata sidecar must hold a JSON object. Export the "
            f"model again. Received: path={path!r}"
        )
    return values


def load_metadata(session: Any, model_path: str | os.PathLike) -> tuple[dict, str]:
    """The kerastransfer metadata of a model: embedded, else from the sidecar.

    Args:
        session: the model's `onnxruntime.InferenceSession`.
        model_path: the `.onnx` file (its sidecar is `sidecar_path(model_path)`).

    Returns:
        `(metadata, source)`: the decoded metadata and where it came from,
        `"onnx"`, `"sidecar"` or `"none"` (an ONNX file that kerastransfer did
        not write, or whose metadata was stripped and has no sidecar; a warning
        is logged and callers fall back to the graph's shapes).
    """
    raw = dict(session.get_modelmeta().custom_metadata_map)
    metadata = decode_metadata(raw)
    if metadata:
        return metadata, "onnx"
    sidecar = read_sidecar(model_path)
    if sidecar is not None:
        logger.info("Metadata of %s read from %s", model_path, sidecar_path(model_path))
        return sidecar, "sidecar"
    logger.warning(
        "%s carries no kerastransfer metadata and has no %s sidecar: classes are "
        "named by index and the input contract is taken from the graph.",
        model_path, os.path.basename(sidecar_path(model_path)))
    return {}, "none"


def choose_providers(providers: Sequence[str] | None) -> list[str]:
    """The execution providers to use: the requested ones, or the best available.

    Raises:
        ValueError: a requested provider is not available here.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is not None:
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(
                f"Execution provider(s) {missing} are not available here. Use some "
                f"of {available}. Received: providers={list(providers)}"
            )
        return list(providers)
    return [p for p in PROVIDER_ORDER if p in available] or list(available)


def cpu_count() -> int:
    """CPU cores available to this process (its affinity mask where known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def create_session(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    *,
    intra_op_threads: int | None = None,
    allow_spinning: bool = False,
) -> Any:
    """Opens an ONNX file in onnxruntime with settings suited to serving.

    Args:
        path: the `.onnx` file.
        providers: execution providers in order of preference. Defaults to
            `None` (TensorRT, then CUDA when available, else CPU).
        intra_op_threads: threads per operator. Defaults to `None` (the cores
            available to this process).
        allow_spinning: let idle threads busy-wait between operators; off by
            default, as spinning threads steal time on shared machines.
            Defaults to `False`.

    Returns:
        An `onnxruntime.InferenceSession`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: bad `intra_op_threads` or unavailable providers.
        kerastransfer.saving.ModelLoadError: onnxruntime cannot load the file.
    """
    import onnxruntime as ort

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No ONNX model at this path. Export one with "
            f"kerastransfer.export.export_onnx. Received: path={path!r}"
        )
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ValueError(
            "intra_op_threads must be >= 1 (or None for all cores). "
            f"Received: intra_op_threads={intra_op_threads}"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or cpu_count()
    options.inter_op_num_threads = 1
    spin = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    chosen = choose_providers(providers)
    try:
        return ort.InferenceSession(path, options, providers=chosen)
    except Exception as error:  # onnxruntime raises its own pybind types
        from kerastransfer.saving import ModelLoadError

        raise ModelLoadError(
            f"onnxruntime cannot load this ONNX model ({type(error).__name__}: "
            f"{str(error)[:300]}). The file may be corrupt or truncated, or not "
            f"an ONNX model: export it again. Received: path={path!r}"
        ) from error
