"""What kerastransfer knows about one backbone (`BackboneSpec`), how its layers
group into unfreezing blocks (`BlockRule`), and the one way a spec is made
(`BackboneSpec.create`), shared by Keras Applications, TF-Hub and user models.

No TensorFlow or Keras at import time: the registry is read by the CLI too.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kerastransfer.errors import WeightsError

if TYPE_CHECKING:  # keras is imported lazily (see the module docstring).
    import keras

__all__ = ["BackboneSpec", "BlockRule", "load_weights_file", "SOURCES"]

# Where a backbone comes from.
SOURCES = ("keras", "tfhub", "user", "kerastransfer")
INPUT_DTYPES = ("float32", "string")
# `weights=` values that mean "the backbone's own pretrained weights".
PRETRAINED = "imagenet"


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
        source: `"keras"`, `"tfhub"`, `"user"` or `"kerastransfer"` (built
            into kerastransfer, e.g. the audio `spectrogram_cnn`).
        supports_imagenet: whether `weights="imagenet"` means real pretrained weights.
        input_dtype: `"float32"` for images, `"string"` for text backbones.
        pyramid: the feature pyramid, `((stride, layer), ...)` in increasing
            stride (`layer`: a name, or an index into `model.layers`), or None
            when the backbone has none (see `kerastransfer/backbones/pyramid.py`).
        gradcam_layer: the layer Grad-CAM explains (`kerastransfer.report.explain`):
            the last feature map before spatial pooling. None means the backbone's
            output, which is that map for every catalog family but VGG (whose
            output is `block5_pool`, at half the resolution).
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
    pyramid: tuple[tuple[int, str | int], ...] | None = None
    gradcam_layer: str | None = None

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

    @classmethod
    def create(
        cls,
        name: str,
        *,
        family: str,
        source: str,
        build: Callable[[tuple, bool], Any] | None = None,
        builder: Callable[..., Any] | None = None,
        pretrained_only: bool = False,
        aliases: Sequence[str] = (),
        **fields: Any,
    ) -> BackboneSpec:
        """Makes a checked `BackboneSpec`: the one constructor every source uses.

        Give either `build` (kerastransfer interprets `weights=`) or `builder`
        (a user's callable that interprets `weights=` itself).

        With `build(input_shape, pretrained) -> keras.Model`, the spec's builder
        maps `weights` in one place: `"imagenet"` builds with `pretrained=True`;
        `None` builds with `pretrained=False` (fresh weights); a path builds
        (pretrained only if `pretrained_only`, else fresh) and then loads that
        weights file with `load_weights_file`.

        Args:
            name: the registry name.
            family: the architecture family, e.g. `"resnet"`.
            source: one of `"keras"`, `"tfhub"`, `"user"`.
            build: `build(input_shape, pretrained) -> keras.Model`. Defaults to
                `None`.
            builder: `builder(input_shape, weights) -> keras.Model`, used as is.
                Defaults to `None`.
            pretrained_only: the backbone cannot be re-initialized (a TF-Hub
                SavedModel): `weights=None` raises `WeightsError`. Defaults to
                `False`.
            aliases: other accepted names. Defaults to `()`.
            **fields: the other `BackboneSpec` fields (`preprocessing`,
                `default_size`, `min_size`, `feature_dim`, `blocks`, ...).

        Returns:
            A `BackboneSpec`.

        Raises:
            ValueError: a field is out of range, or not exactly one of `build`
                and `builder` is given.
            TypeError: `name` or an alias is not a string.
        """
        if not isinstance(name, str) or not name.strip():
            raise TypeError(
                f"A backbone name must be a non-empty string. Received: name={name!r}"
            )
        if (build is None) == (builder is None):
            raise ValueError(
                "Pass exactly one of build= (input_shape, pretrained) and builder= "
                f"(input_shape, weights). Received: name={name!r}"
            )
        if source not in SOURCES:
            raise ValueError(
                f"source must be one of {SOURCES}. Received: source={source!r}"
            )
        aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        if not all(isinstance(a, str) for a in aliases):
            raise TypeError(
                f"Backbone aliases must be strings. Received: aliases={aliases!r}"
            )
        _check_fields(name, fields)
        if fields.get("pyramid") is not None:
            fields["pyramid"] = _checked_pyramid(name, fields["pyramid"])
        if build is not None:
            builder = _weights_builder(name, build, pretrained_only)
        return cls(name=name, builder=builder, family=family, source=source,
                    aliases=aliases, **fields)


def _check_fields(name: str, fields: dict) -> None:
    """Checks the size, channel and dtype fields of a spec being created."""
    for key in ("min_size", "channels"):
        value = fields.get(key, 1)
        if not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{key} must be an int >= 1. Received: name={name!r}, {key}={value!r}"
            )
    size = fields.get("default_size", 224)
    if size is not None and (not isinstance(size, int)
                             or size < fields.get("min_size", 32)):
        raise ValueError(
            "default_size must be None or an int >= min_size. Received: "
            f"name={name!r}, default_size={size!r}, "
            f"min_size={fields.get('min_size', 32)!r}"
        )
    dtype = fields.get("input_dtype", "float32")
    if dtype not in INPUT_DTYPES:
        raise ValueError(
            f"input_dtype must be one of {INPUT_DTYPES}. Received: name={name!r}, "
            f"input_dtype={dtype!r}"
        )


def _checked_pyramid(name: str, pyramid) -> tuple:
    """`pyramid` as `((stride, layer), ...)` tuples in increasing stride."""
    try:
        levels = tuple((int(stride), layer) for stride, layer in pyramid)
    except (TypeError, ValueError):
        levels = ()
    strides = [stride for stride, _ in levels]
    if (not levels or strides != sorted(set(strides)) or strides[0] < 1
            or not all(isinstance(layer, (str, int)) for _, layer in levels)):
        raise ValueError(
            "pyramid must be ((stride, layer name or index), ...) with strides "
            "increasing from 1 up, e.g. ((2, 'block1_relu'), (4, 'block2_relu')). "
            f"Received: pyramid={pyramid!r} for backbone {name!r}")
    return levels


def _weights_builder(name: str, build: Callable, pretrained_only: bool):
    """The spec's `builder(input_shape, weights)`: `weights` handled in one place."""

    def builder(input_shape, weights):
        if weights is None:
            if pretrained_only:
                raise WeightsError(
                    f"Backbone {name!r} comes with its own weights, which cannot be "
                    "re-initialized. Pass weights='imagenet' (the default: its own "
                    "weights) or a weights file saved from this backbone. "
                    f"Received: backbone={name!r}, weights=None"
                )
            return build(tuple(input_shape), False)
        if isinstance(weights, str) and weights == PRETRAINED:
            return build(tuple(input_shape), True)
        model = build(tuple(input_shape), pretrained_only)
        load_weights_file(model, weights, name)
        return model

    return builder


def load_weights_file(model, path, backbone_name: str) -> None:
    """Loads a weights file into `model` with errors that say what to do.

    Args:
        model: the `keras.Model` to load into.
        path: a `.weights.h5`, legacy `.h5` or `.keras` file.
        backbone_name: the name used in error messages.

    Raises:
        WeightsError: the file is missing, not a weights file, or does not match.
    """
    received = path
    try:
        path = os.fspath(path)
    except TypeError:
        path = None
    if not isinstance(path, str) or path in ("", "none", "None"):
        raise WeightsError(
            "weights must be 'imagenet', None, or a path to a weights file. "
            f"Received: weights={received!r}"
        )
    if not os.path.exists(path):
        raise WeightsError(
            f"Weights file not found. weights must be 'imagenet', None, or the path "
            f"of an existing weights file (.weights.h5, .h5 or .keras). "
            f"Received: weights={path!r}"
        )
    if not path.endswith((".h5", ".keras", ".hdf5")):
        raise WeightsError(
            "Unsupported weights file type. Use a .weights.h5 file (from "
            "model.save_weights), a legacy Keras .h5 file or a .keras file. "
            f"Received: weights={path!r}"
        )
    # Keras warns once per layer it cannot find in the file ("Skipping ...: the
    # layers keep their fresh weights") and may still succeed: a flood of warnings
    # before our error, or a half-loaded backbone without one. Both become one
    # WeightsError; other warnings pass through.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as error:  # noqa: BLE001 -- any failure means a bad file
            raise WeightsError(
                f"The weights file does not fit backbone {backbone_name!r} "
                f"({type(error).__name__}: {str(error)[:300]}). Check that it was "
                f"saved from the same architecture (include_top=False) and is not "
                f"corrupt. Received: weights={path!r}"
            ) from error
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
    if skipped:
        raise WeightsError(
            f"The weights file does not fit backbone {backbone_name!r}: "
            f"{len(skipped)} parts of the model are not in it and would keep random "
            f"weights (first: {skipped[0][:200]}). Check that it was saved from the "
            f"same architecture (include_top=False). Received: weights={path!r}"
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
