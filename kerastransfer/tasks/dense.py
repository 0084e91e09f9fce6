"""`DenseTask`: what the dense tasks (segmentation, detection) share.

A dense task reads its backbone at several depths: the backbone is cut into a
feature pyramid (`kerastransfer.backbones.pyramid.pyramid_model`) and a head
(a segmentation decoder, a detection neck and head) merges the levels. Between
`TransferTask` (`kerastransfer/tasks/base.py`) and `SegmentationModel` /
`DetectionModel`, this module holds what is the same for both:

* `dense_graph`: resolving the backbone (a channel count other than the
  backbone's adapts its first convolution and folds the preprocessing into it,
  `kerastransfer/backbones/adapt.py`), cutting the pyramid, and the graph from
  the image input through `ImagePreprocessing` to the pyramid levels;
* `DenseTask`: the attributes every dense task keeps (classes, image shape,
  preprocessing mode, strides), feature caching on the whole pyramid
  (`head_model`), `export_graph`, `example_inputs`, and the shared parts of
  `export_contract`, the checkpoint identity and `get_config`.

A subclass builds its head on `DenseGraph.levels`, calls
`super().__init__(inputs=graph.inputs, outputs=...)`, then `_init_dense(...)`,
and implements `_head_outputs(levels)` (its head on pyramid levels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerastransfer.backbones.pyramid import pyramid_model, pyramid_strides
from kerastransfer.backbones.registry import BackboneSpec
from kerastransfer.errors import InputShapeError
from kerastransfer.preprocessing import ImagePreprocessing
from kerastransfer.tasks.backbone import BackboneParts, resolve_backbone
from kerastransfer.tasks.base import TransferTask

__all__ = ["DenseTask", "DenseGraph", "dense_graph"]


@dataclasses.dataclass
class DenseGraph:
    """The input side of a dense task's graph (see `dense_graph`).

    Attributes:
        parts: the resolved backbone; `parts.model` is the pyramid encoder.
        inputs: the image input `keras.Input`.
        preprocessor: the `ImagePreprocessing` layer after the input.
        levels: the pyramid's outputs on `inputs`, shallowest first.
        shape: the fixed input shape `(height, width, channels)`.
        mode: the preprocessing mode of `preprocessor` (`"none"` when it is
            folded into an adapted first convolution).
        strides: the strides the pyramid was cut at (`None`: every level).
    """

    parts: BackboneParts
    inputs: Any
    preprocessor: ImagePreprocessing
    levels: list
    shape: tuple
    mode: str
    strides: list | None


def dense_graph(backbone: str | BackboneSpec | keras.Model, *, weights: str | None,
                input_shape: Sequence[int] | None, preprocessing: str | None,
                strides: Sequence[int] | None, default_strides: Sequence[int] | None,
                what: str) -> DenseGraph:
    """Resolves the backbone, cuts its pyramid and wires input -> levels.

    Args:
        backbone, weights, input_shape, preprocessing, strides: the task's
            arguments of the same names.
        default_strides: the strides read from a registry backbone when
            `strides` is `None` (`None`: every recorded stride).
        what: the task's name in error messages (`"segmentation"`).

    Returns:
        A `DenseGraph`.

    Raises:
        InputShapeError: the backbone has no feature pyramid or no fixed size.
    """
    parts = resolve_backbone(backbone, weights=weights, input_shape=input_shape,
                             preprocessing=preprocessing)
    shape = tuple(parts.input_shape)
    if len(shape) != 3 or any(s is None for s in shape):
        raise InputShapeError(
            f"A {what} model needs a fixed image size. Pass "
            "input_shape=(height, width, channels). "
            f"Received: input_shape={shape}")
    if strides is None and default_strides is not None and parts.spec is not None \
            and isinstance(backbone, (str, BackboneSpec)):
        strides = default_strides
    encoder = pyramid_model(parts.model, strides=strides, spec=parts.spec)
    parts = dataclasses.replace(parts, model=encoder)
    mode = preprocessing or (parts.spec.preprocessing if parts.spec else "none")
    if parts.folded_preprocessing is not None:
        mode = "none"  # folded into the adapted first convolution (C != 3)
    inputs = keras.Input(shape=shape, name="image")
    preprocessor = ImagePreprocessing(mode, name="preprocessing")
    levels = list(encoder(preprocessor(inputs)))
    return DenseGraph(parts=parts, inputs=inputs, preprocessor=preprocessor,
                      levels=levels, shape=shape, mode=mode,
                      strides=None if strides is None else list(strides))


class DenseTask(TransferTask):
    """Base class of the pyramid tasks (see the module docstring); never
    instantiated directly.

    Subclasses set `KIND` (the export metadata's `kind`), `HEAD_MODEL_SUFFIX`
    (the name of `head_model()`'s model after the task's name) and `EXPORTS`
    (what `export_graph` outputs, in its error message), and implement
    `_head_outputs`.
    """

    KIND = "dense"
    HEAD_MODEL_SUFFIX = "head"
    EXPORTS = "its predictions"

    def _init_dense(self, graph: DenseGraph, *, head_layers, num_classes: int,
                    class_names: Sequence[str], task: str, strategy=None,
                    mixed_precision=None) -> None:
        self._init_task(graph.parts, head_layers=head_layers,
                        feature_tensor=graph.levels, strategy=strategy,
                        mixed_precision=mixed_precision)
        self.preprocessor = graph.preprocessor
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = task
        self.image_shape = graph.shape
        self.preprocessing_mode = graph.mode
        self.strides = (graph.strides if graph.strides is not None
                        else _recorded_strides(graph.parts.spec, graph.parts.model))

    def _head_outputs(self, levels: list):
        """The task's head on pyramid levels (shares the head's layers)."""
        raise NotImplementedError

    # --- The task contract: the shared parts --------------------------------
    def export_contract(self) -> dict:
        """What every dense task's export metadata holds; subclasses add the
        meaning of their output."""
        return {"kind": self.KIND, "task": self.task,
                "class_names": list(self.class_names),
                "num_classes": self.num_classes, "input_shape": list(self.image_shape),
                "preprocessing_mode": self.preprocessing_mode}

    def example_inputs(self, data: Any) -> np.ndarray:
        """The images of `(images, labels)` validation data (or images as is)."""
        if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(
                data[0]) == 4:
            return np.asarray(data[0])
        return data

    def _checkpoint_identity(self) -> dict:
        return {**super()._checkpoint_identity(), "num_classes": int(self.num_classes),
                "image_shape": list(self.image_shape), "task": self.task}

    # --- Feature caching (the whole pyramid) and export ---------------------
    def head_model(self) -> keras.Model:
        """The head on cached pyramid levels (shares the head's layers)."""
        inputs = [keras.Input(shape=tuple(t.shape[1:]), name=f"level_{i}")
                  for i, t in enumerate(self._feature_tensor)]
        return keras.Model(inputs, self._head_outputs(inputs),
                           name=f"{self.name}_{self.HEAD_MODEL_SUFFIX}")

    def export_graph(self, *, include_preprocessing: bool = True,
                     output: str = "predictions") -> keras.Model:
        """The Keras model an ONNX export reproduces (see `export/convert.py`):
        this model, or without its `ImagePreprocessing` layer."""
        if output != "predictions":
            raise ValueError(
                f"A {self.KIND} model exports {self.EXPORTS} only. Pass "
                f"output='predictions'. Received: output={output!r}")
        if include_preprocessing:
            return self
        inputs = keras.Input(shape=self.image_shape, name="image")
        return keras.Model(inputs, self._head_outputs(list(self.backbone(inputs))),
                           name=f"{self.name}_nopre")

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "input_shape": list(self.image_shape),
            "class_names": list(self.class_names),
            "strides": list(self.strides),
            "preprocessing": self.preprocessing_mode,
        }


def _recorded_strides(spec, encoder) -> list[int]:
    if spec is not None and getattr(spec, "pyramid", None):
        return [int(s) for s, _ in spec.pyramid]
    return pyramid_strides(encoder)
