"""`TransferModel("tfhub:<handle>", ...)`: the registry spec of a TF-Hub model.

The input size and dtype are read from the SavedModel's traced functions; a hub
image model gets images scaled to [0, 1] (the TF-Hub convention), and a
string-input model (a text embedding) becomes the backbone of a text classifier.
A signature and output key can ride on the handle as a fragment
(`"<handle>#signature=serving_default&output_key=features"`).
"""

from __future__ import annotations

import threading
from typing import Any

from kerastransfer.backbones.registry import HUB_PREFIX
from kerastransfer.backbones.spec import BackboneSpec
from kerastransfer.backbones.tfhub.resolve import cache_key, load_hub_object
from kerastransfer.backbones.tfhub.signature import (
    read_metadata,
    remember_metadata,
    remembered_metadata,
)
from kerastransfer.errors import HubModelError

__all__ = ["hub_backbone_spec", "split_handle", "join_handle", "FALLBACK_SIZE",
           "HUB_IMAGE_PREPROCESSING"]

# TF-Hub image models take RGB floats in [0, 1]; TransferModel takes [0, 255].
HUB_IMAGE_PREPROCESSING = "unit"
# Image models whose functions accept any height/width get this default size.
FALLBACK_SIZE = 224

# Objects loaded to read a spec's metadata, kept for the spec's first build (so
# the SavedModel is not loaded twice).
_LOCK = threading.Lock()
_PENDING: dict[tuple, Any] = {}


def split_handle(handle: str, signature: str | None = None,
                 output_key: str | None = None) -> tuple[str, str | None, str | None]:
    """Splits `"<handle>#signature=...&output_key=..."` into its three parts.

    Raises:
        HubModelError: an unknown fragment key, or a value that contradicts the
            `signature`/`output_key` arguments.
    """
    base, sep, fragment = handle.rpartition("#")
    if not sep or "=" not in fragment:
        return handle, signature, output_key
    values = {"signature": signature, "output_key": output_key}
    for part in filter(None, fragment.split("&")):
        key, _, value = part.partition("=")
        if key not in values:
            raise HubModelError(
                "A TF-Hub handle fragment may set only 'signature' and 'output_key' "
                f"(e.g. '#signature=serving_default&output_key=features'). "
                f"Received: handle={handle!r}"
            )
        if values[key] is not None and values[key] != value:
            raise HubModelError(
                f"The handle sets {key}={value!r} but {key}={values[key]!r} was "
                f"passed too. Pass it once. Received: handle={handle!r}"
            )
        values[key] = value or None
    return base, values["signature"], values["output_key"]


def join_handle(handle: str, signature: str | None, output_key: str | None) -> str:
    """The inverse of `split_handle`."""
    parts = [f"{k}={v}" for k, v in (("signature", signature),
                                       ("output_key", output_key)) if v]
    return handle + ("#" + "&".join(parts) if parts else "")


def hub_backbone_spec(
    handle: str, *, signature: str | None = None, output_key: str | None = None
) -> BackboneSpec:
    """The `BackboneSpec` for `TransferModel("tfhub:<handle>", ...)`.

    Reads the input size (where the SavedModel declares one), the input dtype
    (images or strings) and the feature dimension from the SavedModel's traced
    functions. Image models get `preprocessing="unit"` (TF-Hub image models take
    RGB in [0, 1]); text models take a string tensor and no preprocessing.

    A signature and output key can also ride on the handle as a fragment, so a
    registry name says everything (and a saved model reloads with them):
    `"tfhub:/models/enc#signature=serving_default&output_key=features"`.

    Args:
        handle: a SavedModel directory, a `file://` path or an https URL,
            optionally followed by `#signature=...&output_key=...`.
        signature: as for `HubBackbone`. Defaults to `None`.
        output_key: as for `HubBackbone`. Defaults to `None`.

    Returns:
        A `BackboneSpec` named `"tfhub:<handle>"` whose builder returns a
        `keras.Model` wrapping one `HubBackbone` (one unfreezing block).

    Raises:
        HubModelError: the handle cannot be resolved or loaded (see `HubBackbone`).

    Example:

    >>> spec = hub_backbone_spec("/path/to/saved_model")  # doctest: +SKIP
    >>> spec.default_size  # doctest: +SKIP
    224
    """
    handle, signature, output_key = split_handle(handle, signature, output_key)
    key = (cache_key(handle), signature, output_key)
    meta = remembered_metadata(handle, signature, output_key)
    if meta is None:
        obj = load_hub_object(handle)
        meta = read_metadata(obj, handle, signature, output_key)
        remember_metadata(handle, signature, output_key, meta)
        with _LOCK:
            _PENDING[key] = obj  # the first build reuses it (no second load)
    is_text = meta.input_dtype == "string"
    default_size = meta.default_size
    if default_size is None and not is_text:
        default_size = FALLBACK_SIZE
    name = f"{HUB_PREFIX}{join_handle(handle, signature, output_key)}"

    def build(input_shape, pretrained):
        import keras

        from kerastransfer.backbones.tfhub.layer import HubBackbone

        with _LOCK:
            loaded = _PENDING.pop(key, None)
        shape = () if is_text else tuple(input_shape)
        layer = HubBackbone(
            handle, trainable=True, signature=signature, output_key=output_key,
            input_shape=shape, loaded_object=loaded, name="hub_backbone",
        )
        inputs = keras.Input(shape=shape, dtype=meta.input_dtype, name="hub_input")
        return keras.Model(inputs, layer(inputs), name="tfhub_backbone")

    return BackboneSpec.create(
        name,
        build=build,
        pretrained_only=True,  # a SavedModel cannot be re-initialized
        family="tfhub",
        source="tfhub",
        preprocessing="none" if is_text else HUB_IMAGE_PREPROCESSING,
        default_size=None if is_text else default_size,
        min_size=1,
        feature_dim=meta.output_shape[-1] if meta.output_shape else None,
        channels=meta.channels,
        supports_imagenet=True,
        input_dtype=meta.input_dtype,
    )
