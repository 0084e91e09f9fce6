"""The backbone registry: a name for every backbone, and what kerastransfer knows
about it (preprocessing, input sizes, feature dimension, unfreezing blocks).

Like timm's registry: `list_backbones()`, `get_backbone(name)` and
`register_backbone(name, ...)`. Names are snake_case (`"mobilenet_v3_small"`);
Keras class names (`"MobileNetV3Small"`) and `"tfhub:<handle>"` are accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class BlockRule:
    """Groups a backbone's layers into its natural blocks (stages), in order.

    Each layer name is matched against `patterns` in turn; the first match's first
    group (or the whole match) names the layer's block. Layers no pattern matches
    (generic names such as `conv2d_12`, paddings, activations) join the block of the
    previous matched layer (`attach="previous"`, for names that *start* a block) or
    of the next one (`attach="next"`, for architectures such as InceptionV3 whose
    named layer, `mixed3`, *ends* a block).

    Args:
        patterns: regular expressions, tried in order.
        attach: `"previous"` or `"next"`. Defaults to `"previous"`.
        stem: block name for layers before the first match. Defaults to `"stem"`.
    """

    patterns: tuple[str, ...]
    attach: str = "previous"
    stem: str = "stem"

    def assign(self, layer_names: Sequence[str]) -> list[str]:
        """Returns the block name of each layer, in the same order."""
        matched: list[str | None] = []
        for name in layer_names:
            block = None
            for pattern in self.patterns:
                m = re.search(pattern, name)
                if m:
                    block = m.group(1) if m.groups() else m.group(0)
                    break
            matched.append(block)
        blocks: list[str] = []
        if self.attach == "next":
            upcoming = None
            for block in reversed(matched):
                upcoming = block if block is not None else upcoming
                blocks.append(upcoming if upcoming is not None else "top")
            return blocks[::-1]
        current = self.stem
        for block in matched:
            current = block if block is not None else current
            blocks.append(current)
        return blocks


@dataclass(frozen=True)
class BackboneSpec:
    """Everything kerastransfer knows about one backbone.

    Attributes:
        name: the registry name (snake_case).
        builder: `builder(input_shape, weights) -> keras.Model` returning a model
            that maps preprocessed images to feature maps (rank 4) or vectors.
        family: architecture family, e.g. `"resnet"`.
        preprocessing: an `ImagePreprocessing` mode applied to RGB [0, 255] input.
        default_size: the input size the backbone was trained at.
        min_size: the smallest input height/width it accepts.
        feature_dim: channels of its output features (None if unknown).
        blocks: its natural unfreezing blocks, or None.
        preprocessing_inside: True when the Keras model normalizes its own input.
        preprocess_module: the `keras.applications` module whose
            `preprocess_input` is the family's (imported only when used, so that
            listing the catalog does not start TensorFlow).
        keras_name: the `keras.applications` constructor name, if any.
        channels: input channels. Defaults to 3.
        aliases: other accepted names.
        source: `"keras"`, `"tfhub"` or `"user"`.
        supports_imagenet: whether `weights="imagenet"` means real pretrained weights.
        input_dtype: `"float32"` for images, `"string"` for text backbones.
    """

    name: str
    builder: Callable[..., Any]
    family: str
    preprocessing: str = "none"
    default_size: int | None = 224
    min_size: int = 32
    feature_dim: int | None = None
    blocks: BlockRule | None = None
    preprocessing_inside: bool = False
    preprocess_module: str | None = None
    keras_name: str | None = None
    channels: int = 3
    aliases: tuple[str, ...] = field(default_factory=tuple)
    source: str = "user"
    supports_imagenet: bool = False
    input_dtype: str = "float32"

    @property
    def preprocess_input(self) -> Callable | None:
        """The family's Keras Applications `preprocess_input`, or None."""
        if self.preprocess_module is None:
            return None
        import importlib

        return importlib.import_module(self.preprocess_module).preprocess_input

    def build(
        self,
        input_shape: Sequence[int | None] | None = None,
        weights: str | None = None,
    ) -> keras.Model:
        """Builds the backbone model.

        Args:
            input_shape: `(height, width, channels)`. Defaults to the default size.
            weights: `"imagenet"`, `None` or a path to a weights file. Defaults to
                `None`.

        Returns:
            A `keras.Model` producing features.
        """
        shape = self.resolve_input_shape(input_shape)
        return self.builder(shape, weights)

    def resolve_input_shape(
        self, input_shape: Sequence[int | None] | None
    ) -> tuple[int | None, ...]:
        """Validates `input_shape` against the backbone's limits (clear errors)."""
        from kerastransfer.errors import InputShapeError

        if self.input_dtype == "string":
            return ()
        if input_shape is None:
            if self.default_size is None:
                raise InputShapeError(
                    f"Backbone {self.name!r} has no default input size. Pass "
                    "input_shape=(height, width, channels)."
                )
            return (self.default_size, self.default_size, self.channels)
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise InputShapeError(
                "input_shape must be (height, width, channels), channels last. "
                f"Received: input_shape={input_shape}"
            )
        height, width, channels = shape
        if channels != self.channels:
            raise InputShapeError(
                f"Backbone {self.name!r} takes {self.channels}-channel images. "
                f"Convert the images (e.g. grayscale to RGB) or choose another "
                f"backbone. Received: input_shape={input_shape}"
            )
        for side in (height, width):
            if side is not None and side < self.min_size:
                raise InputShapeError(
                    f"Backbone {self.name!r} needs images of at least "
                    f"{self.min_size}x{self.min_size} pixels (default "
                    f"{self.default_size}). Resize the images or pass a larger "
                    f"input_shape. Received: input_shape={input_shape}"
                )
        return shape


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

    if isinstance(model, keras.Model):
        source_model = model
        shape = tuple(source_model.input_shape[1:])
        if default_size is None and shape and shape[0] is not None:
            default_size = int(shape[0])
        if feature_dim is None:
            feature_dim = source_model.output_shape[-1]
        channels = shape[-1] if shape and shape[-1] is not None else channels

        def builder(input_shape, weights):
            # clone_model re-initializes: weights=None means "from scratch";
            # "imagenet" means "the registered model's own (pretrained) weights".
            copy = keras.models.clone_model(source_model)
            if weights == "imagenet":
                copy.set_weights(source_model.get_weights())
            elif weights is not None:
                from kerastransfer.backbones.keras_apps import load_weights_file

                load_weights_file(copy, weights, name)
            return copy

    elif callable(model):
        builder = model
    else:
        raise TypeError(
            "register_backbone() needs a keras.Model or a callable "
            f"(input_shape, weights) -> keras.Model. Received: model={model!r}"
        )
    spec = BackboneSpec(
        name=name,
        builder=builder,
        family=family,
        preprocessing=preprocessing,
        default_size=default_size,
        min_size=min_size,
        feature_dim=feature_dim,
        blocks=blocks,
        channels=channels,
        aliases=tuple(aliases),
        source="user",
    )
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
