"""The edge service's text requests: `{"texts": [...]}` -> a list of strings.

Used by `export/service.py` when the loaded model is a text model
(`kerastransfer.runtime.TextPredictor`, ONNX metadata `kind="text"`). The body
is JSON `{"texts": ["...", ...], "top_k": 3, "probabilities": true}` (`top_k`
and `probabilities` optional, as for images). Sizes are bounded: the body by
`Limits.max_body_bytes`, the number of texts by `Limits.max_batch`, each text
by `Limits.max_text_chars` (the tokenizer truncates to the model's sequence
length anyway; the bound keeps tokenizing cheap). Every bad request is a JSON
4xx with the service's message.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from export.errors import bad_request, too_large

__all__ = ["text_request"]


def text_request(req: Any, content_type: str, limits: Any, top_k: int,
                 with_probabilities: bool) -> tuple[list[str], list, int, bool]:
    """`(texts, names, top_k, with_probabilities)` of a JSON text request.

    Raises:
        falcon.HTTPError: 415 for a body that is not JSON, 413 for too many or
            too long texts, 400 for anything else malformed.
    """
    if content_type != "application/json":
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description='This is a text model: send application/json {"texts": '
                        f'["...", ...]}}. Received: {content_type or "none"!r}')
    try:
        body = json.loads(req.bounded_stream.read(limits.max_body_bytes + 1))
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Malformed JSON body") from None
    if not isinstance(body, dict) or "texts" not in body:
        raise bad_request('The JSON body must be an object with "texts": a list of '
                          "strings")
    texts = body["texts"]
    if not isinstance(texts, list):
        raise bad_request('"texts" must be a list of strings. Wrap one text as '
                          f'["..."]. Received: {type(texts).__name__}')
    if not texts:
        raise bad_request(f"Send 1 to {limits.max_batch} texts. Received: 0")
    if len(texts) > limits.max_batch:
        raise too_large(f"Send 1 to {limits.max_batch} texts. Received: {len(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad_request(f"Every text must be a string. Received: texts[{i}] "
                              f"is {type(text).__name__}")
        if not text.strip():
            raise bad_request(f"Text {i} is empty. Drop it or fill it in.")
        if len(text) > limits.max_text_chars:
            raise too_large(f"Text {i} is too long: {len(text)} characters; the "
                            f"limit is {limits.max_text_chars}")
    if "top_k" in body:
        value = body["top_k"]
        if (isinstance(value, bool) or not isinstance(value, int)
                or not 1 <= value <= limits.max_top_k):
            raise bad_request(f"top_k must be a whole number from 1 to "
                              f"{limits.max_top_k}. Received: top_k={value!r}")
        top_k = value
    if "probabilities" in body:
        with_probabilities = bool(body["probabilities"])
    return texts, [None] * len(texts), top_k, with_probabilities
