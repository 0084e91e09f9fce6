"""ONNX export of an `AudioClassifier`: waveforms in, probabilities out.

`kerastransfer.export.export_onnx` hands audio models (`export_contract()["kind"]
== "audio"`) to `export_audio_onnx`, which reuses the shared steps
(`export/convert.py`, `optimize.py`, `validate.py`, `quantize.py`,
`metadata.py`) with a waveform input named `"waveform"`, `(batch, samples)`.

The front end is inside the graph: tf2onnx turns TensorFlow's STFT into a
contrib `RFFT` node onnxruntime cannot run, so the model is traced with its
`LogMelSpectrogram` layers in DFT-convolution mode
(`kerastransfer.audio.frontend.export_mode`), and the file is validated against
the Keras model as trained (`keras.ops.stft`): the same `atol` (1e-4 on the
probabilities) applies. The runtime therefore needs no numpy front end.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError

__all__ = ["export_audio_onnx", "load_waveforms"]

logger = logging.getLogger("kerastransfer.export.onnx")


def load_waveforms(source: Any, model: Any, limit: int | None = 256) -> np.ndarray:
    """Waveforms `(n, num_samples)` from an array or a folder/list of audio files."""
    if isinstance(source, (str, os.PathLike, list, tuple)) and not (
        isinstance(source, (list, tuple))
        and source
        and not isinstance(source[0], (str, os.PathLike))
    ):
        from kerastransfer.audio.io import load_clip
        from kerastransfer.runtime.audio import list_audio_files

        paths = list_audio_files(source)[:limit]
        clips = []
        for path in paths:
            try:
                clips.append(load_clip(path, model.sample_rate, model.num_samples))
            except (ValueError, OSError) as error:
                logger.warning("Skipped %s: %s", path, error)
        array = np.stack(clips) if clips else np.zeros((0, model.num_samples))
    else:
        array = np.asarray(source, dtype="float32")
        if array.ndim == 1:
            array = array[None]
    if array.ndim != 2 or array.shape[1] != model.num_samples or len(array) == 0:
        raise ValueError(
            f"Validation/calibration audio must be waveforms (n, {model.num_samples}) "
            "or audio files. Received: "
            f"shape={array.shape}"
        )
    return array[:limit].astype("float32")


def _frontend_nodes(proto: Any) -> list[str]:
    """The front end's nodes (kept in float32 when quantizing: int8 DFT and log
    outputs lose the small spectral values the model reads)."""
    return [node.name for node in proto.graph.node if "frontend" in node.name]


def _random_waveforms(batch: int, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((batch, samples))).clip(-1, 1).astype("float32")


def export_audio_onnx(
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
):
    """Exports an `AudioClassifier` (arguments as for `export_onnx`; the data
    arguments take waveforms `(n, samples)` or audio files/folders).

    Returns:
        An `ExportReport`.

    Raises:
        ValueError: `include_preprocessing=False` or `output="features"` (the
            front end is always inside the graph), or bad data.
        ExportError, ExportValidationError: as for `export_onnx`.
    """
    import onnx

    from kerastransfer.audio.frontend import export_mode
    from kerastransfer.export import metadata as metadata_lib
    from kerastransfer.export import quantize as quantize_lib
    from kerastransfer.export.convert import convert_to_onnx, name_batch_axis
    from kerastransfer.export.onnx import ExportReport, _check_export_args, _run
    from kerastransfer.export.optimize import count_ops, optimize_onnx
    from kerastransfer.export.validate import load_session, validate_onnx
    from kerastransfer.io import atomic_path
    from kerastransfer.runtime.base import encode_metadata

    start = time.perf_counter()
    if not include_preprocessing or output != "predictions":
        raise ValueError(
            "Audio models export waveforms -> predictions with the front end in the "
            "graph. Use the defaults. Received: "
            f"include_preprocessing={include_preprocessing}, output={output!r}"
        )
    from types import SimpleNamespace

    # The shared argument checks (opset, atol, quantize, fp16, threshold).
    _check_export_args(
        SimpleNamespace(
            image_shape=(model.num_samples,), head_layers=model.head_layers
        ),
        opset,
        atol,
        quantize,
        fp16,
        agreement_threshold,
    )
    if quantize == "static" and calibration_data is None:
        raise ValueError(
            "Static quantization needs calibration clips. Pass calibration_data "
            "(waveforms or audio files). Received: calibration_data=None"
        )
    path = os.fspath(path)
    mode = quantize or ("fp16" if fp16 else None)
    real = (
        None
        if validation_data is None
        else load_waveforms(validation_data, model, limit=None)
    )
    calibration = (
        None if calibration_data is None else load_waveforms(calibration_data, model)
    )

    with export_mode(model):
        proto = convert_to_onnx(
            model, (model.num_samples,), opset=opset, input_name="waveform"
        )
    if not any(node.op_type == "Conv" for node in proto.graph.node):
        raise ExportError(
            "The audio front end is missing from the ONNX graph. "
            "Report this as a bug. Received: no Conv node"
        )
    transposes_raw = count_ops(proto, "Transpose")
    level = "basic" if optimize else None
    if optimize:
        proto = optimize_onnx(proto, "basic")
    session = load_session(proto.SerializeToString())
    max_diff = None
    if validate:
        inputs = [_random_waveforms(b, model.num_samples, b) for b in (1, 3)]
        if real is not None:
            inputs.append(real[:16])
        max_diff = validate_onnx(model, session, inputs, atol=atol)["max_abs_diff"]

    warnings_: list[str] = []
    agreement = quantized_diff = agreement_data = None
    final = proto
    if mode is not None:
        final = (
            quantize_lib.convert_fp16(proto)
            if mode == "fp16"
            else quantize_lib.quantize_onnx(
                proto,
                mode,
                calibration_images=calibration,
                reduce_range=reduce_range,
                nodes_to_exclude=_frontend_nodes(proto),
            )
        )
        if real is not None:
            evaluation, agreement_data = real, "validation_data"
        elif calibration is not None:
            evaluation, agreement_data = calibration, "calibration_data"
        else:
            evaluation = _random_waveforms(32, model.num_samples, 7)
            agreement_data = "random"
        candidate = load_session(final.SerializeToString())
        reference_out = _run(session, evaluation)
        candidate_out = _run(candidate, evaluation)
        quantized_diff = float(np.max(np.abs(reference_out - candidate_out)))
        agreement = quantize_lib.agreement(reference_out, candidate_out, model.task)
        if agreement < agreement_threshold:
            message = (
                f"The {mode} model agrees with float32 on only {agreement:.1%} of "
                f"{len(evaluation)} clips ({agreement_data}), below "
                f"agreement_threshold={agreement_threshold}. Calibrate on more "
                "representative clips or export without quantization."
            )
            logger.warning(message)
            warnings_.append(message)

    import kerastransfer

    contract = model.export_contract()
    values = {
        "format_version": "1",
        **contract,
        "input_shape": [None, model.num_samples],
        "input_layout": "NS",
        "input_dtype": "float32",
        "value_range": [-1, 1],
        "include_preprocessing": True,
        "output": "predictions",
        "backbone": str(model.backbone_name),
        "quantization": mode or "none",
        "opset": str(opset),
        "optimization": level or "none",
        "kerastransfer_version": kerastransfer.__version__,
        "keras_version": metadata_lib._version("keras"),
        "tensorflow_version": metadata_lib._version("tensorflow"),
        "tf2onnx_version": metadata_lib._version("tf2onnx"),
        "onnx_version": metadata_lib._version("onnx"),
        "onnxruntime_version": metadata_lib._version("onnxruntime"),
        "python_version": platform.python_version(),
    }
    meta = encode_metadata(values)
    metadata_lib.set_metadata(final, meta)
    name_batch_axis(final)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(final, tmp)
        load_session(tmp)
    sidecar = metadata_lib.write_sidecar(path, meta)
    report = ExportReport(
        path=path,
        opset=opset,
        include_preprocessing=True,
        output="predictions",
        validated=validate,
        max_abs_diff=max_diff,
        optimization=level,
        transpose_nodes_raw=transposes_raw,
        transpose_nodes=count_ops(proto, "Transpose"),
        nodes=len(final.graph.node),
        quantization=mode,
        agreement=agreement,
        agreement_data=agreement_data,
        quantized_max_abs_diff=quantized_diff,
        warnings=warnings_,
        file_size=os.path.getsize(path),
        seconds=time.perf_counter() - start,
        metadata=meta,
        sidecar=sidecar,
    )
    logger.info(
        "Exported audio model %s (%d bytes) in %.1f s",
        path,
        report.file_size,
        report.seconds,
    )
    return report
