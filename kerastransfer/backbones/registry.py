"""The backbone registry: a name for every backbone, and what kerastransfer knows
about it (preprocessing, input sizes, feature dimension, unfreezing blocks).

Like timm's registry: `list_backbones()`, `get_backbone(name)` and
`register_backbone(name, ...)`. Names are snake_case (`"mobilenet_v3_small"`);
Keras class names (`"MobileNetV3Small"`) and `"tfhub:<handle>"` are accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kerastransfer.backbones.spec import BackboneSpec, BlockRule
from kerastransfer.errors import UnknownBackboneError, closest_names

if TYPE_CHECKING:  # keras is imported lazily: the registry is read by the CLI too.
    import keras

__all__ = [
    "BackboneSpec",
    "BlockRule",
    "list_backbones",
    "get_backbone",
    "register_backbone",
    "unregister_backbone",
]

HUB_PREFIX = "tfhub:"

_REGISTRY: dict[str, BackboneSpec] = {}
_ALIASES: dict[str, str] = {}
_BUILTINS_LOADED = False


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from kerastransfer.backbones import keras_apps

        for spec in keras_apps.keras_application_specs():
            _add(spec, overwrite=False)
        from kerastransfer.audio.backbone import spectrogram_cnn_spec

        _add(spectrogram_cnn_spec(), overwrite=False)


def _add(spec: BackboneSpec, overwrite: bool) -> None:
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A backbone named {spec.name!r} is already registered. Pass "
            f"overwrite=True to replace it. Received: name={spec.name!r}"
        )
    _REGISTRY[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[_key(alias)] = spec.name


def list_backbones(source: str | None = None) -> list[str]:
    """Returns the registered backbone names, sorted.

    Args:
        source: only names from `"keras"` or `"user"`. Defaults to `None` (all).

    Example:

    >>> "resnet50" in list_backbones()
    True
    """
    _ensure_builtins()
    return sorted(n for n, s in _REGISTRY.items() if source in (None, s.source))


def get_backbone(name: str) -> BackboneSpec:
    """Returns the `BackboneSpec` registered under `name`.

    Accepts the snake_case name, the Keras class name (`"ResNet50V2"`), any spelling
    that differs only in case or punctuation, and `"tfhub:<handle>"`.

    Raises:
        UnknownBackboneError: (a `ValueError`) listing the closest valid names.

    Example:

    >>> get_backbone("MobileNetV3Small").name
    'mobilenet_v3_small'
    """
    if not isinstance(name, str):
        raise TypeError(
            f"A backbone name must be a string. Received: name={name!r}"
        )
    if name.startswith(HUB_PREFIX):
        from kerastransfer.backbones import tfhub

        return tfhub.hub_backbone_spec(name[len(HUB_PREFIX):])
    _ensure_builtins()
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        suggestions = closest_names(name, list(_REGISTRY) + [
            a for s in _REGISTRY.values() for a in s.aliases
        ])
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        raise UnknownBackboneError(
            f"Unknown backbone.{hint} See kerastransfer.list_backbones() (or "
            f"`kerastransfer backbones`) for all names. Received: name={name!r}"
        )
    return _REGISTRY[canonical]


def register_backbone(
    name: str,
    model: keras.Model | Callable[..., keras.Model],
    *,
    preprocessing: str = "none",
    default_size: int | None = None,
    min_size: int = 32,
    feature_dim: int | None = None,
    blocks: BlockRule | None = None,
    channels: int = 3,
    aliases: Sequence[str] = (),
    family: str = "user",
    pyramid: Sequence[tuple[int, str]] | None = None,
    overwrite: bool = False,
) -> BackboneSpec:
    """Registers a user's own backbone under `name`.

    Args:
        name: the registry name.
        model: a `keras.Model`, or a callable `model(input_shape, weights) ->
            keras.Model`. A model is copied for each `TransferModel`: with
            `weights="imagenet"` the copy keeps the registered model's own
            (pretrained) weights, with `weights=None` it is freshly initialized,
            with a path it loads that weights file.
        preprocessing: the `ImagePreprocessing` mode for RGB [0, 255] input.
            Defaults to `"none"`.
        default_size: default input height/width. Defaults to the model's own input
            size, if it has one.
        min_size: smallest accepted height/width. Defaults to `32`.
        feature_dim: output channels. Defaults to the model's output's last axis.
        blocks: a `BlockRule` for unfreezing by block. Defaults to `None`.
        channels: input channels. Defaults to `3`.
        aliases: other accepted names. Defaults to `()`.
        family: a family label. Defaults to `"user"`.
        pyramid: the layers giving the backbone's feature maps by stride,
            `((stride, layer name), ...)`, shallowest first, so it can be the
            encoder of a `SegmentationModel` or a `DetectionModel` (see
            `kerastransfer/backbones/pyramid.py`). Defaults to `None` (no
            pyramid: classification only).
        overwrite: replace an existing registration. Defaults to `False`.

    Returns:
        The registered `BackboneSpec`.

    Example:

    >>> import keras
    >>> inputs = keras.Input((32, 32, 3))
    >>> net = keras.Model(inputs, keras.layers.Conv2D(8, 3)(inputs))
    >>> spec = register_backbone("tiny_net", net, overwrite=True)
    >>> spec.feature_dim
    8
    """
    import keras

    fields = dict(family=family, source="user", aliases=aliases,
                  preprocessing=preprocessing, min_size=min_size, blocks=blocks,
                  pyramid=pyramid)
    if isinstance(model, keras.Model):
        source_model = model
        shape = tuple(source_model.input_shape[1:])
        if default_size is None and shape and shape[0] is not None:
            default_size = int(shape[0])
        if feature_dim is None:
            feature_dim = source_model.output_shape[-1]
        channels = shape[-1] if shape and shape[-1] is not None else channels

        def build(input_shape, pretrained):
            # clone_model re-initializes: weights=None means "from scratch";
            # "imagenet" means "the registered model's own (pretrained) weights".
            copy = keras.models.clone_model(source_model)
            if pretrained:
                copy.set_weights(source_model.get_weights())
            return copy

        fields["build"] = build
    elif callable(model):
        fields["builder"] = model
    else:
        raise TypeError(
            "register_backbone() needs a keras.Model or a callable "
            f"(input_shape, weights) -> keras.Model. Received: model={model!r}"
        )
    spec = BackboneSpec.create(name, default_size=default_size,
                               feature_dim=feature_dim, channels=channels, **fields)
    _ensure_builtins()
    _add(spec, overwrite=overwrite)
    return spec


def unregister_backbone(name: str) -> None:
    """Removes a user-registered backbone (built-in ones cannot be removed)."""
    spec = get_backbone(name)
    if spec.source != "user":
        raise ValueError(
            f"Only user-registered backbones can be removed. Received: name={name!r}"
        )
    del _REGISTRY[spec.name]
    for alias in [a for a, n in _ALIASES.items() if n == spec.name]:
        del _ALIASES[alias]
