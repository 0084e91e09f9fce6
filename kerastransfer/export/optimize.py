"""Offline onnxruntime graph optimization, so the shipped file is already optimized.

The level saved is `ORT_ENABLE_BASIC`: onnxruntime's documentation warns that
files saved at the extended/all levels may contain fused, provider-specific
operators (e.g. the CPU-only `FusedConv`, NCHWc layouts) and then only load on the
hardware they were optimized for. Basic optimizations (constant folding, redundant
node removal, the transpose optimizer, Conv+BN/Add/Mul fusion into standard ONNX
ops) keep a standard-opset graph that loads on every provider; the session still
applies the higher levels on the deployment machine at load time.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

__all__ = ["optimize_onnx", "count_ops", "LEVELS"]

LEVELS = ("basic", "extended", "all")


def optimize_onnx(model_proto: Any, level: str = "basic") -> Any:
    """Runs onnxruntime's graph optimizer on a model and returns the result.

    Args:
        model_proto: an ONNX `ModelProto`.
        level: `"basic"` (portable across providers), `"extended"` or `"all"`
            (may produce provider-specific operators). Defaults to `"basic"`.

    Returns:
        The optimized `ModelProto`.

    Example:

    >>> optimized = optimize_onnx(onnx.load("raw.onnx"))  # doctest: +SKIP
    """
    import onnx
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(
            f"level must be one of {LEVELS}. Received: level={level!r}"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    with tempfile.TemporaryDirectory(prefix="kerastransfer_opt_") as folder:
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        ort.InferenceSession(
            model_proto.SerializeToString(), options,
            providers=["CPUExecutionProvider"],
        )
        optimized = onnx.load(options.optimized_model_filepath)
    # keep the producer's metadata (onnxruntime drops metadata_props)
    del optimized.metadata_props[:]
    optimized.metadata_props.extend(model_proto.metadata_props)
    return optimized


def count_ops(model_proto: Any, op_type: str | None = None) -> int | dict[str, int]:
    """Counts the nodes of a model: of one `op_type`, or a dict of all types."""
    counts: dict[str, int] = {}
    for node in model_proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts.get(op_type, 0) if op_type else counts
