"""`export_onnx`: convert, optimize, validate, quantize, add metadata, write.

The steps live in their own modules: `convert.py` (tf2onnx, the batch axis
name), `optimize.py`, `validate.py`, `quantize.py`, `metadata.py` (the metadata
and its `model.json` sidecar); this module chains them and writes the file
atomically, one flow for every task. What differs between tasks (inputs, the
graph, metadata, extra files) is asked of the task's `TaskExport`
(`export/task_export.py`; audio: `audio/export.py`, text: `export/text.py`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError
from kerastransfer.export.convert import (  # noqa: F401 - public from here too
    BATCH_AXIS,
    convert_to_onnx,
    name_batch_axis,
    quiet_tf2onnx,
    reference_model,
)
from kerastransfer.export.patches import export_patches  # noqa: F401

__all__ = ["export_onnx", "ExportReport", "convert_to_onnx", "export_patches",
           "name_batch_axis", "quiet_tf2onnx", "reference_model"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# export_onnx: convert -> optimize -> validate -> quantize -> metadata -> file
# --------------------------------------------------------------------------

@dataclass
class ExportReport:
    """What `export_onnx` wrote and measured.

    Attributes:
        path: the ONNX file.
        opset: the ONNX opset.
        include_preprocessing: whether the graph normalizes raw RGB [0, 255].
        output: `"predictions"` or `"features"`.
        validated: whether Keras/onnxruntime parity was checked.
        max_abs_diff: the largest |onnx - keras| of the float32 graph over the
            validation batches (None when `validate=False`).
        optimization: the onnxruntime level saved offline, or None.
        transpose_nodes_raw: Transpose nodes in tf2onnx's graph.
        transpose_nodes: Transpose nodes in the float32 file after optimization.
        nodes: node count of the file written.
        quantization: `"dynamic"`, `"static"`, `"fp16"` or None.
        agreement: top-1 agreement of the quantized/fp16 model with float32
            (None without quantization).
        agreement_data: `"validation_data"`, `"calibration_data"` or
            `"random"` (pessimistic) — what `agreement` was measured on.
        quantized_max_abs_diff: the largest |quantized - float32| output
            difference on that data.
        warnings: warnings raised (also logged), e.g. low agreement.
        file_size: bytes of the file written.
        seconds: wall-clock time of the export.
        metadata: the `kerastransfer.*` metadata written.
        sidecar: the JSON file written next to the model with the same metadata
            (decoded), e.g. `model.json` for `model.onnx`.
    """

    path: str
    opset: int
    include_preprocessing: bool
    output: str
    validated: bool
    max_abs_diff: float | None
    optimization: str | None
    transpose_nodes_raw: int
    transpose_nodes: int
    nodes: int
    quantization: str | None = None
    agreement: float | None = None
    agreement_data: str | None = None
    quantized_max_abs_diff: float | None = None
    warnings: list[str] = field(default_factory=list)
    file_size: int = 0
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    sidecar: str = ""


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    include_preprocessing: bool = True,
    validate: bool = True,
    atol: float = 1e-4,
    quantize: str | None = None,
    calibration_data: Any = None,
    validation_data: Any = None,
    fp16: bool = False,
    optimize: bool = True,
    output: str = "predictions",
    agreement_threshold: float = 0.99,
    reduce_range: bool = True,
) -> ExportReport:
    """Exports a `TransferModel` to ONNX, checked, optimized and self-describing.

    The file takes float32 NHWC RGB images in [0, 255] (input "image", batch
    axis named "batch") and carries its class names, input shape, task and
    versions as `kerastransfer.*` metadata; the same metadata, decoded, is
    written atomically next to it as JSON (`model.onnx` -> `model.json`) for
    clients that cannot read ONNX metadata. The model is written atomically:
    to a temporary file in the target folder, loaded in onnxruntime (always)
    and compared with Keras (`validate=True`), then renamed onto `path`. A
    failed export leaves `path` as it was.

    Other tasks export through the same steps with their own inputs: an
    `AudioClassifier` takes waveforms `(batch, samples)` (the data arguments
    take waveforms or audio files), a `TextClassifier` int32 token arrays (the
    data arguments take texts; its tokenizer is written next to the model).

    Args:
        model: a `TransferModel` (or another task: segmentation, detection,
            audio, text).
        path: the `.onnx` file to write.
        opset: the ONNX opset. Defaults to `17`.
        include_preprocessing: the graph includes the backbone family's
            normalization and takes raw RGB [0, 255] images. With `False` the
            graph starts after the preprocessing layer (inputs must already be
            normalized; `OnnxPredictor` does it in numpy from the metadata).
            Defaults to `True`.
        validate: compare onnxruntime with Keras on random images at batch sizes
            1 and 3. Defaults to `True`.
        atol: the largest absolute output difference allowed. Defaults to `1e-4`.
        quantize: `"dynamic"` (int8 weights), `"static"` (int8 QDQ, per-channel,
            calibrated on `calibration_data`) or `None`. Defaults to `None`.
        calibration_data: images for static calibration: an array
            `(n, h, w, c)` in [0, 255] or a folder of image files. Defaults to
            `None`.
        validation_data: real images: the float32 export is also validated on
            (up to 16 of) them, and the quantized model's agreement with
            float32 is measured (same forms). Defaults to `None` (the calibration
            data, else random images — a pessimistic figure).
        fp16: convert to float16 with float32 inputs/outputs (for GPUs).
            Defaults to `False`.
        optimize: save onnxruntime's portable ("basic") graph optimizations in
            the file. Defaults to `True`.
        output: `"predictions"` or `"features"` (pooled backbone features).
            Defaults to `"predictions"`.
        agreement_threshold: warn when the quantized model agrees with float32
            on fewer samples than this. Defaults to `0.99`.
        reduce_range: 7-bit int8 weights (needed on CPUs without VNNI).
            Defaults to `True`.

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: string-input models, tf2onnx failures, or a file
            onnxruntime refuses.
        ExportValidationError: outputs differ from Keras by more than `atol`
            (lists every mismatch).
        ValueError: invalid arguments.

    Example:

    >>> from kerastransfer.export import export_onnx
    >>> report = export_onnx(model, "model.onnx")  # doctest: +SKIP
    >>> report.max_abs_diff < 1e-4  # doctest: +SKIP
    True
    """
    import onnx

    from kerastransfer.export import metadata as metadata_lib
    from kerastransfer.export import quantize as quantize_lib
    from kerastransfer.export.optimize import count_ops, optimize_onnx
    from kerastransfer.export.task_export import exporter_for
    from kerastransfer.export.validate import load_session
    from kerastransfer.io import atomic_path

    start = time.perf_counter()
    _check_export_args(model, opset, atol, quantize, fp16, agreement_threshold)
    # What differs between tasks (inputs, graph, metadata, extra files):
    # export/task_export.py; audio and text tasks return their own.
    task = exporter_for(model, include_preprocessing=include_preprocessing,
                        output=output)
    task.check(quantize=quantize, fp16=fp16, calibration_data=calibration_data)
    path = os.fspath(path)
    mode = quantize or ("fp16" if fp16 else None)
    # Read the data first: bad data fails before converting.
    real = None if validation_data is None else task.load(validation_data, limit=None)
    calibration = evaluation = agreement_data = None
    if mode is not None:  # what the quantized model's agreement is measured on
        if calibration_data is not None:
            calibration = task.load(calibration_data)
        default = task.default_inputs()
        if real is not None:
            evaluation, agreement_data = real, "validation_data"
        elif calibration is not None:
            evaluation, agreement_data = calibration, "calibration_data"
        elif default is not None:
            evaluation, agreement_data = default
        else:
            evaluation = task.random_inputs(32, seed=task.agreement_seed)
            agreement_data = "random"

    reference = task.reference()
    with task.tracing():
        proto = task.convert(reference, opset)
    transposes_raw = count_ops(proto, "Transpose")
    level = None
    if optimize:
        proto = optimize_onnx(proto, "basic")
        level = "basic"
    transposes = count_ops(proto, "Transpose")
    session = load_session(proto.SerializeToString())
    max_diff = task.validate(reference, session, real, atol) if validate else None

    report_warnings: list[str] = []
    agreement = quantized_diff = None
    final = proto
    if mode is not None:
        final = task.quantize(proto, mode, calibration, reduce_range)
        candidate = load_session(final.SerializeToString())
        graph_input = task.to_graph_input(evaluation)
        reference_out = _run(session, graph_input)
        candidate_out = _run(candidate, graph_input)
        quantized_diff = float(np.max(np.abs(reference_out - candidate_out)))
        if task.measures_agreement():  # per pixel for (n, h, w, classes) outputs
            agreement = quantize_lib.agreement(reference_out, candidate_out, model.task)
        if agreement is not None and agreement < agreement_threshold:
            message = (
                f"The {mode} model agrees with float32 on only {agreement:.1%} of "
                f"{len(reference_out)} {task.unit} ({agreement_data}), below "
                f"agreement_threshold={agreement_threshold}. Calibrate on more "
                f"representative {task.unit} or export without quantization."
            )
            logger.warning(message)
            report_warnings.append(message)
        logger.info("%s model: agreement %s, max |diff| %.3g", mode, agreement,
                    quantized_diff)

    meta = task.metadata(path, quantization=mode, opset=opset, optimized=level)
    metadata_lib.set_metadata(final, meta)
    name_batch_axis(final)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(final, tmp)
        load_session(tmp)  # the file as written loads in onnxruntime
    task.write_files(path)
    sidecar = metadata_lib.write_sidecar(path, meta)
    report = ExportReport(
        path=path, opset=opset, validated=validate, max_abs_diff=max_diff,
        optimization=level, transpose_nodes_raw=transposes_raw,
        transpose_nodes=transposes, nodes=len(final.graph.node), quantization=mode,
        agreement=agreement, agreement_data=agreement_data,
        quantized_max_abs_diff=quantized_diff, warnings=report_warnings,
        file_size=os.path.getsize(path), seconds=time.perf_counter() - start,
        metadata=meta, sidecar=sidecar, **task.report_fields(),
    )
    logger.info("Exported %s (%d bytes; metadata also in %s) in %.1f s", path,
                report.file_size, sidecar, report.seconds)
    return report


def _run(session: Any, inputs: Any, batch_size: int = 32) -> np.ndarray:
    from kerastransfer.export.task_export import run_session

    return run_session(session, inputs, batch_size)


def _check_export_args(model, opset, atol, quantize, fp16, agreement_threshold):
    from kerastransfer.export.quantize import QUANTIZATION_MODES

    if not hasattr(model, "head_layers") or not (
            hasattr(model, "image_shape") or hasattr(model, "onnx_exporter")):
        raise TypeError(
            "export_onnx exports a kerastransfer.TransferModel. Wrap your Keras "
            f"model in one. Received: model={type(model).__name__}"
        )
    if getattr(model, "input_dtype_name", "float32") == "string":
        raise ExportError(
            "ONNX export does not support string inputs: tf2onnx writes text ops "
            "(e.g. StringSplitV2) that onnxruntime cannot run. Serve text models "
            "with TensorFlow instead. Received: input_dtype='string'"
        )
    if not isinstance(opset, int) or not 13 <= opset <= 18:
        raise ValueError(
            f"opset must be an int between 13 and 18. Received: opset={opset!r}"
        )
    if not isinstance(atol, (int, float)) or atol < 0:
        raise ValueError(f"atol must be a number >= 0. Received: atol={atol!r}")
    if quantize not in (None, *QUANTIZATION_MODES):
        raise ValueError(
            f"quantize must be one of {QUANTIZATION_MODES} or None. "
            f"Received: quantize={quantize!r}"
        )
    if quantize is not None and fp16:
        raise ValueError(
            "Choose int8 quantization or fp16, not both. "
            f"Received: quantize={quantize!r}, fp16=True"
        )
    if not 0.0 <= agreement_threshold <= 1.0:
        raise ValueError(
            "agreement_threshold must be in [0, 1]. "
            f"Received: agreement_threshold={agreement_threshold}"
        )
