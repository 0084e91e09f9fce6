"""`OnnxPredictor`: run an exported kerastransfer image model with onnxruntime.

This module imports numpy and onnxruntime, and Pillow lazily to decode image
files; it never imports TensorFlow or Keras, so a deployment needs neither.
The exported file carries its class names, input size and task as
`kerastransfer.*` metadata (or, when that was stripped, in its `model.json`
sidecar), which the predictor reads back (`runtime/base.py`).

Example:

>>> from kerastransfer.runtime import OnnxPredictor
>>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
>>> predictor.predict_files("photos/", top_k=3)  # doctest: +SKIP
[{'path': 'photos/a.jpg', 'top_k': [('cat', 0.97), ...], 'probabilities': ...}]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.runtime.base import create_session, load_metadata
from kerastransfer.runtime.files import predict_image_files
from kerastransfer.runtime.preprocess import preprocess_images

__all__ = ["OnnxPredictor", "PREDICTOR_KINDS"]

logger = logging.getLogger("kerastransfer.runtime")

# The metadata "kind" of an exported task -> (module, class) of its predictor, a
# subclass of OnnxPredictor that `OnnxPredictor(path)` becomes for such a file.
PREDICTOR_KINDS = {
    "segmentation": ("kerastransfer.runtime.segmentation", "SegmentationPredictor"),
    "audio": ("kerastransfer.runtime.audio", "AudioPredictor"),
    "detection": ("kerastransfer.runtime.detection", "DetectionPredictor"),
}


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
        metadata: the `kerastransfer.*` metadata (prefix removed), from the
            file, else from its `model.json` sidecar (see `runtime/base.py`);
            empty for a foreign ONNX file (classes are then named "0", "1", ...
            and the input size comes from the graph).
        metadata_source: `"onnx"`, `"sidecar"` or `"none"`.
        class_names: class names in output order.
        input_shape: `(height, width, channels)` of one image.
        task: `"multiclass"`, `"multilabel"` or `"regression"`.
        window: the model's intensity window `(center, width)`, or `None`.
        threshold: the model's decision threshold (see `decide`), or `None`.
        skipped: `[(path, reason), ...]` of the last `predict_files` call.

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
        self.path = os.fspath(path)
        self._session = create_session(self.path, providers,
                                       intra_op_threads=intra_op_threads,
                                       allow_spinning=allow_spinning)
        self.providers = list(self._session.get_providers())
        logger.info("OnnxPredictor %s runs on %s", self.path, self.providers)
        self.metadata, self.metadata_source = load_metadata(self._session, self.path)
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
        # The intensity window and decision threshold stored by the model
        # (medical imaging): applied as the Keras model does.
        window = self.metadata.get("window")
        self.window = None if window in (None, "None") else tuple(window)
        threshold = self.metadata.get("threshold")
        self.threshold = None if threshold in (None, "None") else threshold
        self.kind = self.metadata.get("kind", "classification")
        if type(self) is OnnxPredictor and self.kind in PREDICTOR_KINDS:
            # One entry point for every task: the file says what it holds.
            import importlib

            module, name = PREDICTOR_KINDS[self.kind]
            self.__class__ = getattr(importlib.import_module(module), name)
            self._init_kind()

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
        return self._run_batches(self._check(images), batch_size)

    def _prepare_batch(self, batch: np.ndarray) -> np.ndarray:
        """One batch as the graph takes it (normalized when the graph does not
        include the preprocessing)."""
        if self._preprocessing is None:
            return batch
        return preprocess_images(batch, self._preprocessing, window=self.window)

    def _run_batches(self, array: np.ndarray, batch_size: int) -> np.ndarray:
        """The first output for `array`, `batch_size` examples per onnxruntime
        call (each through `_prepare_batch`); every predictor runs through it.

        Raises:
            ValueError: `batch_size` is not a positive int.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "batch_size must be a positive int. "
                f"Received: batch_size={batch_size!r}"
            )
        outputs = []
        for start in range(0, len(array), batch_size):
            batch = self._prepare_batch(array[start:start + batch_size])
            feed = {self._input_name: np.ascontiguousarray(batch)}
            outputs.append(self._session.run(None, feed)[0])
        if not outputs:
            return np.zeros((0, *self._session.get_outputs()[0].shape[1:]), "float32")
        return np.concatenate(outputs)

    def decide(self, probabilities: Any) -> np.ndarray:
        """Decisions with the model's stored `threshold` (as `TransferModel.decide`).

        Args:
            probabilities: `(n, num_classes)` outputs of `predict`.

        Returns:
            Class indices `(n,)` (multiclass) or 0/1 labels `(n, num_classes)`
            (multilabel).

        Raises:
            ValueError: a regression model, or outputs of the wrong rank.
        """
        from kerastransfer.runtime.postprocess import decide

        return decide(probabilities, self.task, self.threshold)

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
        results, self.skipped = predict_image_files(
            lambda images: self.predict(images, batch_size=batch_size),
            paths_or_folder, image_size=self.input_shape[:2],
            class_names=self.class_names, top_k=top_k, batch_size=batch_size,
            channels=self.input_shape[-1] or 3)
        return results
