"""Keras -> ONNX conversion with tf2onnx, made to work for every catalog backbone.

`convert_to_onnx` traces the model with an explicit `input_signature` (batch axis
symbolic, input named "image") inside `export_patches()` (`export/patches.py`,
the one place with private Keras API) and returns the ONNX `ModelProto`;
`name_batch_axis` names the symbolic batch axis `batch` (tf2onnx writes
`unk__<n>`); `reference_model` is the Keras model an export reproduces.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from kerastransfer.errors import ExportError
from kerastransfer.export.patches import export_patches

__all__ = ["BATCH_AXIS", "COLLECT_ABOVE_BYTES", "collected_optimizer_copies",
           "convert_to_onnx", "name_batch_axis", "quiet_tf2onnx", "reference_model"]

logger = logging.getLogger("kerastransfer.export.onnx")
_PATCH_LOCK = threading.Lock()
BATCH_AXIS = "batch"


class _Tf2OnnxFilter(logging.Filter):
    """Turns tf2onnx's optimizer tracebacks into one short line each."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and (
            record.exc_info or "Failed to apply" in str(record.msg)
        ):
            summary = record.getMessage().splitlines()[0][:200]
            logger.debug("tf2onnx: %s", summary)
            record.exc_info = None
            record.exc_text = None
            record.msg, record.args = f"tf2onnx: {summary} (details at DEBUG)", ()
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logger.isEnabledFor(logging.DEBUG)
        return True


@contextlib.contextmanager
def quiet_tf2onnx() -> Iterator[None]:
    """Keeps tf2onnx's optimizer tracebacks from flooding the user's log."""
    names = ["tf2onnx", "tf2onnx.optimizer", "tf2onnx.tfonnx", "tf2onnx.tf_utils",
             "tf2onnx.tf_loader", "tf2onnx.onnx_opset"]
    log_filter = _Tf2OnnxFilter()
    loggers = [logging.getLogger(n) for n in names]
    handlers = []
    for lg in loggers:
        lg.addFilter(log_filter)
        for handler in lg.handlers:
            handler.addFilter(log_filter)
            handlers.append(handler)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(log_filter)
        for handler in handlers:
            handler.removeFilter(log_filter)


# Below this many bytes of weights a conversion runs without the collections:
# its dropped copies add < 0.5 GiB (MobileNetV3Small: 0.77 -> 1.05 GiB peak), and
# the collections cost more time than they save memory (docs/design.md, fact 24).
COLLECT_ABOVE_BYTES = 16 * 2**20


@contextlib.contextmanager
def collected_optimizer_copies(model: Any = None) -> Iterator[None]:
    """Frees tf2onnx's dropped graph copies while it converts `model`.

    tf2onnx 1.17's `optimize_graph` deep-copies the whole graph (constants
    included) before each of its 12 optimizers, on every pass, and the copies
    it drops, like the frozen graph it hands to grappler, hold reference cycles
    that only the cyclic garbage collector frees, which rarely runs then (few
    new container objects). Converting a ResNet50 at 64 px peaked at 6.7 GiB
    resident and stayed there; with a `gc.collect()` before each optimizer is
    made and before grappler runs, 2.6 GiB (InceptionResNetV2 at 75 px: 5.2 ->
    4.6 GiB; docs/design.md, fact 24). The objects alive before the conversion
    (TensorFlow's and Keras's: a 0.2 s scan each time) are frozen out of those
    collections with `gc.freeze()`, so each one scans only the conversion's own
    objects. tf2onnx has no public switch for this: the optimizer table
    (`tf2onnx.optimizer._optimizers`) and `tf2onnx.tf_loader.tf_optimize_grappler`
    (private) are wrapped for the conversion only and restored after; without
    them it runs unchanged.

    Args:
        model: the Keras model being converted. A model with fewer than
            `COLLECT_ABOVE_BYTES` of float32 weights converts unchanged. Defaults
            to `None` (always collect).
    """
    import gc

    if model is not None and model.count_params() * 4 < COLLECT_ABOVE_BYTES:
        yield
        return

    import tf2onnx.optimizer
    import tf2onnx.tf_loader

    def collecting(function):
        def call(*args, **kwargs):
            gc.collect()
            return function(*args, **kwargs)
        return call

    table = getattr(tf2onnx.optimizer, "_optimizers", None)
    grappler = getattr(tf2onnx.tf_loader, "tf_optimize_grappler", None)
    with _PATCH_LOCK:
        original = dict(table) if isinstance(table, dict) else None
        if original is not None:
            table.update({name: collecting(f) for name, f in original.items()})
        if callable(grappler):
            tf2onnx.tf_loader.tf_optimize_grappler = collecting(grappler)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if original is not None:
                table.clear()
                table.update(original)
            if callable(grappler):
                tf2onnx.tf_loader.tf_optimize_grappler = grappler
            gc.collect()  # the last copies, before the caller validates the file


def reference_model(model: Any, *, include_preprocessing: bool = True,
                    output: str = "predictions") -> Any:
    """The Keras model an export reproduces (shares weights with `model`).

    Args:
        model: a `TransferModel`.
        include_preprocessing: start from raw RGB [0, 255] images (`True`) or from
            the preprocessing layer's output (`False`). Defaults to `True`.
        output: `"predictions"` (the head's output) or `"features"` (pooled
            backbone features). Defaults to `"predictions"`.

    Returns:
        A `keras.Model` with one input named "image".
    """
    import keras

    if hasattr(model, "export_graph"):  # a task with its own graph (segmentation)
        return model.export_graph(include_preprocessing=include_preprocessing,
                                  output=output)
    if output not in ("predictions", "features"):
        raise ValueError(
            "output must be 'predictions' or 'features'. "
            f"Received: output={output!r}"
        )
    if include_preprocessing:
        if output == "predictions":
            return model
        return model.feature_extractor()
    inputs = keras.Input(shape=model.image_shape, dtype="float32", name="image")
    x = model.backbone(inputs)
    for layer in model.head_layers:
        x = layer(x)
        if output == "features" and layer.name == "pool":
            break
    if output == "features" and len(x.shape) == 4:
        raise ExportError(  # the head has no pool layer: features are vectors
            "Unexpected feature map output. Report this as a bug. "
            f"Received: shape={x.shape}"
        )
    return keras.Model(inputs, x, name=f"{model.name}_{output}_nopre")


def convert_to_onnx(keras_model: Any, image_shape: tuple, *, opset: int = 17,
                    input_name: str = "image") -> Any:
    """Converts a one-input Keras image model with tf2onnx.

    Args:
        keras_model: a `keras.Model` taking float32 NHWC images.
        image_shape: `(height, width, channels)` of one image (any other task:
            the shape of one input, e.g. `(samples,)` for waveforms).
        opset: the ONNX opset. Defaults to `17`.
        input_name: the graph input's name. Defaults to `"image"`.

    Returns:
        The ONNX `ModelProto` (input `input_name`, batch axis symbolic).

    Raises:
        ExportError: tf2onnx failed.
    """
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *image_shape), tf.float32, name=input_name),)
    with export_patches(), quiet_tf2onnx(), collected_optimizer_copies(keras_model):
        try:
            proto, _ = tf2onnx.convert.from_keras(
                keras_model, input_signature=spec, opset=opset
            )
        except Exception as error:  # noqa: BLE001 - tf2onnx raises anything
            raise ExportError(
                f"tf2onnx could not convert the model: {error}. Try another opset "
                f"or report the backbone. Received: opset={opset}"
            ) from error
    return proto


def name_batch_axis(model_proto: Any, name: str = BATCH_AXIS) -> Any:
    """Names the symbolic first axis of every graph input and output `name`.

    tf2onnx names unknown dimensions `unk__<n>`; clients that bind dimensions
    by name (onnxruntime-node, TensorRT profiles) read `batch` instead. Other
    uses of the old names (intermediate `value_info`) are renamed too.

    Args:
        model_proto: an ONNX `ModelProto` (changed in place).
        name: the dimension name. Defaults to `"batch"`.

    Returns:
        `model_proto`.
    """
    graph = model_proto.graph
    old_names = set()
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            if dims[0].dim_param:
                old_names.add(dims[0].dim_param)
            dims[0].dim_param = name
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in old_names:
                dim.dim_param = name
    return model_proto
