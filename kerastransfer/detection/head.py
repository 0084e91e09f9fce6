"""The FPN neck and FCOS head of `DetectionModel`: layers, and their wiring.

Neck (Lin et al. 2017): a 1x1 lateral convolution per pyramid level to
`filters` channels, a top-down pathway (the coarser map upsampled by nearest
neighbour, or resized bilinearly where valid padding made sizes not exactly
double, and added), then a 3x3 convolution per level.

Head (Tian et al. 2019): two towers of `convs` 3x3 conv + GroupNorm + ReLU
blocks, shared by every level (weights shared, as in FCOS; GroupNorm because
its statistics are per image, so one head serves levels of different
statistics at any batch size, and it doubled held-out mAP@.5 on the digit
canvases at equal epochs: docs/design.md, fact 22), one for classification and
one for boxes; then per location:
`num_classes` class logits (bias initialized to the prior 0.01, RetinaNet's
trick against the flood of background in the first steps), 4 distances and
one centerness logit from the box tower. `FcosBoxes` turns the distances into
xyxy boxes in input pixels: `softplus(raw) * stride` (positive, scaled per level,
smooth where ReLU would leave dead units) from each location's center. The
output of the whole model is one float32 tensor `(n, locations, num_classes + 5)`
(logits, xyxy, centerness logit), the layout `encode_targets` writes.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kerastransfer.detection.targets import grid_locations
from kerastransfer.tasks.resize import BilinearResize

__all__ = ["FcosBoxes", "head_layers", "wire_head"]

PRIOR_PROBABILITY = 0.01
GROUPS = 8  # GroupNorm groups in the towers (fewer when filters has no factor 8)


@keras.saving.register_keras_serializable(package="kerastransfer")
class FcosBoxes(keras.layers.Layer):
    """Raw distances `(n, L, 4)` -> xyxy boxes in input pixels.

    Args:
        level_shapes: `(height, width)` of each level, shallowest first.
        image_size: the model's input `(height, width)`.
    """

    def __init__(self, level_shapes, image_size, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.level_shapes = [[int(h), int(w)] for h, w in level_shapes]
        self.image_size = [int(s) for s in image_size]
        centers, strides, _ = grid_locations(self.level_shapes, self.image_size)
        self._centers = np.concatenate([centers, centers], axis=-1)[None]
        self._scale = np.stack([strides] * 4, axis=-1)[None]
        self._sign = np.asarray([[[-1.0, -1.0, 1.0, 1.0]]], "float32")

    def call(self, distances):
        scale = ops.convert_to_tensor(self._scale, "float32")
        distances = ops.softplus(ops.cast(distances, "float32")) * scale
        return (ops.convert_to_tensor(self._centers, "float32")
                + ops.convert_to_tensor(self._sign, "float32") * distances)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "level_shapes": self.level_shapes,
                "image_size": self.image_size}


def _convs(count: int, filters: int, name: str) -> list:
    groups = math.gcd(int(filters), GROUPS)
    layers = []
    for i in range(count):
        layers += [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                       name=f"{name}{i}"),
                   keras.layers.GroupNormalization(groups, name=f"{name}{i}_gn"),
                   keras.layers.Activation("relu", name=f"{name}{i}_relu")]
    return layers


def head_layers(num_levels: int, num_classes: int, filters: int,
                convs: int) -> dict[str, list]:
    """The neck's and head's layers, created once (`wire_head` wires them)."""
    layers: dict[str, list] = {}
    for i in range(num_levels):
        layers[f"lateral_{i}"] = [keras.layers.Conv2D(filters, 1,
                                                      name=f"fpn_lateral{i}")]
        layers[f"smooth_{i}"] = [keras.layers.Conv2D(filters, 3, padding="same",
                                                     name=f"fpn_output{i}")]
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    layers["class_tower"] = _convs(convs, filters, "head_class_conv")
    layers["box_tower"] = _convs(convs, filters, "head_box_conv")
    layers["class_logits"] = [keras.layers.Conv2D(
        num_classes, 3, padding="same",
        bias_initializer=keras.initializers.Constant(prior), name="head_class_logits")]
    layers["box_distances"] = [keras.layers.Conv2D(4, 3, padding="same",
                                                   name="head_box_distances")]
    layers["centerness"] = [keras.layers.Conv2D(1, 3, padding="same",
                                                name="head_centerness")]
    return layers


def _apply(group: list, x):
    for layer in group:
        x = layer(x)
    return x


def _upsample_to(x, shape):
    height, width = int(shape[0]), int(shape[1])
    if (x.shape[1] * 2, x.shape[2] * 2) == (height, width):
        return keras.layers.UpSampling2D(2)(x)  # exact nearest neighbour
    if tuple(x.shape[1:3]) == (height, width):
        return x
    return BilinearResize(height, width)(x)  # not Resizing: tasks/resize.py


def _flatten(x):
    return keras.layers.Reshape((int(x.shape[1]) * int(x.shape[2]),
                                 int(x.shape[3])))(x)


def wire_head(layers: dict[str, list], levels: list, image_size) -> tuple:
    """Wires neck and head on the pyramid `levels` (shallowest first).

    Returns:
        `(outputs, level_shapes)`: the `(n, L, num_classes + 5)` float32 output
        and each level's `(height, width)`.
    """
    laterals = [_apply(layers[f"lateral_{i}"], level)
                for i, level in enumerate(levels)]
    merged = [laterals[-1]]
    for lateral in laterals[-2::-1]:
        top = _upsample_to(merged[0], lateral.shape[1:3])
        merged.insert(0, keras.layers.Add()([lateral, top]))
    classes, distances, centerness = [], [], []
    for i, level in enumerate(merged):
        feature = _apply(layers[f"smooth_{i}"], level)
        class_feature = _apply(layers["class_tower"], feature)
        box_feature = _apply(layers["box_tower"], feature)
        classes.append(_flatten(_apply(layers["class_logits"], class_feature)))
        distances.append(_flatten(_apply(layers["box_distances"], box_feature)))
        centerness.append(_flatten(_apply(layers["centerness"], box_feature)))
    level_shapes = [(int(m.shape[1]), int(m.shape[2])) for m in merged]

    def joined(parts):
        return keras.layers.Concatenate(axis=1)(parts) if len(parts) > 1 else parts[0]

    boxes = FcosBoxes(level_shapes, image_size)(joined(distances))
    outputs = keras.layers.Concatenate(axis=-1, dtype="float32", name="detections")(
        [joined(classes), boxes, joined(centerness)])
    return outputs, level_shapes
