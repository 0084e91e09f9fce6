"""ONNX export of an `AudioClassifier`: waveforms in, probabilities out.

`kerastransfer.export.export_onnx` runs its one flow (`export/onnx.py`) with
`AudioExport`, the audio `TaskExport` (`export/task_export.py`) an
`AudioClassifier` returns from `onnx_exporter()`: a waveform input named
`"waveform"`, `(batch, samples)`, random or real clips for validation, the
front end kept in float32 when quantizing, and the audio metadata.

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
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError
from kerastransfer.export.task_export import TaskExport, common_metadata

__all__ = ["AudioExport", "export_audio_onnx", "load_waveforms"]

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


class AudioExport(TaskExport):
    """The audio steps of `export_onnx` (see the module docstring)."""

    unit = "clips"
    agreement_seed = 7

    def check(self, *, quantize, fp16, calibration_data) -> None:
        self.model.export_graph(include_preprocessing=self.include_preprocessing,
                                output=self.output)  # raises for other graphs
        if quantize == "static" and calibration_data is None:
            raise ValueError(
                "Static quantization needs calibration clips. Pass calibration_data "
                "(waveforms or audio files). Received: calibration_data=None"
            )

    def load(self, data: Any, limit: int | None = 256) -> np.ndarray:
        return self.model.example_inputs(data, limit=limit)

    def random_inputs(self, batch: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        noise = 0.3 * rng.standard_normal((batch, self.model.num_samples))
        return noise.clip(-1, 1).astype("float32")

    def to_graph_input(self, inputs):
        return inputs  # the front end is in the graph

    def reference(self):
        # Validation compares with the model as trained (keras.ops.stft).
        return self.model.export_graph()

    def tracing(self):
        from kerastransfer.audio.frontend import export_mode

        return export_mode(self.model)

    def convert(self, reference, opset: int):
        from kerastransfer.export import onnx as export_module

        proto = export_module.convert_to_onnx(
            reference, (self.model.num_samples,), opset=opset, input_name="waveform")
        if not any(node.op_type == "Conv" for node in proto.graph.node):
            raise ExportError(
                "The audio front end is missing from the ONNX graph. "
                "Report this as a bug. Received: no Conv node"
            )
        return proto

    def measures_agreement(self) -> bool:
        return True

    def float_nodes(self, proto) -> list[str]:
        # int8 DFT and log outputs lose the small spectral values the model reads.
        return [node.name for node in proto.graph.node if "frontend" in node.name]

    def metadata(self, path: str, *, quantization, opset, optimized) -> dict[str, str]:
        from kerastransfer.runtime.base import encode_metadata

        model = self.model
        common = common_metadata(model, quantization=quantization, opset=opset,
                                 optimized=optimized)
        return encode_metadata({
            "format_version": "1",
            **model.export_contract(),
            "input_shape": [None, model.num_samples],
            "input_layout": "NS",
            "input_dtype": "float32",
            "value_range": [-1, 1],
            "include_preprocessing": True,
            **common,
        })


def export_audio_onnx(model: Any, path: str | os.PathLike, **kwargs):
    """Exports an `AudioClassifier`: `kerastransfer.export.export_onnx` (kept
    for callers of the first audio release; same arguments and report)."""
    from kerastransfer.export.onnx import export_onnx

    return export_onnx(model, path, **kwargs)
