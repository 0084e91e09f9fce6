"""Resolving what a task is built on: the backbone, its input, the build scope.

Every task calls `resolve_backbone` with what the user passed (a registry name, a
`BackboneSpec` or a `keras.Model`) and builds its layers inside `build_scope`
(the distribution strategy and the mixed-precision policy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

from kerastransfer.backbones.registry import BackboneSpec, get_backbone
from kerastransfer.errors import InputShapeError

__all__ = ["BackboneParts", "resolve_backbone", "build_scope", "MIXED_POLICIES"]

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def build_scope(strategy: Any = None, mixed_precision: str | None = None):
    """Builds layers under `strategy.scope()` and a mixed-precision policy."""
    if mixed_precision not in (None, *MIXED_POLICIES):
        raise ValueError(
            f"mixed_precision must be one of {MIXED_POLICIES} or None. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    previous = keras.mixed_precision.global_policy()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        if mixed_precision is not None:
            keras.mixed_precision.set_global_policy(mixed_precision)
        try:
            yield
        finally:
            keras.mixed_precision.set_global_policy(previous)


@dataclass
class BackboneParts:
    """A resolved backbone: the model, its registry spec and what it takes."""

    model: keras.Model
    spec: BackboneSpec | None
    name: str
    pretrained: bool
    input_shape: tuple
    input_dtype: str
    # The ImagePreprocessing mode folded into an adapted first convolution
    # (input channels != the backbone's; `kerastransfer/backbones/adapt.py`).
    folded_preprocessing: str | None = None


def resolve_backbone(
    backbone: str | BackboneSpec | keras.Model,
    *,
    weights: str | None,
    input_shape: Sequence[int | None] | None,
    preprocessing: str | None = None,
) -> BackboneParts:
    """Turns a registry name, a `BackboneSpec` or a `keras.Model` into a backbone.

    Args:
        backbone: what the user passed as `backbone`.
        weights: `"imagenet"`, `None` or a weights file path. For a
            `keras.Model` its own weights are used: `None` marks them as random
            (trained from scratch in one phase), any other value as pretrained.
        input_shape: the requested input shape, or `None` for the default. A
            channel count other than the backbone's (e.g. 1 for grayscale) adapts
            its first convolution (`kerastransfer.backbones.adapt`).
        preprocessing: the `ImagePreprocessing` mode in front of the backbone,
            folded into the first convolution when the channels are adapted.
            Defaults to `None` (the spec's mode, or `"none"`).

    Returns:
        A `BackboneParts`.

    Raises:
        TypeError: `backbone` is none of the accepted types.
        InputShapeError: the input shape does not fit the backbone.
    """
    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    channels = _requested_channels(input_shape)
    if isinstance(backbone, BackboneSpec):
        native = backbone.channels
        if channels is not None and channels != native and \
                backbone.input_dtype == "float32":
            shape = backbone.resolve_input_shape((*input_shape[:2], native))
            return _adapted(backbone.build(shape, weights), channels,
                            preprocessing or backbone.preprocessing,
                            spec=backbone, name=backbone.name,
                            pretrained=weights is not None)
        shape = backbone.resolve_input_shape(input_shape)
        return BackboneParts(
            model=backbone.build(shape, weights), spec=backbone, name=backbone.name,
            pretrained=weights is not None, input_shape=tuple(shape),
            input_dtype=backbone.input_dtype)
    if isinstance(backbone, keras.Model):
        dtype = _model_input_dtype(backbone)
        native = _model_channels(backbone)
        if dtype != "string" and channels is not None and native is not None and \
                channels != native:
            _model_input_shape(backbone, (*input_shape[:2], native))
            return _adapted(backbone, channels, preprocessing or "none", spec=None,
                            name=backbone.name, pretrained=weights is not None)
        shape = () if dtype == "string" else _model_input_shape(backbone, input_shape)
        return BackboneParts(model=backbone, spec=None, name=backbone.name,
                             pretrained=weights is not None, input_shape=tuple(shape),
                             input_dtype=dtype)
    raise TypeError(
        "backbone must be a registry name, a BackboneSpec or a keras.Model. "
        f"Received: backbone={backbone!r}"
    )


def _requested_channels(input_shape) -> int | None:
    if input_shape is None or len(tuple(input_shape)) != 3:
        return None
    return tuple(input_shape)[-1]


def _model_channels(model: keras.Model) -> int | None:
    try:
        return model.input_shape[-1]
    except (AttributeError, ValueError, IndexError):
        return None


def _adapted(model, channels, mode, **fields) -> BackboneParts:
    from kerastransfer.backbones.adapt import adapt_input_channels

    adapted = adapt_input_channels(model, channels, preprocessing=mode)
    return BackboneParts(model=adapted, input_shape=tuple(adapted.input_shape[1:]),
                         input_dtype="float32", folded_preprocessing=mode, **fields)


def _model_input_dtype(model: keras.Model) -> str:
    try:
        return str(keras.backend.standardize_dtype(model.inputs[0].dtype))
    except (AttributeError, IndexError, TypeError, ValueError):
        return "float32"


def _model_input_shape(model: keras.Model, input_shape) -> tuple:
    try:
        shape = tuple(model.input_shape[1:])
    except (AttributeError, ValueError) as error:
        raise InputShapeError(
            "The backbone model has no single defined input. Build it with "
            f"keras.Input(...) first. Received: backbone={model.name!r}"
        ) from error
    if input_shape is None:
        return shape
    given = tuple(input_shape)
    if len(given) != len(shape) or any(
        s is not None and g != s for g, s in zip(given, shape, strict=True)
    ):
        raise InputShapeError(
            f"input_shape does not match the backbone's input {shape}. Pass a "
            f"matching shape or rebuild the backbone. Received: input_shape={given}"
        )
    return given
