"""The segmentation decoders: pyramid levels -> one prediction per pixel.

Decoders (`decoder=`):

* `"unet"`: from the deepest level up, resize to the next level's size,
  concatenate the skip features, two 3x3 conv-BN-ReLU (U-Net, Ronneberger et
  al. 2015, as fastai's `unet_learner` builds it on a pretrained encoder);
* `"fpn"`: 1x1 lateral convolutions, top-down sum (Lin et al. 2017), then one
  shared 3x3 conv-BN-ReLU head applied to every level, resized to the finest
  level and summed (Panoptic FPN's semantic branch, Kirillov et al. 2019).

`decoder_layers()` creates the layers once (they are the task's head);
`decode()` wires them on a list of pyramid tensors, shallowest first, so the
same layers serve the full model and the head trained on cached features.

Levels are resized with `kerastransfer.tasks.resize.BilinearResize`, not
`keras.layers.Resizing` (see there why).
"""

from __future__ import annotations

from typing import Any

import keras

from kerastransfer.tasks.resize import BilinearResize

__all__ = ["BilinearResize", "decoder_layers", "decode", "flat"]


def _conv_bn_relu(filters: int, name: str) -> list:
    return [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"{name}_conv"),
            keras.layers.BatchNormalization(name=f"{name}_bn"),
            keras.layers.Activation("relu", name=f"{name}_relu")]


def _filters(filters: tuple, i: int) -> int:
    return filters[min(i, len(filters) - 1)]


def decoder_layers(decoder: str, num_levels: int, filters: tuple,
                    num_classes: int, task: str) -> dict[str, list]:
    """The decoder's layers, created once (`_decode` wires them)."""
    layers: dict[str, list] = {}
    if decoder == "unet":
        for i in range(num_levels):  # num_levels - 1 skips + the full resolution
            f = _filters(filters, i)
            layers[f"up_{i}"] = [*_conv_bn_relu(f, f"decoder_up{i}_a"),
                                 *_conv_bn_relu(f, f"decoder_up{i}_b")]
    else:
        width = filters[0]
        for i in range(num_levels):
            layers[f"lateral_{i}"] = [keras.layers.Conv2D(
                width, 1, name=f"decoder_lateral{i}")]
        layers["shared"] = _conv_bn_relu(_filters(filters, 1), "decoder_shared")
    layers["classifier"] = [
        keras.layers.Conv2D(num_classes, 1, name="decoder_logits"),
        keras.layers.Activation("softmax" if task == "multiclass" else "sigmoid",
                                dtype="float32", name="predictions")]
    return layers


def flat(layers: dict[str, list]) -> list:
    return [layer for group in layers.values() for layer in group]


def _apply(group: list, x):
    for layer in group:
        x = layer(x)
    return x


def _resize(x, size):
    # A fresh layer per call: it has no weights, and sizes differ per call.
    height, width = int(size[0]), int(size[1])
    if tuple(x.shape[1:3]) == (height, width):
        return x
    return BilinearResize(height, width)(x)


def decode(decoder: str, layers: dict[str, list], levels: list, size) -> Any:
    """Wires the decoder on the pyramid `levels` (shallowest first)."""
    if decoder == "unet":
        x = levels[-1]
        skips = levels[-2::-1]  # deepest skip first
        for i, skip in enumerate(skips):
            x = _resize(x, skip.shape[1:3])
            x = keras.layers.Concatenate()([x, skip])
            x = _apply(layers[f"up_{i}"], x)
        x = _resize(x, size)
        x = _apply(layers[f"up_{len(skips)}"], x)
    else:
        laterals = [_apply(layers[f"lateral_{i}"], level)
                    for i, level in enumerate(levels)]
        merged = [laterals[-1]]
        for lateral in laterals[-2::-1]:
            top = _resize(merged[-1], lateral.shape[1:3])
            merged.append(keras.layers.Add()([lateral, top]))
        finest = merged[-1].shape[1:3]
        heads = [_resize(_apply(layers["shared"], p), finest) for p in merged]
        x = keras.layers.Add()(heads) if len(heads) > 1 else heads[0]
        x = _resize(x, size)
    return _apply(layers["classifier"], x)
