"""The edge service's image requests: a raw image, multipart files or JSON.

Used by `export/service.py` for image models (classification, segmentation,
medical). Three bodies are accepted:

* one raw image: `Content-Type` `image/*`, `application/octet-stream` or
  `application/dicom` (decoded by `export.decoding.Decoder`, which bounds the
  pixels decoded at once);
* `multipart/form-data`: one or more image files (at most `Limits.max_batch`);
* `application/json`: `{"instances": [[[[r, g, b], ...]]]}`, RGB values in
  `[0, 255]`, shape `(N, H, W, C)` or `(H, W, C)`, with optional `top_k` and
  `probabilities`.

Every bad request raises a falcon HTTP error that the service answers as JSON.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
import numpy as np

from export.errors import bad_request, too_large

__all__ = ["image_request"]

_RAW_IMAGE_TYPES = ("image/", "application/octet-stream", "application/dicom")


def image_request(req: Any, content_type: str, image_shape: tuple, limits: Any,
                  decoder: Any, top_k: int, with_probabilities: bool):
    """`(images, names, top_k, with_probabilities)` of an image request.

    Args:
        req: the falcon request.
        content_type: its media type, lower case, without parameters.
        image_shape: the model's `(height, width, channels)`.
        limits: the service's `Limits`.
        decoder: the service's `Decoder`.
        top_k, with_probabilities: the query's values (a JSON body may
            override them).

    Raises:
        falcon.HTTPError: 415 for an unsupported media type, 413 for too many
            images, 400 for anything else malformed.
    """
    if content_type == "application/json":
        return _json(req, image_shape, limits, top_k, with_probabilities)
    if content_type == "multipart/form-data":
        images, names = _multipart(req, image_shape, limits, decoder)
    elif content_type.startswith(_RAW_IMAGE_TYPES):
        data = req.bounded_stream.read(limits.max_body_bytes + 1)
        images, names = np.stack([_decode(decoder, data, image_shape)]), [None]
    else:
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description="Unsupported Content-Type. Send image/* or "
            "application/octet-stream (one raw image), multipart/form-data "
            "(image files) or application/json (instances). Received: "
            f"{content_type or 'none'!r}",
        )
    return images, names, top_k, with_probabilities


def _decode(decoder: Any, data: bytes, image_shape: tuple) -> np.ndarray:
    if not data:
        raise bad_request("Empty image; send an image file")
    return decoder.decode(data, image_shape)  # (h, w, c)


def _multipart(req, image_shape, limits, decoder) -> tuple[np.ndarray, list]:
    images, names = [], []
    try:
        for part in req.get_media():
            if part.filename is None and not (part.content_type or "").startswith(
                    "image/"):
                continue  # an ordinary form field
            if len(images) >= limits.max_batch:
                raise too_large(f"Too many images; the limit is "
                                f"{limits.max_batch} per request")
            images.append(_decode(decoder, part.stream.read(limits.max_body_bytes + 1),
                                  image_shape))
            names.append(part.filename)
    except falcon.MediaMalformedError as error:
        raise bad_request(f"Malformed multipart body: {error.description or ''}"
                          .rstrip(": ")) from None
    if not images:
        raise bad_request(
            "The multipart body has no file; send images as file fields, e.g. "
            "curl -F file=@cat.jpg")
    return np.stack(images), names


def _body_top_k(value: Any, limits: Any) -> int:
    """`top_k` from a JSON body (query parameters go through falcon)."""
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 1 <= value <= limits.max_top_k):
        raise bad_request(
            f"top_k must be a whole number from 1 to {limits.max_top_k}. "
            f"Received: top_k={value!r}")
    return value


def _json(req, expected, limits, top_k, with_probabilities):
    try:
        body = json.loads(req.bounded_stream.read(limits.max_body_bytes + 1))
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Malformed JSON body") from None
    if not isinstance(body, dict) or "instances" not in body:
        raise bad_request(
            'The JSON body must be an object with "instances": a list of '
            "images of shape (H, W, 3) with values in [0, 255]")
    if "top_k" in body:
        top_k = _body_top_k(body["top_k"], limits)
    if "probabilities" in body:
        with_probabilities = bool(body["probabilities"])
    try:
        instances = np.asarray(body["instances"], dtype="float64")
    except (ValueError, TypeError):
        raise bad_request(
            '"instances" must be a rectangular nested list of numbers') from None
    if instances.ndim == len(expected):
        instances = instances[None]
    if instances.ndim != len(expected) + 1 or any(
        e is not None and e > 0 and a != e
        for a, e in zip(instances.shape[1:], expected, strict=True)
    ):
        raise bad_request(
            f'"instances" must have shape (N, {", ".join(map(str, expected))}). '
            f"Received: shape {list(instances.shape)}")
    if len(instances) == 0:
        raise bad_request(f"Send 1 to {limits.max_batch} instances. Received: 0")
    if len(instances) > limits.max_batch:
        raise too_large(f"Send 1 to {limits.max_batch} instances. "
                        f"Received: {len(instances)}")
    if not np.all(np.isfinite(instances)):
        raise bad_request('"instances" contains NaN or infinite values')
    low, high = float(instances.min()), float(instances.max())
    if low < 0 or high > 255:
        raise bad_request(
            '"instances" values must be RGB values in [0, 255]. Rescale them. '
            f"Received: min={low:g}, max={high:g}")
    return (instances.astype("float32"), [None] * len(instances), top_k,
            with_probabilities)
