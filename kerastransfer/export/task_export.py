"""What `export_onnx` asks of a task: `TaskExport` and its image default.

`export_onnx` (`export/onnx.py`) runs one flow for every task: read the
validation/calibration data, convert, optimize, validate against Keras,
quantize and measure agreement, write the metadata and the file atomically.
What differs between tasks is asked of a `TaskExport`:

* image tasks (classification, segmentation, detection) use `TaskExport`
  itself, through the task's `export_graph()` (the Keras model the file
  reproduces), `example_inputs()` (the images of validation data such as
  `(images, masks)`) and `export_contract()` (metadata keys);
* a task with other inputs returns its subclass from `onnx_exporter()`: audio
  (`kerastransfer/audio/export.py`: waveforms, the front end traced in its
  DFT mode) and text (`kerastransfer/export/text.py`: token ids, the tokenizer
  written next to the model).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError

__all__ = ["TaskExport", "exporter_for", "run_session"]


def exporter_for(model: Any, *, include_preprocessing: bool = True,
                 output: str = "predictions") -> TaskExport:
    """The `TaskExport` of `model`: its own `onnx_exporter()`, else the image one."""
    if hasattr(model, "onnx_exporter"):
        return model.onnx_exporter(include_preprocessing=include_preprocessing,
                                   output=output)
    return TaskExport(model, include_preprocessing=include_preprocessing,
                      output=output)


def run_session(session: Any, inputs: Any, batch_size: int = 32) -> np.ndarray:
    """The first output of `session` on `inputs` (an array for a one-input
    graph, or a dict of arrays by input name), in batches, as float64."""
    if not isinstance(inputs, dict):
        inputs = {session.get_inputs()[0].name: inputs}
    n = len(next(iter(inputs.values())))
    outs = [session.run(None, {k: v[i:i + batch_size] for k, v in inputs.items()})[0]
            for i in range(0, n, batch_size)]
    return np.concatenate(outs).astype("float64")


class TaskExport:
    """How `export_onnx` exports an image task (subclassed for other inputs).

    Args:
        model: the task (`TransferModel`, `SegmentationModel`, ...).
        include_preprocessing: the graph takes raw [0, 255] images.
        output: `"predictions"` or `"features"`.
    """

    unit = "images"  # what one example is called in messages
    agreement_seed = 0  # seed of the random inputs agreement falls back to

    def __init__(self, model: Any, *, include_preprocessing: bool = True,
                 output: str = "predictions"):
        self.model = model
        self.include_preprocessing = include_preprocessing
        self.output = output

    # --- arguments and data ---------------------------------------------------
    def check(self, *, quantize: str | None, fp16: bool,
              calibration_data: Any) -> None:
        """Task-specific argument checks (the shared ones are in `export_onnx`)."""
        if quantize == "static" and calibration_data is None:
            raise ValueError(
                "Static quantization needs calibration images. Pass calibration_data "
                "(an array of images or a folder). Received: calibration_data=None"
            )
        image_shape = tuple(self.model.image_shape)
        if any(s is None for s in image_shape):
            raise ExportError(
                "ONNX export needs a fixed image size. Build the model with "
                f"input_shape=(height, width, 3). Received: input_shape={image_shape}"
            )

    def load(self, data: Any, limit: int | None = 256) -> Any:
        """Validation or calibration data as raw graph inputs (before
        `to_graph_input`)."""
        from kerastransfer.export.quantize import load_calibration_images

        if hasattr(self.model, "example_inputs"):
            data = self.model.example_inputs(data)  # e.g. (x, masks) -> x
        return load_calibration_images(data, tuple(self.model.image_shape),
                                       limit=limit)

    def random_inputs(self, batch: int, seed: int) -> Any:
        """Random raw inputs (validation at batch sizes 1 and 3; agreement when
        no data is given)."""
        from kerastransfer.export.validate import random_images

        return random_images(batch, tuple(self.model.image_shape), seed=seed)

    def default_inputs(self) -> tuple[Any, str] | None:
        """Inputs measured when no data is given, and their `agreement_data`
        name, or None (random inputs)."""
        return None

    def to_graph_input(self, inputs: Any) -> Any:
        """Raw inputs as the graph takes them (normalized when the graph does not
        include the preprocessing)."""
        if self.include_preprocessing:
            return inputs
        from kerastransfer.runtime import preprocess_images

        return preprocess_images(inputs, self.model.preprocessing_mode,
                                 window=getattr(self.model, "window", None))

    # --- graph ----------------------------------------------------------------
    def reference(self) -> Any:
        """The Keras model the file reproduces (the validation reference)."""
        from kerastransfer.export.convert import reference_model

        return reference_model(self.model,
                               include_preprocessing=self.include_preprocessing,
                               output=self.output)

    def tracing(self) -> contextlib.AbstractContextManager:
        """A context the conversion runs in (audio: the front end's DFT mode)."""
        return contextlib.nullcontext()

    def convert(self, reference: Any, opset: int) -> Any:
        """The ONNX `ModelProto` of `reference`."""
        # Looked up where `export_onnx` makes it public (export/onnx.py), so one
        # replacement there (e.g. a test's) applies to every task.
        from kerastransfer.export import onnx as export_module

        return export_module.convert_to_onnx(reference, tuple(self.model.image_shape),
                                             opset=opset)

    def validate(self, reference: Any, session: Any, real: Any, atol: float) -> float:
        """The largest |onnx - keras| on random inputs at batch sizes 1 and 3 and
        up to 16 real examples.

        Raises:
            ExportValidationError: a difference above `atol`.
        """
        from kerastransfer.export.validate import validate_onnx

        inputs = [self.to_graph_input(self.random_inputs(b, seed=b)) for b in (1, 3)]
        if real is not None:
            # A trained model's softmax saturates on random noise (differences
            # vanish); real examples exercise the outputs where they matter.
            inputs.append(self.to_graph_input(real[:16]))
        return validate_onnx(reference, session, inputs, atol=atol)["max_abs_diff"]

    def measures_agreement(self) -> bool:
        """Whether top-1 agreement means something for this output."""
        return self.output == "predictions"

    def quantize(self, proto: Any, mode: str, calibration: Any,
                 reduce_range: bool) -> Any:
        """The fp16 or int8 `ModelProto` of `proto`."""
        from kerastransfer.export import quantize as quantize_lib

        if mode == "fp16":
            return quantize_lib.convert_fp16(proto)
        return quantize_lib.quantize_onnx(
            proto, mode,
            calibration_images=(None if calibration is None
                                else self.to_graph_input(calibration)),
            reduce_range=reduce_range, nodes_to_exclude=self.float_nodes(proto))

    def float_nodes(self, proto: Any) -> list[str] | None:
        """Nodes int8 quantization must leave in float32 (None: none)."""
        return None

    # --- what is written ------------------------------------------------------
    def metadata(self, path: str, *, quantization: str | None, opset: int,
                 optimized: str | None) -> dict[str, str]:
        """The `kerastransfer.*` metadata (prefixed keys, string values)."""
        from kerastransfer.export.metadata import build_metadata

        return build_metadata(self.model,
                              include_preprocessing=self.include_preprocessing,
                              output=self.output, quantization=quantization,
                              opset=opset, optimized=optimized)

    def write_files(self, path: str) -> None:
        """Writes the files a client needs next to `path` (text: the tokenizer)."""

    def report_fields(self) -> dict[str, Any]:
        """`ExportReport` fields that describe this kind of graph."""
        return {"include_preprocessing": self.include_preprocessing,
                "output": self.output}


def common_metadata(model: Any, *, quantization: str | None, opset: int,
                    optimized: str | None) -> dict[str, Any]:
    """The keys every non-image export writes besides its contract (versions,
    backbone, quantization), before encoding."""
    from kerastransfer.export.metadata import version_values

    return {
        "format_version": "1",
        "backbone": str(model.backbone_name),
        "output": "predictions",
        "quantization": quantization or "none",
        "opset": str(opset),
        "optimization": optimized or "none",
        **version_values(),
    }
