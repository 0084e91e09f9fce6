"""Every `keras.applications` constructor as a registry entry.

Each entry records the family's preprocessing (so `TransferModel` can take RGB
images in [0, 255]), its default and minimum input sizes, its feature dimension,
its natural unfreezing blocks and its feature pyramid (`pyramid.py`). The models
are built with `include_top=False` and `pooling=None`: the head pools.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence

from kerastransfer.backbones.pyramid import KERAS_PYRAMIDS
from kerastransfer.backbones.spec import BackboneSpec, BlockRule, load_weights_file
from kerastransfer.errors import WeightsError

__all__ = ["keras_application_specs", "load_weights_file", "snake_name"]

# Blocks per family; see BlockRule for how unmatched layer names are attached.
_RESNET_BLOCKS = BlockRule((r"^(conv\d)_", r"^(post)_"))
_DENSENET_BLOCKS = BlockRule((r"^(conv\d)_", r"^(bn|relu)$"))
_EFFICIENTNET_BLOCKS = BlockRule((r"^(stem)_", r"^(block\d)", r"^(top)_"))
_MOBILENET_BLOCKS = BlockRule((r"^conv_(?:dw|pw|pad)_(\d+)",))
_MOBILENET_V2_BLOCKS = BlockRule(
    (r"^(block_\d+)_", r"^expanded_conv_(\d+)", r"^(expanded_conv)_", r"^(Conv_1)$")
)
_MOBILENET_V3_BLOCKS = BlockRule(
    (r"^(expanded_conv_\d+)_", r"^(expanded_conv)_", r"^(conv_1)")
)
_VGG_BLOCKS = BlockRule((r"^(block\d+)_",))
_INCEPTION_V3_BLOCKS = BlockRule((r"^(mixed\d+)$",), attach="next")
_INCEPTION_RESNET_V2_BLOCKS = BlockRule(
    (r"^(mixed_5b|mixed_6a|mixed_7a|conv_7b_ac)$",), attach="next"
)
_NASNET_BLOCKS = BlockRule(
    (r"^(normal_concat_\d+|reduction_concat_\w+)$",), attach="next"
)
_CONVNEXT_BLOCKS = BlockRule((r"_(stage_\d)_", r"^(layer_normalization)"))

# (keras name, module, family, preprocessing mode, default size, min size,
#  feature dim, blocks)
_CATALOG = [
    ("MobileNet", "mobilenet", "mobilenet", "tf", 224, 32, 1024, _MOBILENET_BLOCKS),
    ("MobileNetV2", "mobilenet_v2", "mobilenet_v2", "tf", 224, 32, 1280,
     _MOBILENET_V2_BLOCKS),
    ("MobileNetV3Small", "mobilenet_v3", "mobilenet_v3", "none", 224, 32, 576,
     _MOBILENET_V3_BLOCKS),
    ("MobileNetV3Large", "mobilenet_v3", "mobilenet_v3", "none", 224, 32, 960,
     _MOBILENET_V3_BLOCKS),
    *[
        (f"EfficientNetB{i}", "efficientnet", "efficientnet", "none", size, 32, dim,
         _EFFICIENTNET_BLOCKS)
        for i, (size, dim) in enumerate([
            (224, 1280), (240, 1280), (260, 1408), (300, 1536),
            (380, 1792), (456, 2048), (528, 2304), (600, 2560),
        ])
    ],
    *[
        (f"EfficientNetV2{v}", "efficientnet_v2", "efficientnet_v2", "none", size, 32,
         dim, _EFFICIENTNET_BLOCKS)
        for v, size, dim in [
            ("B0", 224, 1280), ("B1", 240, 1280), ("B2", 260, 1408),
            ("B3", 300, 1536), ("S", 384, 1280), ("M", 480, 1280), ("L", 480, 1280),
        ]
    ],
    *[
        (f"ResNet{d}", "resnet", "resnet", "caffe", 224, 32, 2048, _RESNET_BLOCKS)
        for d in (50, 101, 152)
    ],
    *[
        (f"ResNet{d}V2", "resnet_v2", "resnet_v2", "tf", 224, 32, 2048, _RESNET_BLOCKS)
        for d in (50, 101, 152)
    ],
    *[
        (f"DenseNet{d}", "densenet", "densenet", "torch", 224, 32, dim,
         _DENSENET_BLOCKS)
        for d, dim in [(121, 1024), (169, 1664), (201, 1920)]
    ],
    ("InceptionV3", "inception_v3", "inception_v3", "tf", 299, 75, 2048,
     _INCEPTION_V3_BLOCKS),
    ("InceptionResNetV2", "inception_resnet_v2", "inception_resnet_v2", "tf", 299, 75,
     1536, _INCEPTION_RESNET_V2_BLOCKS),
    ("Xception", "xception", "xception", "tf", 299, 71, 2048, _VGG_BLOCKS),
    ("VGG16", "vgg16", "vgg", "caffe", 224, 32, 512, _VGG_BLOCKS),
    ("VGG19", "vgg19", "vgg", "caffe", 224, 32, 512, _VGG_BLOCKS),
    ("NASNetMobile", "nasnet", "nasnet", "tf", 224, 32, 1056, _NASNET_BLOCKS),
    ("NASNetLarge", "nasnet", "nasnet", "tf", 331, 32, 4032, _NASNET_BLOCKS),
    *[
        (f"ConvNeXt{s}", "convnext", "convnext", "none", 224, 32, dim, _CONVNEXT_BLOCKS)
        for s, dim in [("Tiny", 768), ("Small", 768), ("Base", 1024),
                       ("Large", 1536), ("XLarge", 2048)]
    ],
]

# Grad-CAM's target: the last feature map before spatial pooling. The backbone
# output (None) is that map for every family but VGG, which ends in a max pool.
_GRADCAM_LAYERS = {"VGG16": "block5_conv3", "VGG19": "block5_conv4"}

_SPECIAL_NAMES = {
    "NASNetMobile": "nasnet_mobile",
    "NASNetLarge": "nasnet_large",
    "InceptionResNetV2": "inception_resnet_v2",
    "InceptionV3": "inception_v3",
}


def snake_name(keras_name: str) -> str:
    """`"MobileNetV3Small"` -> `"mobilenet_v3_small"`, `"ResNet50V2"` ->
    `"resnet50_v2"`, `"EfficientNetV2B0"` -> `"efficientnet_v2_b0"`."""
    if keras_name in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[keras_name]
    import re

    name = keras_name.replace("MobileNet", "mobilenet_").replace(
        "EfficientNet", "efficientnet_"
    ).replace("ConvNeXt", "convnext_").replace("DenseNet", "densenet")
    name = name.replace("ResNet", "resnet").replace("VGG", "vgg")
    name = re.sub(r"V(\d)", r"v\1_", name)
    name = re.sub(r"_+", "_", name).lower().strip("_")
    # "efficientnet_b0" stays; "resnet50v2_" -> "resnet50_v2"
    name = re.sub(r"(\d)v(\d)", r"\1_v\2", name)
    return name


def _build(keras_name: str, name: str):
    """`build(input_shape, pretrained)` for one `keras.applications` constructor."""

    def build(input_shape: Sequence[int | None], pretrained: bool):
        import keras

        # Looked up at build time (tests replace it to simulate a failed download).
        constructor = getattr(keras.applications, keras_name)
        kwargs = dict(include_top=False, pooling=None, input_shape=tuple(input_shape))
        if not pretrained:
            return constructor(weights=None, **kwargs)
        try:
            return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # noqa: BLE001 -- re-raised with advice below
            if not _is_download_failure(error):
                raise
            raise WeightsError(
                f"Could not download the ImageNet weights of {name!r} "
                f"({type(error).__name__}: {error}). This machine seems to have "
                "no network access. Alternatives: copy Keras's weights file "
                "(the `*_notop.h5` one) into ~/.keras/models on this machine, "
                "pass weights='/path/to/weights.h5' (a weights file), or "
                "weights=None to train from scratch. "
                f"Received: weights='imagenet'"
            ) from error

    return build


def _is_download_failure(error: BaseException) -> bool:
    if isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError)):
        return True
    text = str(error).lower()
    return "fetch failure" in text or "urlopen" in text or "name resolution" in text


def keras_application_specs() -> list[BackboneSpec]:
    """Returns a `BackboneSpec` for every Keras Applications constructor."""
    specs = []
    for keras_name, module, family, mode, size, min_size, dim, blocks in _CATALOG:
        name = snake_name(keras_name)
        specs.append(
            BackboneSpec.create(
                name,
                build=_build(keras_name, name),
                family=family,
                source="keras",
                aliases=(keras_name,),
                preprocessing=mode,
                default_size=size,
                min_size=min_size,
                feature_dim=dim,
                blocks=blocks,
                preprocessing_inside=(mode == "none"),
                preprocess_module=f"keras.applications.{module}",
                keras_name=keras_name,
                supports_imagenet=True,
                pyramid=KERAS_PYRAMIDS[keras_name],
                gradcam_layer=_GRADCAM_LAYERS.get(keras_name),
            )
        )
    return specs
