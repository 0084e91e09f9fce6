"""`OnnxPredictor`: run an exported kerastransfer model with onnxruntime only.

This module imports numpy and onnxruntime, and Pillow lazily to decode image
files; it never imports TensorFlow or Keras, so a deployment needs neither.
The exported file carries its class names, input size and task as
`kerastransfer.*` metadata, which the predictor reads back.

Example:

>>> from kerastransfer.runtime import OnnxPredictor
>>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
>>> predictor.predict_files("photos/", top_k=3)  # doctest: +SKIP
[{'path': 'photos/a.jpg', 'top_k': [('cat', 0.97), ...], 'probabilities': ...}]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OnnxPredictor", "list_image_files", "decode_images", "preprocess_images",
           "IMAGE_EXTENSIONS"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The metadata contract with kerastransfer.export.metadata, which writes it: keys
# are prefixed, structured values are JSON.
METADATA_PREFIX = "kerastransfer."
METADATA_JSON_KEYS = frozenset({"class_names", "input_shape", "value_range",
                                "include_preprocessing", "output_shape"})
# Preferred execution providers, fastest first.
_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                   "CPUExecutionProvider")

_CAFFE_BGR_MEAN = np.array((103.939, 116.779, 123.68), dtype="float32")
_TORCH_MEAN = np.array((0.485, 0.456, 0.406), dtype="float32")
_TORCH_STD = np.array((0.229, 0.224, 0.225), dtype="float32")


def preprocess_images(images: np.ndarray, mode: str) -> np.ndarray:
    """Applies a backbone family's normalization in numpy (as `ImagePreprocessing`).

    Used when a model was exported with `include_preprocessing=False`.

    Args:
        images: float32 RGB images in [0, 255], channels last.
        mode: `"caffe"`, `"tf"`, `"torch"`, `"unit"` or `"none"`.

    Returns:
        The normalized float32 images.
    """
    x = images.astype("float32", copy=False)
    if mode == "none":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if mode == "caffe":
        return x[..., ::-1] - _CAFFE_BGR_MEAN
    raise ValueError(
        "Unknown preprocessing mode in the model metadata. Re-export the model "
        f"with this kerastransfer version. Received: mode={mode!r}"
    )


def list_image_files(paths_or_folder: Any) -> list[str]:
    """Expands a folder (recursively, sorted) or a list of paths into file paths.

    Args:
        paths_or_folder: a folder, one file path, or a sequence of file paths.

    Returns:
        The file paths, in order; inside folders only files with an image
        extension ({IMAGE_EXTENSIONS}).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(paths_or_folder, (str, os.PathLike)):
        items = [os.fspath(paths_or_folder)]
    else:
        items = [os.fspath(p) for p in paths_or_folder]
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        paths.append(os.path.join(root, name))
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(
                f"No such image file or folder. Check the path. Received: path={item!r}"
            )
    return paths


def decode_images(
    paths: Sequence[str], size: Sequence[int]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decodes image files with Pillow: RGB, resized (bilinear) to `size`.

    Args:
        paths: image file paths.
        size: `(height, width)`.

    Returns:
        `(images, failed)`: float32 `(n, height, width, 3)` in [0, 255] for the
        readable files, in order, and `[(path, reason), ...]` for the others.
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    images, failed, ok = [], [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                images.append(np.asarray(image, dtype="float32"))
                ok.append(path)
        except Exception as error:  # noqa: BLE001 - Pillow raises many types
            failed.append((path, f"{type(error).__name__}: {error}"))
    array = (np.stack(images) if images
             else np.zeros((0, height, width, 3), dtype="float32"))
    return array, failed


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Turns raw `kerastransfer.*` metadata strings into Python values (prefix
    removed); other keys are dropped."""
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
        elif name == "num_classes":
            value = int(value)
        result[name] = value
    return result


def _choose_providers(providers: Sequence[str] | None) -> list[str]:
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
    return [p for p in _PROVIDER_ORDER if p in available] or list(available)


class OnnxPredictor:
    """Runs an ONNX model exported by `kerastransfer.export.export_onnx`.

    Args:
        path: the `.onnx` file.
        providers: onnxruntime execution providers, in order of preference.
            Defaults to `None` (TensorRT, then CUDA when available, else CPU).
        intra_op_threads: threads per operator. Defaults to `None` (the number
            of CPU cores available to this process).
        allow_spinning: let idle threads busy-wait between operators. Off by
            default: on shared or loaded machines spinning threads steal time
            from each other. Defaults to `False`.

    Attributes:
        providers: the providers the session uses.
        metadata: the `kerastransfer.*` metadata (prefix removed).
        class_names: class names in output order.
        input_shape: `(height, width, channels)` of one image.
        task: `"multiclass"`, `"multilabel"` or `"regression"`.

    Example:

    >>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
    >>> probabilities = predictor.predict(images)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        *,
        intra_op_threads: int | None = None,
        allow_spinning: bool = False,
    ):
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"No ONNX model at this path. Export one with "
                f"kerastransfer.export.export_onnx. Received: path={self.path!r}"
            )
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ValueError(
                "intra_op_threads must be >= 1 (or None for all cores). "
                f"Received: intra_op_threads={intra_op_threads}"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads or _cpu_count()
        options.inter_op_num_threads = 1
        spin = "1" if allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        chosen = _choose_providers(providers)
        try:
            self._session = ort.InferenceSession(self.path, options, providers=chosen)
        except Exception as error:  # onnxruntime raises its own pybind types
            from kerastransfer.saving import ModelLoadError

            raise ModelLoadError(
                f"onnxruntime cannot load this ONNX model ({type(error).__name__}: "
                f"{str(error)[:300]}). The file may be corrupt or truncated, or not "
                f"an ONNX model: export it again. Received: path={self.path!r}"
            ) from error
        self.providers = list(self._session.get_providers())
        logger.info("OnnxPredictor %s runs on %s", self.path, self.providers)

        raw = self._session.get_modelmeta().custom_metadata_map
        self.metadata = decode_metadata(dict(raw))
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        shape = self.metadata.get("input_shape") or list(model_input.shape)
        self.input_shape = tuple(
            int(s) if isinstance(s, int) else None for s in shape[1:]
        )
        num_outputs = self._session.get_outputs()[0].shape[-1]
        default_names = ([str(i) for i in range(num_outputs)]
                         if isinstance(num_outputs, int) else [])
        self.class_names = list(self.metadata.get("class_names", default_names))
        self.task = self.metadata.get("task", "multiclass")
        include = self.metadata.get("include_preprocessing", True)
        self._preprocessing = (None if include
                               else self.metadata.get("preprocessing_mode", "none"))

    def __repr__(self) -> str:
        return (f"OnnxPredictor(path={self.path!r}, input_shape={self.input_shape}, "
                f"classes={len(self.class_names)}, providers={self.providers})")

    def _check(self, images: Any) -> np.ndarray:
        array = np.asarray(images)
        if array.dtype.kind not in "uif":
            raise ValueError(
                "images must be a numeric array (uint8 or float, RGB in [0, 255]). "
                f"Received: images.dtype={array.dtype}"
            )
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(
                "images must be one image (height, width, channels) or a batch "
                "(n, height, width, channels). "
                f"Received: images.shape={np.shape(images)}"
            )
        expected = self.input_shape
        if array.shape[-1] != expected[-1]:
            raise ValueError(
                f"images must have {expected[-1]} channels (RGB, channels last). "
                f"Convert them, e.g. grayscale to RGB. Received: "
                f"images.shape={array.shape}"
            )
        for got, want in zip(array.shape[1:3], expected[:2], strict=True):
            if want is not None and got != want:
                raise ValueError(
                    f"images must be {expected[0]}x{expected[1]} pixels. Resize "
                    "them, or use predict_files(). "
                    f"Received: images.shape={array.shape}"
                )
        return array.astype("float32", copy=False)

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Runs the model, like `keras.Model.predict`.

        Args:
            images: one image `(h, w, c)` or a batch `(n, h, w, c)`, RGB, uint8
                or float in [0, 255].
            batch_size: images per onnxruntime call. Defaults to `32`.

        Returns:
            The outputs, `(n, num_outputs)` (n=1 for a single image).

        Raises:
            ValueError: wrong rank, size, channels or dtype.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "batch_size must be a positive int. "
                f"Received: batch_size={batch_size!r}"
            )
        array = self._check(images)
        outputs = []
        for start in range(0, len(array), batch_size):
            batch = array[start:start + batch_size]
            if self._preprocessing is not None:
                batch = preprocess_images(batch, self._preprocessing)
            feed = {self._input_name: np.ascontiguousarray(batch)}
            outputs.append(self._session.run(None, feed)[0])
        if not outputs:
            return np.zeros((0, *self._session.get_outputs()[0].shape[1:]), "float32")
        return np.concatenate(outputs)

    def predict_files(
        self,
        paths_or_folder: Any,
        top_k: int = 5,
        batch_size: int = 32,
    ) -> list[dict[str, Any]]:
        """Decodes image files with Pillow and predicts them.

        Unreadable files are skipped and reported with a warning; they do not
        appear in the results.

        Args:
            paths_or_folder: a folder (searched recursively), a file, or a list
                of files.
            top_k: how many best classes to return per image. Defaults to `5`.
            batch_size: images decoded and run at once. Defaults to `32`.

        Returns:
            One dict per readable image: `{"path", "top_k": [(class, score),
            ...], "probabilities": np.ndarray}`.

        Raises:
            ValueError: the model has no fixed input size, or a bad `top_k`.
        """
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int. Received: top_k={top_k!r}")
        if None in self.input_shape[:2]:
            raise ValueError(
                "The model has no fixed input size, so files cannot be resized for "
                f"it. Use predict() on arrays. Received: input_shape={self.input_shape}"
            )
        paths = list_image_files(paths_or_folder)
        results: list[dict[str, Any]] = []
        skipped: list[tuple[str, str]] = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images, failed = decode_images(chunk, self.input_shape[:2])
            skipped.extend(failed)
            bad = {p for p, _ in failed}
            good = [p for p in chunk if p not in bad]
            if not good:
                continue
            outputs = self.predict(images, batch_size=batch_size)
            for path, scores in zip(good, outputs, strict=True):
                order = np.argsort(-scores)[:top_k]
                names = self.class_names
                results.append({
                    "path": path,
                    "top_k": [(names[i] if i < len(names) else str(i),
                               float(scores[i])) for i in order],
                    "probabilities": scores,
                })
        if skipped:
            logger.warning(
                "Skipped %d unreadable file(s): %s", len(skipped),
                "; ".join(f"{p} ({r})" for p, r in skipped[:10]),
            )
        self.skipped = skipped
        return results


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
