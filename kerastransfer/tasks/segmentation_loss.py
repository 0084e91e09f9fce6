"""`SegmentationLoss`: per-pixel cross-entropy plus soft Dice, with class weights.

Cross-entropy treats every pixel alike, so a class covering 1% of the pixels
contributes 1% of the gradient; Dice (Milletari et al., 2016) scores each
class's overlap as a whole, so rare classes count as much as the background.
The loss is `ce_weight * CE + dice_weight * (1 - mean_c Dice_c)`, per image
(Keras's `sample_weight` then weighs images). `class_weights` scale each
pixel's cross-entropy by its true class's weight (Keras's `class_weight` only
works for one label per example).

Soft Dice of class c on one image: `(2 * sum(p * t) + 1) / (sum(p) + sum(t) + 1)`
(the +1 makes a class absent from both truth and prediction score 1, not 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["SegmentationLoss"]


@keras.saving.register_keras_serializable(package="kerastransfer")
class SegmentationLoss(keras.losses.Loss):
    """Cross-entropy + soft Dice for segmentation masks.

    Args:
        num_classes: number of classes (output channels).
        task: `"multiclass"` (softmax outputs, masks of class indices
            `(n, h, w)` or `(n, h, w, 1)`) or `"multilabel"` (sigmoid outputs,
            0/1 masks `(n, h, w, classes)`). Defaults to `"multiclass"`.
        ce_weight: weight of the cross-entropy term. Defaults to `1.0`.
        dice_weight: weight of the Dice term. Defaults to `1.0`.
        class_weights: per-class weights of the cross-entropy, or `None`.
            Defaults to `None`.
        name: the loss name. Defaults to `"segmentation_loss"`.
    """

    def __init__(self, num_classes: int, task: str = "multiclass",
                 ce_weight: float = 1.0, dice_weight: float = 1.0,
                 class_weights: Sequence[float] | None = None,
                 name: str = "segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(
                "ce_weight and dice_weight must be >= 0, not both 0. Received: "
                f"ce_weight={ce_weight}, dice_weight={dice_weight}")
        self.num_classes = int(num_classes)
        self.task = task
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.class_weights = (None if class_weights is None
                              else [float(w) for w in class_weights])

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if self.task == "multilabel":
            target = ops.cast(y_true, "float32")
            pixel = ops.mean(keras.losses.binary_crossentropy(
                target[..., None], y_pred[..., None]), axis=-1)
            weight_axis = target
        else:
            labels = ops.cast(y_true, "int32")
            if len(labels.shape) == 4:
                labels = ops.squeeze(labels, axis=-1)
            target = ops.one_hot(labels, self.num_classes)
            pixel = keras.losses.sparse_categorical_crossentropy(labels, y_pred)
            weight_axis = target
        if self.class_weights is not None:
            weights = ops.convert_to_tensor(self.class_weights, "float32")
            if self.task == "multilabel":  # a pixel weighs as its heaviest label
                pixel = pixel * ops.maximum(ops.max(weight_axis * weights, axis=-1),
                                            1.0)
            else:
                pixel = pixel * ops.sum(weight_axis * weights, axis=-1)
        loss = self.ce_weight * ops.mean(pixel, axis=(1, 2))
        if self.dice_weight:
            overlap = ops.sum(y_pred * target, axis=(1, 2))
            total = ops.sum(y_pred, axis=(1, 2)) + ops.sum(target, axis=(1, 2))
            dice = (2.0 * overlap + 1.0) / (total + 1.0)
            loss = loss + self.dice_weight * (1.0 - ops.mean(dice, axis=-1))
        return loss

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "task": self.task, "ce_weight": self.ce_weight,
                "dice_weight": self.dice_weight, "class_weights": self.class_weights}
