"""`DetectionLoss`: the FCOS loss on the dense `(n, locations, classes + 5)` layout.

`y_pred` is the model's output (class logits, xyxy boxes in input pixels,
centerness logit per location); `y_true` is `encode_targets`'s array (one-hot
classes, the assigned box, the centerness target). Three terms, each
normalized as FCOS does:

* classification: Keras's `keras.losses.binary_focal_crossentropy` (sigmoid
  focal loss, Lin et al. 2017, `alpha=0.25, gamma=2` with class balancing) over
  every location and class, summed and divided by the number of positive
  locations;
* boxes: GIoU loss (Rezatofighi et al. 2019) at positive locations, weighted
  by the centerness target. Neither Keras 3.15 nor KerasHub 0.32 exports an IoU
  loss (KerasHub's detectors use smooth L1 or keep GIoU private), so it is the
  ten lines of `giou_loss` below, in `keras.ops`;
* centerness: Keras's binary cross-entropy (from logits) at positive locations.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["DetectionLoss", "giou_loss"]

_EPSILON = 1e-7


def giou_loss(true_boxes, pred_boxes):
    """`1 - GIoU` of xyxy boxes, per box (last axis of 4 reduced).

    Args:
        true_boxes: `(..., 4)` xyxy.
        pred_boxes: `(..., 4)` xyxy, same shape.

    Returns:
        A tensor of shape `(...)`, in `[0, 2]`.
    """
    tx1, ty1, tx2, ty2 = (true_boxes[..., i] for i in range(4))
    px1, py1, px2, py2 = (pred_boxes[..., i] for i in range(4))
    true_area = ops.maximum(tx2 - tx1, 0.0) * ops.maximum(ty2 - ty1, 0.0)
    pred_area = ops.maximum(px2 - px1, 0.0) * ops.maximum(py2 - py1, 0.0)
    overlap = (ops.maximum(ops.minimum(tx2, px2) - ops.maximum(tx1, px1), 0.0)
               * ops.maximum(ops.minimum(ty2, py2) - ops.maximum(ty1, py1), 0.0))
    union = true_area + pred_area - overlap
    iou = overlap / (union + _EPSILON)
    enclosing = ((ops.maximum(tx2, px2) - ops.minimum(tx1, px1))
                 * (ops.maximum(ty2, py2) - ops.minimum(ty1, py1)))
    giou = iou - (enclosing - union) / (enclosing + _EPSILON)
    return 1.0 - giou


@keras.saving.register_keras_serializable(package="kerastransfer")
class DetectionLoss(keras.losses.Loss):
    """The FCOS loss: focal classification + GIoU boxes + centerness BCE.

    Args:
        num_classes: the number of object classes.
        focal_alpha: focal loss class-balancing weight of positives.
            Defaults to `0.25`.
        focal_gamma: focal loss focusing exponent. Defaults to `2.0`.
        box_weight: weight of the GIoU term. Defaults to `1.0`.
        centerness_weight: weight of the centerness term. Defaults to `1.0`.
        name: the loss's name. Defaults to `"detection_loss"`.

    Example:

    >>> loss = DetectionLoss(num_classes=3)
    """

    def __init__(self, num_classes: int, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, box_weight: float = 1.0,
                 centerness_weight: float = 1.0, name: str = "detection_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.box_weight = float(box_weight)
        self.centerness_weight = float(centerness_weight)

    def call(self, y_true, y_pred):
        c = self.num_classes
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        classes = y_true[..., :c]
        positive = ops.cast(ops.sum(classes, axis=-1) > 0, "float32")  # (n, L)
        count = ops.maximum(ops.sum(positive), 1.0)
        # Keras averages over the classes axis; FCOS sums over it.
        focal = keras.losses.binary_focal_crossentropy(
            classes, y_pred[..., :c], apply_class_balancing=True,
            alpha=self.focal_alpha, gamma=self.focal_gamma, from_logits=True)
        class_loss = ops.sum(focal) * c / count
        centerness = y_true[..., c + 4]
        weight = centerness * positive
        box = giou_loss(y_true[..., c:c + 4], y_pred[..., c:c + 4])
        box_loss = ops.sum(box * weight) / ops.maximum(ops.sum(weight), _EPSILON)
        bce = keras.losses.binary_crossentropy(
            y_true[..., c + 4:], y_pred[..., c + 4:], from_logits=True)
        centerness_loss = ops.sum(bce * positive) / count
        return (class_loss + self.box_weight * box_loss
                + self.centerness_weight * centerness_loss)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, focal_alpha=self.focal_alpha,
                      focal_gamma=self.focal_gamma, box_weight=self.box_weight,
                      centerness_weight=self.centerness_weight)
        return config
