"""`SegmentationModel`: per-pixel classification — pyramid encoder -> decoder.

A `SegmentationModel` is a `DenseTask` (`kerastransfer/tasks/dense.py`): the
backbone is the encoder, cut into a feature pyramid
(`kerastransfer.backbones.pyramid.pyramid_model`: strides 2/4/8/16/32 where they
exist); the "head" is a decoder that merges the levels and predicts one class
distribution per pixel at the input resolution. Phases, BatchNorm rules,
layer-wise rates, resume, the NaN guard and saving are the base class's.

Decoders (`decoder=`: `"unet"`, `"fpn"`) are built by
`kerastransfer.tasks.segmentation_decoder`. Levels are resized to each other's
exact sizes (bilinear), so valid-padding encoders (Inception, Xception), whose
maps are a few pixels smaller than `size / stride`, work too. The output is
softmax (`task="multiclass"`, masks of class indices `(n, h, w)`) or sigmoid
(`task="multilabel"`, masks `(n, h, w, classes)` of 0/1), in float32 even
under mixed precision.

The loss is `SegmentationLoss` (cross-entropy + soft Dice, class weights); the
metrics are Keras's `MeanIoU` and pixel accuracy (`BinaryIoU` for multilabel).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerastransfer.backbones.registry import BackboneSpec
from kerastransfer.errors import DataError
from kerastransfer.tasks.backbone import build_scope
from kerastransfer.tasks.classes import resolve_classes
from kerastransfer.tasks.dense import DenseTask, dense_graph
from kerastransfer.tasks.segmentation_decoder import decode, decoder_layers, flat
from kerastransfer.tasks.segmentation_loss import SegmentationLoss

__all__ = ["SegmentationModel", "DECODERS", "SEGMENTATION_TASKS"]

logger = logging.getLogger(__name__)

DECODERS = ("unet", "fpn")
SEGMENTATION_TASKS = ("multiclass", "multilabel")


@keras.saving.register_keras_serializable(package="kerastransfer")
class SegmentationModel(DenseTask):
    """A pretrained encoder with a segmentation decoder, fine-tuned in phases.

    Args:
        backbone: a registry name with a feature pyramid (every Keras
            Applications backbone), a `BackboneSpec` with `pyramid`, or a
            `keras.Model` with one output per stride, shallowest first.
            Defaults to `"mobilenet_v2"`.
        num_classes: number of classes (including the background).
            Defaults to `len(class_names)`.
        weights: `"imagenet"`, `None` (random) or a weights file of the
            backbone. Defaults to `"imagenet"`.
        input_shape: `(height, width, channels)`, fixed. Defaults to the
            backbone's default size.
        decoder: `"unet"` or `"fpn"`. Defaults to `"unet"`.
        class_names: class names in index order. Defaults to `["0", "1", ...]`.
        task: `"multiclass"` (softmax; masks of class indices) or
            `"multilabel"` (sigmoid; one 0/1 channel per class). Defaults to
            `"multiclass"`.
        decoder_filters: channels of the decoder stages, deepest first (U-Net:
            one per skip level plus the full-resolution stage; FPN: the first
            entry is the pyramid width). Defaults to `(128, 64, 32, 16, 16)`.
        dice_weight: weight of the soft Dice term of the default loss.
            Defaults to `1.0`.
        ce_weight: weight of the cross-entropy term. Defaults to `1.0`.
        class_weights: one cross-entropy weight per class (rare classes
            weigh more), or `None`. Defaults to `None`.
        strides: which pyramid strides the decoder reads. Defaults to every
            recorded one.
        preprocessing: an `ImagePreprocessing` mode overriding the backbone's.
            Defaults to `None`.
        mixed_precision: `"mixed_float16"`, `"mixed_bfloat16"` or `None`.
            Defaults to `None`.
        strategy: a `tf.distribute.Strategy` (not saved). Defaults to `None`.
        name: the model's name. Defaults to `"segmentation_model"`.

    Example:

    >>> import numpy as np
    >>> model = SegmentationModel("mobilenet_v2", num_classes=3, weights=None,
    ...                           input_shape=(32, 32, 3))
    >>> model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape
    (1, 32, 32, 3)
    """

    KIND = "segmentation"
    HEAD_MODEL_SUFFIX = "decoder"
    EXPORTS = "its per-pixel predictions"

    def __init__(
        self,
        backbone: str | BackboneSpec | keras.Model = "mobilenet_v2",
        num_classes: int | None = None,
        *,
        weights: str | None = "imagenet",
        input_shape: Sequence[int] | None = None,
        decoder: str = "unet",
        class_names: Sequence[str] | None = None,
        task: str = "multiclass",
        decoder_filters: Sequence[int] = (128, 64, 32, 16, 16),
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
        strides: Sequence[int] | None = None,
        preprocessing: str | None = None,
        mixed_precision: str | None = None,
        strategy: Any = None,
        name: str = "segmentation_model",
        **kwargs,
    ):
        num_classes, class_names = _check_args(
            num_classes, class_names, task, decoder, decoder_filters, class_weights)
        with build_scope(strategy, mixed_precision):
            graph = dense_graph(backbone, weights=weights, input_shape=input_shape,
                                preprocessing=preprocessing, strides=strides,
                                default_strides=None, what="segmentation")
            layers = decoder_layers(decoder, len(graph.levels), tuple(decoder_filters),
                                    num_classes, task)
            outputs = decode(decoder, layers, graph.levels, graph.shape[:2])
            super().__init__(inputs=graph.inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self._init_dense(graph, head_layers=flat(layers), num_classes=num_classes,
                         class_names=class_names, task=task, strategy=strategy,
                         mixed_precision=mixed_precision)
        self._decoder_layers = layers
        self.decoder = decoder
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.class_weights = (None if class_weights is None
                              else [float(w) for w in class_weights])

    # --- The task contract -------------------------------------------------
    def default_loss(self):
        """`SegmentationLoss`: cross-entropy + soft Dice, with class weights."""
        return SegmentationLoss(num_classes=self.num_classes, task=self.task,
                                ce_weight=self.ce_weight,
                                dice_weight=self.dice_weight,
                                class_weights=self.class_weights)

    def default_metrics(self) -> list:
        """Keras's `MeanIoU` and pixel accuracy (multiclass) or `BinaryIoU` and
        binary accuracy (multilabel)."""
        if self.task == "multilabel":
            return [keras.metrics.BinaryIoU(target_class_ids=[1], name="iou"),
                    keras.metrics.BinaryAccuracy(name="pixel_accuracy")]
        return [keras.metrics.MeanIoU(self.num_classes, sparse_y_pred=False,
                                      name="mean_iou"),
                keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")]

    def export_contract(self) -> dict:
        """The output is `(n, height, width, classes)`: per-pixel softmax
        (multiclass) or sigmoid (multilabel) probabilities at the input size;
        the runtime's `SegmentationPredictor` turns it into masks."""
        return {**super().export_contract(), "output_layout": "NHWC",
                "decoder": self.decoder}

    def _checkpoint_identity(self) -> dict:
        return {**super()._checkpoint_identity(), "decoder": self.decoder}

    def _check_labels(self, y) -> None:
        check_masks(y, self.num_classes, self.task, self.image_shape[:2])

    def fit(self, x=None, y=None, *, augmentation: Any = None, **kwargs):
        """`TransferTask.fit` for images and masks (see there for every argument).

        `augmentation` moves images and masks together: `"light"`, `"medium"`,
        `"heavy"` (`SEGMENTATION_PRESETS`) or a `SegmentationAugmentation`;
        image-only Keras layers are refused (they would shift the image away
        from its mask). `class_weight` does not apply to masks: build the model
        with `class_weights=` instead.
        """
        from kerastransfer.data.segmentation_augment import SegmentationAugmentation

        if isinstance(augmentation, str):
            augmentation = SegmentationAugmentation.preset(augmentation)
        elif augmentation is not None and not isinstance(
                augmentation, SegmentationAugmentation):
            raise TypeError(
                "A segmentation model takes augmentation='light'/'medium'/'heavy' "
                "or a SegmentationAugmentation (image and mask move together). "
                f"Received: augmentation={augmentation!r}")
        if kwargs.get("class_weight") is not None:
            raise ValueError(
                "class_weight weighs examples by one label; masks have one per "
                "pixel. Build the model with class_weights=[...] (one per class). "
                f"Received: class_weight={kwargs['class_weight']!r}")
        return super().fit(x, y, augmentation=augmentation, **kwargs)

    # --- Feature caching and export: the decoder on pyramid levels --------
    def _head_outputs(self, levels: list):
        return decode(self.decoder, self._decoder_layers, levels, self.image_shape[:2])

    def report_validation(self, validation_data, report_dir: str,
                          summary: dict) -> dict[str, str]:
        """Per-class IoU table and validation overlays (the training report)."""
        from kerastransfer.report.segmentation import write_segmentation_report

        return write_segmentation_report(self, validation_data, report_dir, summary)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "decoder": self.decoder,
            "task": self.task,
            "decoder_filters": list(self.decoder_filters),
            "dice_weight": self.dice_weight,
            "ce_weight": self.ce_weight,
            "class_weights": self.class_weights,
        }


def _check_args(num_classes, class_names, task, decoder, filters, class_weights):
    if task not in SEGMENTATION_TASKS:
        raise ValueError(
            f"task must be one of {SEGMENTATION_TASKS}. Received: task={task!r}")
    if decoder not in DECODERS:
        raise ValueError(
            f"decoder must be one of {DECODERS}. Received: decoder={decoder!r}")
    if (not filters or any(not isinstance(f, (int, np.integer)) or f < 1
                           for f in filters)):
        raise ValueError(
            "decoder_filters must be positive ints, deepest stage first. "
            f"Received: decoder_filters={filters!r}")
    num_classes, class_names = resolve_classes(
        num_classes, class_names, minimum=2 if task == "multiclass" else 1,
        head=f"{task} segmentation", below=" (The background is a class.)",
        missing="Pass num_classes (or class_names), the background included.")
    if class_weights is not None and (
            len(class_weights) != num_classes
            or any(not np.isfinite(w) or w < 0 for w in class_weights)):
        raise ValueError(
            f"class_weights must be {num_classes} finite numbers >= 0, one per "
            f"class. Received: class_weights={list(class_weights)}")
    return int(num_classes), class_names


def check_masks(y, num_classes: int, task: str, size: Sequence[int]) -> None:
    """Clear errors for numpy masks a segmentation head cannot learn from.

    Raises:
        DataError: masks of another size than the images, values outside the
            classes, or the wrong rank.
    """
    if y is None or not isinstance(y, np.ndarray):
        return
    height, width = size
    if task == "multilabel":
        if y.ndim != 4 or y.shape[-1] != num_classes:
            raise DataError(
                f"Multilabel masks must be (n, height, width, {num_classes}) of "
                f"0/1. Received: masks.shape={y.shape}")
    elif y.ndim == 4 and y.shape[-1] == 1:
        y = y[..., 0]
    elif y.ndim != 3:
        raise DataError(
            "Masks must be (n, height, width) class indices. Received: "
            f"masks.shape={y.shape}")
    if tuple(y.shape[1:3]) != (height, width):
        raise DataError(
            f"Masks must have the images' size {height}x{width}. Resize them with "
            "nearest-neighbour interpolation (or load them with "
            f"load_segmentation_folder). Received: masks.shape={y.shape}")
    bound = 1 if task == "multilabel" else num_classes - 1
    low, high = float(np.min(y)), float(np.max(y))
    if low < 0 or high > bound or not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(
            f"Mask values must be integers in [0, {bound}]"
            + (" (class indices)" if task == "multiclass" else "")
            + f". Received: values in [{low:g}, {high:g}]")
