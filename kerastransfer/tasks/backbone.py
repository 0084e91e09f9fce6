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


def resolve_backbone(
    backbone: str | BackboneSpec | keras.Model,
    *,
    weights: str | None,
    input_shape: Sequence[int | None] | None,
) -> BackboneParts:
    """Turns a registry name, a `BackboneSpec` or a `keras.Model` into a backbone.

    Args:
        backbone: what the user passed as `backbone`.
        weights: `"imagenet"`, `None` or a weights file path (ignored for a
            `keras.Model`, which is taken as pretrained).
        input_shape: the requested input shape, or `None` for the default.

    Returns:
        A `BackboneParts`.

    Raises:
        TypeError: `backbone` is none of the accepted types.
        InputShapeError: the input shape does not fit the backbone.
    """
    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    if isinstance(backbone, BackboneSpec):
        shape = backbone.resolve_input_shape(input_shape)
        return BackboneParts(
            model=backbone.build(shape, weights), spec=backbone, name=backbone.name,
            pretrained=weights is not None, input_shape=tuple(shape),
            input_dtype=backbone.input_dtype)
    if isinstance(backbone, keras.Model):
        dtype = _model_input_dtype(backbone)
        shape = () if dtype == "string" else _model_input_shape(backbone, input_shape)
        return BackboneParts(model=backbone, spec=None, name=backbone.name,
                             pretrained=True, input_shape=tuple(shape),
                             input_dtype=dtype)
    raise TypeError(
        "backbone must be a registry name, a BackboneSpec or a keras.Model. "
        f"Received: backbone={backbone!r}"
    )


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
