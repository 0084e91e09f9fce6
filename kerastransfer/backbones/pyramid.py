"""Feature pyramids: a backbone's feature maps at strides 2/4/8/16/32.

A dense task (segmentation, detection) reads a backbone at several depths: the
feature map at stride `s` has `1/s` of the input's height and width. Each Keras
Applications spec records, in `BackboneSpec.pyramid`, the layer giving each
stride: `((stride, layer), ...)` in increasing stride, where `layer` is a layer
name, or an index into `model.layers` for families whose layers have
session-dependent generic names (InceptionV3, InceptionResNetV2: `conv2d_93`).
Stride 2 is absent where the architecture has no stride-2 map (ConvNeXt's stem
is a stride-4 patchify convolution).

The recorded layer of a level is the last layer at that resolution through which
the whole graph passes (no branch skips it), e.g. ResNet's `conv3_block4_out`,
InceptionV3's `mixed2`. Families with valid padding (Inception, Xception) give
slightly smaller maps than `ceil(size / stride)` (e.g. 35 instead of 38 at
stride 8 for 299-pixel input); decoders resize to each level's actual size.

`pyramid_model(...)` turns a backbone into a multi-output `keras.Model` (the
same layer objects: weights are shared with the backbone it cuts); the
segmentation decoder uses it, and a detection neck (strides 8-32) can too.
TF-Hub backbones give a pooled vector (or one opaque map) and have no pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kerastransfer.errors import InputShapeError

if TYPE_CHECKING:  # keras is imported lazily (the registry is read by the CLI).
    import keras

__all__ = ["PYRAMID_STRIDES", "KERAS_PYRAMIDS", "pyramid_layers", "pyramid_model",
           "pyramid_strides"]

PYRAMID_STRIDES = (2, 4, 8, 16, 32)

# Recorded by building each Keras Applications model at 128x128 (weights=None):
# a level's layer is the last one at that resolution that the whole graph passes
# through (NASNet: the stage's last cell output, as its cells also read the cell
# before). Integers index `model.layers` (where names are generic and depend on
# the session, e.g. `conv2d_9`); -1 is the model's last layer.
KERAS_PYRAMIDS: dict[str, tuple[tuple[int, str | int], ...]] = {
    'ConvNeXtBase': (
        (4, 'convnext_base_stage_0_block_2_identity'),
        (8, 'convnext_base_stage_1_block_2_identity'),
        (16, 'convnext_base_stage_2_block_26_identity'),
        (32, -1)),
    'ConvNeXtLarge': (
        (4, 'convnext_large_stage_0_block_2_identity'),
        (8, 'convnext_large_stage_1_block_2_identity'),
        (16, 'convnext_large_stage_2_block_26_identity'),
        (32, -1)),
    'ConvNeXtSmall': (
        (4, 'convnext_small_stage_0_block_2_identity'),
        (8, 'convnext_small_stage_1_block_2_identity'),
        (16, 'convnext_small_stage_2_block_26_identity'),
        (32, -1)),
    'ConvNeXtTiny': (
        (4, 'convnext_tiny_stage_0_block_2_identity'),
        (8, 'convnext_tiny_stage_1_block_2_identity'),
        (16, 'convnext_tiny_stage_2_block_8_identity'),
        (32, -1)),
    'ConvNeXtXLarge': (
        (4, 'convnext_xlarge_stage_0_block_2_identity'),
        (8, 'convnext_xlarge_stage_1_block_2_identity'),
        (16, 'convnext_xlarge_stage_2_block_26_identity'),
        (32, -1)),
    'DenseNet121': (
        (2, 'conv1_relu'),
        (4, 'pool2_conv'),
        (8, 'pool3_conv'),
        (16, 'pool4_conv'),
        (32, 'relu')),
    'DenseNet169': (
        (2, 'conv1_relu'),
        (4, 'pool2_conv'),
        (8, 'pool3_conv'),
        (16, 'pool4_conv'),
        (32, 'relu')),
    'DenseNet201': (
        (2, 'conv1_relu'),
        (4, 'pool2_conv'),
        (8, 'pool3_conv'),
        (16, 'pool4_conv'),
        (32, 'relu')),
    'EfficientNetB0': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB1': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB2': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB3': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB4': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB5': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB6': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetB7': (
        (2, 'block2a_expand_activation'),
        (4, 'block3a_expand_activation'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2B0': (
        (2, 'block1a_project_activation'),
        (4, 'block2b_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2B1': (
        (2, 'block1b_add'),
        (4, 'block2c_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2B2': (
        (2, 'block1b_add'),
        (4, 'block2c_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2B3': (
        (2, 'block1b_add'),
        (4, 'block2c_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2L': (
        (2, 'block1d_add'),
        (4, 'block2g_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2M': (
        (2, 'block1c_add'),
        (4, 'block2e_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'EfficientNetV2S': (
        (2, 'block1b_add'),
        (4, 'block2d_add'),
        (8, 'block4a_expand_activation'),
        (16, 'block6a_expand_activation'),
        (32, 'top_activation')),
    'InceptionResNetV2': (
        (2, 9),
        (4, 16),
        (8, 'block35_10_ac'),
        (16, 'block17_20_ac'),
        (32, 'conv_7b_ac')),
    'InceptionV3': ((2, 9), (4, 16), (8, 'mixed2'), (16, 'mixed7'), (32, 'mixed10')),
    'MobileNet': (
        (2, 'conv_pw_1_relu'),
        (4, 'conv_pw_3_relu'),
        (8, 'conv_pw_5_relu'),
        (16, 'conv_pw_11_relu'),
        (32, 'conv_pw_13_relu')),
    'MobileNetV2': (
        (2, 'block_1_expand_relu'),
        (4, 'block_3_expand_relu'),
        (8, 'block_6_expand_relu'),
        (16, 'block_13_expand_relu'),
        (32, 'out_relu')),
    'MobileNetV3Large': ((2, 13), (4, 31), (8, 76), (16, 141), (32, -1)),
    'MobileNetV3Small': ((2, 4), (4, 19), (8, 37), (16, 111), (32, -1)),
    'NASNetLarge': (
        (2, 'stem_bn1'),
        (4, 'reduction_concat_stem_1'),
        (8, 'normal_concat_5'),
        (16, 'normal_concat_12'),
        (32, -1)),
    'NASNetMobile': (
        (2, 'stem_bn1'),
        (4, 'reduction_concat_stem_1'),
        (8, 'normal_concat_3'),
        (16, 'normal_concat_8'),
        (32, -1)),
    'ResNet101': (
        (2, 'conv1_relu'),
        (4, 'conv2_block3_out'),
        (8, 'conv3_block4_out'),
        (16, 'conv4_block23_out'),
        (32, 'conv5_block3_out')),
    'ResNet101V2': (
        (2, 'conv1_conv'),
        (4, 'conv2_block2_out'),
        (8, 'conv3_block3_out'),
        (16, 'conv4_block22_out'),
        (32, 'post_relu')),
    'ResNet152': (
        (2, 'conv1_relu'),
        (4, 'conv2_block3_out'),
        (8, 'conv3_block8_out'),
        (16, 'conv4_block36_out'),
        (32, 'conv5_block3_out')),
    'ResNet152V2': (
        (2, 'conv1_conv'),
        (4, 'conv2_block2_out'),
        (8, 'conv3_block7_out'),
        (16, 'conv4_block35_out'),
        (32, 'post_relu')),
    'ResNet50': (
        (2, 'conv1_relu'),
        (4, 'conv2_block3_out'),
        (8, 'conv3_block4_out'),
        (16, 'conv4_block6_out'),
        (32, 'conv5_block3_out')),
    'ResNet50V2': (
        (2, 'conv1_conv'),
        (4, 'conv2_block2_out'),
        (8, 'conv3_block3_out'),
        (16, 'conv4_block5_out'),
        (32, 'post_relu')),
    'VGG16': (
        (2, 'block2_conv2'),
        (4, 'block3_conv3'),
        (8, 'block4_conv3'),
        (16, 'block5_conv3'),
        (32, 'block5_pool')),
    'VGG19': (
        (2, 'block2_conv2'),
        (4, 'block3_conv4'),
        (8, 'block4_conv4'),
        (16, 'block5_conv4'),
        (32, 'block5_pool')),
    'Xception': (
        (2, 'block1_conv2_act'),
        (4, 15),
        (8, 25),
        (16, 115),
        (32, 'block14_sepconv2_act')),
}


def _no_pyramid_error(name: str, why: str) -> InputShapeError:
    return InputShapeError(
        f"Backbone {name!r} has no feature pyramid ({why}), so it cannot be the "
        "encoder of a segmentation (or other dense) model. Choose a Keras "
        "Applications backbone (`kerastransfer backbones`), or pass a "
        "keras.Model with one output per stride (shallowest first). "
        f"Received: backbone={name!r}"
    )


def pyramid_layers(spec: Any) -> dict[int, str | int]:
    """The recorded pyramid of a `BackboneSpec`: stride -> layer name or index.

    Args:
        spec: a `BackboneSpec`.

    Returns:
        A dict in increasing stride.

    Raises:
        InputShapeError: the backbone has no recorded pyramid (TF-Hub and user
            backbones without one).
    """
    pyramid = getattr(spec, "pyramid", None)
    if not pyramid:
        why = ("TF-Hub models give one pooled vector or an opaque output"
               if getattr(spec, "source", None) == "tfhub"
               else "none is recorded in its registry entry")
        raise _no_pyramid_error(spec.name, why)
    return {int(stride): layer for stride, layer in pyramid}


def pyramid_model(
    backbone: Any,
    input_shape: Sequence[int | None] | None = None,
    strides: Sequence[int] | None = None,
    *,
    weights: str | None = None,
    spec: Any = None,
) -> keras.Model:
    """A multi-output model of a backbone's feature maps, shallowest first.

    Args:
        backbone: a registry name, a `BackboneSpec`, or a built `keras.Model`
            (then `spec` names its pyramid; a model that already has several
            4D outputs is taken as a pyramid and returned as is).
        input_shape: `(height, width, channels)` for a name or spec. Defaults
            to the backbone's default size.
        strides: which strides to keep (e.g. `(8, 16, 32)` for a detection
            neck). Defaults to `None` (every recorded stride).
        weights: `"imagenet"`, `None` or a weights file, for a name or spec.
            Defaults to `None`.
        spec: the `BackboneSpec` of a `keras.Model` backbone. Defaults to
            `None`.

    Returns:
        A `keras.Model` from the backbone's input to one feature map per stride
        (sharing the backbone's layers and weights).

    Raises:
        InputShapeError: no pyramid is known for the backbone, or a requested
            stride is not in it.

    Example:

    >>> model = pyramid_model("resnet50", (64, 64, 3),
    ...                       strides=(8, 16, 32))  # doctest: +SKIP
    >>> [tuple(o.shape[1:3]) for o in model.outputs]  # doctest: +SKIP
    [(8, 8), (4, 4), (2, 2)]
    """
    import keras

    from kerastransfer.backbones.adapt import layer_output
    from kerastransfer.backbones.registry import BackboneSpec, get_backbone

    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    if isinstance(backbone, BackboneSpec):
        spec = backbone
        layers = pyramid_layers(spec)  # before building: fail fast
        backbone = spec.build(spec.resolve_input_shape(input_shape), weights)
    elif isinstance(backbone, keras.Model):
        if len(backbone.outputs) > 1:
            if strides is not None and len(strides) != len(backbone.outputs):
                raise InputShapeError(
                    f"The multi-output backbone has {len(backbone.outputs)} levels; "
                    "strides can only name them, not select some. Cut the model "
                    f"yourself. Received: strides={tuple(strides)}")
            return backbone
        if spec is None:
            raise _no_pyramid_error(
                backbone.name, "a single-output keras.Model; pass spec= or a "
                "multi-output model")
        layers = pyramid_layers(spec)
    else:
        raise TypeError(
            "backbone must be a registry name, a BackboneSpec or a keras.Model. "
            f"Received: backbone={backbone!r}")
    if strides is not None:
        missing = sorted(set(int(s) for s in strides) - set(layers))
        if missing:
            raise InputShapeError(
                f"Backbone {spec.name!r} has feature maps at strides "
                f"{sorted(layers)} only. Choose among them. "
                f"Received: strides={tuple(strides)}")
        layers = {s: layers[s] for s in sorted(int(s) for s in strides)}
    # An adapted backbone (C != 3 channels) shares the RGB model's layers in a
    # new graph: `layer_output` finds each level there.
    outputs = [layer_output(backbone, ref) for ref in layers.values()]
    return keras.Model(backbone.input, outputs, name=f"{backbone.name}_pyramid")


def pyramid_strides(model: keras.Model) -> list[int]:
    """The stride of each output of a pyramid model, from its static shapes
    (rounded to the nearest power of two: valid padding loses a few pixels)."""
    import math

    height = model.input_shape[1]
    if height is None:
        raise InputShapeError(
            "The pyramid's strides are read from a fixed input size. Build it "
            f"with input_shape=(height, width, 3). Received: input_shape="
            f"{model.input_shape[1:]}")
    out = []
    for shape in (o.shape for o in model.outputs):
        out.append(2 ** max(0, round(math.log2(height / max(1, shape[1])))))
    return out
