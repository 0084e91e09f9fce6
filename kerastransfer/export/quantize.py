"""Quantization of exported models with onnxruntime.quantization, and fp16.

- `"dynamic"`: int8 weights, activations quantized at run time. On CPUs it turns
  convolutions into `ConvInteger`, which is usually *slower* than float32 for CNNs
  (measured on AVX2); it is offered for completeness and for Dense-heavy heads.
- `"static"`: QDQ int8, weights per channel (S8), activations (U8) calibrated on
  the user's images. `reduce_range=True` (7-bit weights) by default: without it
  U8S8 convolutions saturate on CPUs without VNNI (onnxruntime's documented
  caveat; measured on MobileNetV3), and an exported file may be deployed on any CPU.
- fp16 (`convert_fp16`): weights and activations in float16 with float32 inputs
  and outputs (`keep_io_types=True`); for GPUs, no speed-up on CPUs.

Agreement of the quantized model with float32 is measured on real images (the
calibration or validation data) and reported; random images give pessimistic
figures.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kerastransfer.errors import DataError

__all__ = [
    "QUANTIZATION_MODES",
    "load_calibration_images",
    "quantize_onnx",
    "convert_fp16",
    "agreement",
]

logger = logging.getLogger(__name__)

QUANTIZATION_MODES = ("dynamic", "static")


def load_calibration_images(
    data: Any, image_shape: Sequence[int], *, limit: int | None = 256
) -> np.ndarray:
    """Returns calibration images as float32 NHWC RGB in [0, 255].

    Args:
        data: an array `(n, h, w, c)` (uint8 or float in [0, 255]), a list of
            such images, or the path of a folder of image files (searched
            recursively; decoded with Pillow, converted to RGB and resized).
        image_shape: `(height, width, channels)` of the model input.
        limit: at most this many images are used. Defaults to `256`.

    Returns:
        A float32 array `(n, height, width, channels)`.

    Raises:
        DataError: no usable image, or images of the wrong shape.
    """
    from kerastransfer.runtime import files as runtime

    if isinstance(data, (str, os.PathLike)):
        paths = runtime.list_image_files(data)
        if limit is not None:
            paths = paths[:limit]
        images, failed = runtime.decode_images(paths, image_shape[:2],
                                               channels=image_shape[-1] or 3)
        if failed:
            logger.warning("Skipped %d unreadable calibration file(s): %s",
                           len(failed), ", ".join(p for p, _ in failed[:5]))
        if len(images) == 0:
            raise DataError(
                "The calibration folder has no readable image. Pass a folder of "
                f"JPEG/PNG images or an array. Received: calibration_data={data!r}"
            )
        return images
    array = np.asarray(data)
    if array.ndim == len(image_shape):
        array = array[None]
    if array.ndim != len(image_shape) + 1 or tuple(array.shape[1:]) != tuple(
        image_shape
    ):
        raise DataError(
            "Calibration images must have shape "
            f"(n, {', '.join(map(str, image_shape))}). Resize them to the "
            "model's input size. "
            f"Received: calibration_data.shape={array.shape}"
        )
    if len(array) == 0:
        raise DataError("calibration_data is empty. Pass at least one image. "
                        "Received: calibration_data.shape=(0, ...)")
    if limit is not None:
        array = array[:limit]
    return array.astype("float32")


def _calibration_reader(input_name: str, images: np.ndarray, batch_size: int = 8):
    """An `onnxruntime.quantization.CalibrationDataReader` over an array, in
    batches of `batch_size` (rewindable with `rewind()`)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayReader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            return next(self._batches, None)

        def rewind(self):
            self._batches: Iterator[dict[str, np.ndarray]] = iter(
                [{input_name: images[i:i + batch_size]}
                 for i in range(0, len(images), batch_size)])

    return ArrayReader()


def quantize_onnx(
    model_proto: Any,
    mode: str,
    *,
    calibration_images: np.ndarray | None = None,
    per_channel: bool = True,
    reduce_range: bool = True,
    nodes_to_exclude: Sequence[str] | None = None,
) -> Any:
    """Quantizes an ONNX model to int8.

    Args:
        model_proto: the float32 `ModelProto`.
        mode: `"dynamic"` or `"static"`.
        calibration_images: the inputs the ONNX model takes (already
            preprocessed if the graph does not preprocess), required for
            `"static"`. Defaults to `None`.
        per_channel: per-channel weight scales (static). Defaults to `True`.
        reduce_range: 7-bit weights, needed on CPUs without VNNI. Defaults to
            `True`.
        nodes_to_exclude: names of nodes kept in float32 (e.g. an audio
            front end). Defaults to `None`.

    Returns:
        The quantized `ModelProto`.

    Raises:
        ValueError: an unknown mode, or `"static"` without calibration images.
    """
    import onnx
    from onnxruntime import quantization as q

    if mode not in QUANTIZATION_MODES:
        raise ValueError(
            f"quantize must be one of {QUANTIZATION_MODES} or None. "
            f"Received: quantize={mode!r}"
        )
    if mode == "static" and calibration_images is None:
        raise ValueError(
            "Static quantization needs calibration images. Pass calibration_data "
            "(an array of images or a folder). Received: calibration_data=None"
        )
    with tempfile.TemporaryDirectory(prefix="kerastransfer_q_") as folder:
        source = os.path.join(folder, "fp32.onnx")
        target = os.path.join(folder, "int8.onnx")
        onnx.save(model_proto, source)
        if mode == "dynamic":
            # ConvInteger only has uint8 x uint8 kernels in onnxruntime.
            q.quantize_dynamic(source, target, weight_type=q.QuantType.QUInt8,
                               per_channel=False, reduce_range=reduce_range,
                               nodes_to_exclude=list(nodes_to_exclude or []))
        else:
            input_name = model_proto.graph.input[0].name
            q.quantize_static(
                source, target, _calibration_reader(input_name, calibration_images),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                calibrate_method=q.CalibrationMethod.MinMax,
                nodes_to_exclude=list(nodes_to_exclude or []),
            )
        quantized = onnx.load(target)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model_proto.metadata_props)
    return quantized


def convert_fp16(model_proto: Any) -> Any:
    """Converts weights and activations to float16, keeping float32 inputs/outputs.

    Uses `onnxconverter_common.float16.convert_float_to_float16` with
    `keep_io_types=True`, so callers keep feeding float32 images.
    """
    try:
        from onnxconverter_common import float16
    except ImportError as error:
        raise ImportError(
            "fp16 export needs onnxconverter-common. Install it with "
            "`pip install onnxconverter-common`. Received: fp16=True"
        ) from error
    import warnings

    with warnings.catch_warnings():  # one warning per tiny weight clipped to 1e-7
        warnings.filterwarnings("ignore", category=UserWarning,
                                module="onnxconverter_common")
        converted = float16.convert_float_to_float16(model_proto, keep_io_types=True)
    return converted


def agreement(
    reference: np.ndarray, candidate: np.ndarray, task: str = "multiclass"
) -> float:
    """Fraction of samples on which two models make the same decision.

    Args:
        reference: outputs of the float32 model `(n, k)`.
        candidate: outputs of the quantized model `(n, k)`.
        task: `"multiclass"` (same top-1 class), `"multilabel"` (same labels
            above 0.5 for every class) or `"regression"` (returns NaN: use
            `max_abs_diff` instead). Defaults to `"multiclass"`.

    Returns:
        A float in [0, 1] (NaN for regression).
    """
    if task == "regression":
        return float("nan")
    if task == "multilabel":
        same = np.all((reference > 0.5) == (candidate > 0.5), axis=-1)
    else:
        same = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
    return float(np.mean(same))
