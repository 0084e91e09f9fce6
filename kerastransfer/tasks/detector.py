"""`DetectionModel`: an anchor-free (FCOS) object detector on a pretrained backbone.

A `DetectionModel` is a `DenseTask` (`kerastransfer/tasks/dense.py`), as
`SegmentationModel` is: the backbone is cut into a feature pyramid
(`kerastransfer.backbones.pyramid.pyramid_model`; strides 8, 16 and 32 for
catalog backbones, or the levels `strides=` names, so a small encoder read at
strides 2-4 works on tiny images), then an FPN neck and an FCOS head
(`kerastransfer/detection/head.py`). Phases, BatchNorm rules, layer-wise rates,
resume, the NaN guard and saving are the base class's.

Why FCOS (Tian et al. 2019) and not CenterNet (Zhou et al. 2019): both are
anchor-free and predict per location, but CenterNet reads one high-resolution
map (stride 4) through an upsampling decoder and learns from Gaussian heatmap
peaks whose radius depends on the box size; FCOS reads the pyramid the
backbone already has (strides 8-32, the levels a classification backbone's
pretraining shaped), assigns each object to the level matching its size, and
trains with losses Keras and the literature share with RetinaNet (sigmoid focal
loss from `keras.losses`, an IoU loss). Its outputs (class logits, a box per
location, centerness) decode with plain per-class NMS, which the numpy runtime
does the same way for Keras and ONNX (`kerastransfer/runtime/detection.py`).

Targets follow KerasHub's convention: `fit(images, targets)` with one dict per
image, `{"boxes": (k, 4) xyxy pixels of the image as given, "labels": (k,)
ints}`; they are encoded in numpy (`kerastransfer/detection/targets.py`), in
the input pipeline when augmenting (`kerastransfer.data.detection_augment`).
`predict(images)` returns the same dicts plus `"scores"`; images of another
size than the input are letterboxed first exactly as `load_detection_data`
letterboxes training images (`kerastransfer/runtime/letterbox.py`), and the
boxes come back in each image's own pixels, clipped to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerastransfer.backbones.registry import BackboneSpec
from kerastransfer.detection.head import head_layers, wire_head
from kerastransfer.detection.losses import DetectionLoss
from kerastransfer.detection.targets import encode_targets
from kerastransfer.tasks.backbone import build_scope
from kerastransfer.tasks.classes import resolve_classes
from kerastransfer.tasks.dense import DenseTask, dense_graph

__all__ = ["DetectionModel", "HEADS", "DETECTION_STRIDES"]

HEADS = ("fcos",)
DETECTION_STRIDES = (8, 16, 32)


@keras.saving.register_keras_serializable(package="kerastransfer")
class DetectionModel(DenseTask):
    """A pretrained backbone with an FPN neck and an FCOS head, fine-tuned in phases.

    Args:
        backbone: a registry name with a feature pyramid (every Keras
            Applications backbone), a `BackboneSpec` with `pyramid`, or a
            `keras.Model` with one output per level, shallowest first.
            Defaults to `"mobilenet_v2"`.
        num_classes: the number of object classes (no background class).
            Defaults to `len(class_names)`.
        weights: `"imagenet"`, `None` (random) or a weights file of the
            backbone. Defaults to `"imagenet"`.
        input_shape: `(height, width, channels)`, fixed. Defaults to the
            backbone's default size. A channel count other than the
            backbone's (1 for grayscale) adapts its first convolution, the
            preprocessing folded in (`kerastransfer/backbones/adapt.py`).
        head: `"fcos"` (the only head; see the module docstring). Defaults to
            `"fcos"`.
        class_names: class names in index order. Defaults to `["0", "1", ...]`.
        strides: the pyramid levels read (a registry backbone). Defaults to
            `(8, 16, 32)`; a multi-output `keras.Model` uses all its outputs.
        filters: channels of the neck and head. Defaults to `64`.
        head_convs: 3x3 convolutions per head tower. Defaults to `2`.
        size_ranges: per level, the `(low, high)` object sizes (largest
            location-to-side distance) it is trained on. Defaults to FCOS's
            (`8 * stride` boundaries).
        center_radius: center sampling radius in strides (`None`: the whole
            box). Defaults to `1.5`.
        focal_alpha, focal_gamma, box_weight, centerness_weight: the
            `DetectionLoss` settings. Default to `0.25, 2.0, 1.0, 1.0`.
        preprocessing: an `ImagePreprocessing` mode overriding the backbone's.
            Defaults to `None`.
        mixed_precision: `"mixed_float16"`, `"mixed_bfloat16"` or `None`.
            Defaults to `None`.
        strategy: a `tf.distribute.Strategy` (not saved). Defaults to `None`.
        name: the model's name. Defaults to `"detection_model"`.

    Raises:
        InputShapeError: the backbone has no feature pyramid, or no fixed size.
        ValueError: bad arguments.

    Example:

    >>> model = DetectionModel("mobilenet_v3_small", num_classes=3,
    ...                        weights=None, input_shape=(64, 64, 3))
    >>> model.output_shape  # 8x8 + 4x4 + 2x2 locations, 3 classes + 5
    (None, 84, 8)
    """

    KIND = "detection"
    EXPORTS = "its raw head outputs"  # decoded with NMS in numpy (runtime/detection.py)

    def __init__(
        self,
        backbone: str | BackboneSpec | keras.Model = "mobilenet_v2",
        num_classes: int | None = None,
        *,
        weights: str | None = "imagenet",
        input_shape: Sequence[int] | None = None,
        head: str = "fcos",
        class_names: Sequence[str] | None = None,
        strides: Sequence[int] | None = None,
        filters: int = 64,
        head_convs: int = 2,
        size_ranges: Sequence[Sequence[float]] | None = None,
        center_radius: float | None = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_weight: float = 1.0,
        centerness_weight: float = 1.0,
        preprocessing: str | None = None,
        mixed_precision: str | None = None,
        strategy: Any = None,
        name: str = "detection_model",
        **kwargs,
    ):
        num_classes, class_names = _check_args(num_classes, class_names, head,
                                               filters, head_convs)
        with build_scope(strategy, mixed_precision):
            graph = dense_graph(backbone, weights=weights, input_shape=input_shape,
                                preprocessing=preprocessing, strides=strides,
                                default_strides=DETECTION_STRIDES, what="detection")
            layers = head_layers(len(graph.levels), num_classes, int(filters),
                                 int(head_convs))
            outputs, level_shapes = wire_head(layers, graph.levels, graph.shape[:2])
            super().__init__(inputs=graph.inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self._init_dense(graph, head_layers=[x for g in layers.values() for x in g],
                         num_classes=num_classes, class_names=class_names,
                         task="detection", strategy=strategy,
                         mixed_precision=mixed_precision)
        self._head_layers = layers
        self.head = head
        self.filters, self.head_convs = int(filters), int(head_convs)
        self.level_shapes = level_shapes
        if size_ranges is not None and len(size_ranges) != len(graph.levels):
            raise ValueError(
                f"size_ranges needs one (low, high) per level ({len(graph.levels)}). "
                f"Received: size_ranges={size_ranges!r}")
        self.size_ranges = (None if size_ranges is None
                            else [[float(lo), float(hi)] for lo, hi in size_ranges])
        self.center_radius = None if center_radius is None else float(center_radius)
        self.loss_settings = {"focal_alpha": float(focal_alpha),
                              "focal_gamma": float(focal_gamma),
                              "box_weight": float(box_weight),
                              "centerness_weight": float(centerness_weight)}

    # --- The task contract -------------------------------------------------
    def default_loss(self):
        """`DetectionLoss`: sigmoid focal loss + GIoU + centerness BCE."""
        return DetectionLoss(self.num_classes, **self.loss_settings)

    def default_metrics(self) -> list:
        """None during training: box metrics (COCO mAP) need decoded boxes;
        see `kerastransfer.report.detection.detection_metrics`."""
        return []

    def export_contract(self) -> dict:
        """The output is `(n, locations, num_classes + 5)`: class logits, xyxy
        boxes in input pixels, centerness logit; `DetectionPredictor` decodes
        it with the same numpy code as `predict` (`runtime/detection.py`)."""
        return {**super().export_contract(), "head": self.head,
                "output_layout": "N,locations,[class logits|x1 y1 x2 y2|centerness]",
                "level_shapes": json.dumps(self.level_shapes)}

    def _checkpoint_identity(self) -> dict:
        return {**super()._checkpoint_identity(),
                "level_shapes": [list(s) for s in self.level_shapes]}

    # --- Targets, training and prediction ----------------------------------
    def encode(self, targets) -> np.ndarray:
        """Targets (one dict per image, boxes in input pixels) -> the dense
        training array `(n, locations, num_classes + 5)`."""
        return encode_targets(targets, self.level_shapes, self.image_shape[:2],
                              self.num_classes, size_ranges=self.size_ranges,
                              center_radius=self.center_radius)

    def fit(self, x=None, y=None, *, augmentation: Any = None,
            validation_data=None, **kwargs):
        """`TransferTask.fit` for images and box targets (see there for every
        other argument).

        Args:
            x: images `(n, height, width, channels)` at the model's size, RGB
                in [0, 255], or a `DetectionData` (its validation split is used
                unless `validation_data` is given).
            y: targets, one dict per image: `{"boxes": (k, 4) xyxy pixels,
                "labels": (k,) ints}` (`None` with a `DetectionData`).
            augmentation: `True` (flip, scale 0.75-1.25, crop), a dict of
                `augment_detection` arguments, or `None`. Boxes move with the
                image; applied in the input pipeline only. Defaults to `None`.
            validation_data: `(images, targets)`. Defaults to `None`.

        Returns:
            A `PhasedHistory`.

        Raises:
            ValueError: badly formed targets, boxes outside the image, class ids
                out of range, or images of another size.
        """
        from kerastransfer.detection import pipeline

        x, y, validation_data = pipeline.unpack(self, x, y, validation_data)
        split = kwargs.pop("validation_split", None)
        if split and validation_data is None:  # the last part, as Keras does
            cut = int(len(x) * (1.0 - float(split)))
            validation_data, x, y = (x[cut:], y[cut:]), x[:cut], y[:cut]
        if kwargs.get("class_weight") is not None:
            raise ValueError(
                "class_weight weighs examples by one label; detection targets "
                "have many. Use focal_alpha or sample_weight instead. Received: "
                f"class_weight={kwargs['class_weight']!r}")
        report_dir = kwargs.pop("report_dir", None)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if augmentation is None or augmentation is False:
            data, labels = x, self.encode(y)
        else:
            data, labels, extra = pipeline.augmented_sequence(
                self, x, y, augmentation, batch_size=kwargs.pop("batch_size", None),
                seed=kwargs.pop("seed", 0), shuffle=kwargs.pop("shuffle", True))
            callbacks.extend(extra)
        encoded = (None if validation_data is None
                   else (validation_data[0], self.encode(validation_data[1])))
        history = super().fit(data, labels, validation_data=encoded,
                              callbacks=callbacks, **kwargs)
        if report_dir is not None:
            pipeline.write_report(self, history, validation_data, report_dir)
        return history

    def evaluate_detections(self, images, targets, *, score_threshold: float = 0.05,
                            iou_threshold: float = 0.5, max_detections: int = 100,
                            batch_size: int = 32) -> dict:
        """COCO metrics of `predict(images)` against `targets` (pycocotools):
        `{"map", "map50", "map75", "per_class_ap"}`, as
        `kerastransfer.report.detection.detection_metrics`."""
        from kerastransfer.report.detection import detection_metrics

        predictions = self.predict(images, batch_size=batch_size,
                                   score_threshold=score_threshold,
                                   iou_threshold=iou_threshold,
                                   max_detections=max_detections)
        return detection_metrics(targets, predictions, self.class_names)

    def predict_raw(self, images, batch_size: int = 32, verbose: Any = 0
                    ) -> np.ndarray:
        """The raw head outputs `(n, locations, num_classes + 5)` (what the
        ONNX file outputs); images of another size are letterboxed first."""
        from kerastransfer.runtime.detection import prepare_images

        batch, _ = prepare_images(images, self.image_shape)
        return keras.Model.predict(self, batch, batch_size=batch_size,
                                   verbose=verbose)

    def predict(self, x, batch_size: int = 32, verbose: Any = 0, *,
                score_threshold: float = 0.05, iou_threshold: float = 0.5,
                max_detections: int = 100, **kwargs) -> list[dict]:
        """Detects objects: boxes in each input image's own pixels.

        Args:
            x: one image, a batch `(n, h, w, c)` or a list of images of any
                sizes, [0, 255]; other sizes are letterboxed into the model's
                input as in training (aspect ratio kept, gray padding) and the
                boxes mapped back to each image's pixels (clipped to it).
            batch_size: images per step. Defaults to `32`.
            verbose: as for `keras.Model.predict`. Defaults to `0`.
            score_threshold: the lowest score kept. Defaults to `0.05`.
            iou_threshold: the per-class NMS threshold. Defaults to `0.5`.
            max_detections: detections per image at most. Defaults to `100`.

        Returns:
            One dict per image: `{"boxes": float32 (k, 4) xyxy, "scores":
            float32 (k,), "labels": int32 (k,)}`, by descending score.

        Raises:
            ValueError: bad images or thresholds.
        """
        from kerastransfer.runtime.detection import (
            check_decoding_args,
            decode_detections,
            prepare_images,
        )

        check_decoding_args(score_threshold, iou_threshold, max_detections)
        batch, sizes = prepare_images(x, self.image_shape)
        raw = keras.Model.predict(self, batch, batch_size=batch_size,
                                  verbose=verbose, **kwargs)
        return decode_detections(raw, self.num_classes, self.image_shape[:2],
                                 score_threshold=score_threshold,
                                 iou_threshold=iou_threshold,
                                 max_detections=max_detections, image_sizes=sizes)

    # --- Feature caching and export: neck and head on pyramid levels ------
    def _head_outputs(self, levels: list):
        return wire_head(self._head_layers, levels, self.image_shape[:2])[0]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "head": self.head,
            "filters": self.filters,
            "head_convs": self.head_convs,
            "size_ranges": self.size_ranges,
            "center_radius": self.center_radius,
            **self.loss_settings,
        }


def _check_args(num_classes, class_names, head, filters, head_convs):
    if head not in HEADS:
        raise ValueError(
            f"head must be one of {HEADS} (anchor-free FCOS; see the "
            f"DetectionModel docstring for why not CenterNet). Received: head={head!r}")
    for arg, value, low in (("filters", filters, 1), ("head_convs", head_convs, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < low:
            raise ValueError(f"{arg} must be an int >= {low}. "
                             f"Received: {arg}={value!r}")
    return resolve_classes(num_classes, class_names, head="detection head",
                           below=" (Object classes; no background class.)")
