"""The edge service's errors: falcon's HTTP errors, serialized as JSON.

Every answer that is not a success is {"error": {"status": int, "message": str}}:
falcon's own errors (404, 405, invalid query parameters) and the service's
(`bad_request`, `too_large`) go through `serialize_error`; any other exception
is logged and becomes a JSON 500.
"""

from __future__ import annotations

import json
import logging

import falcon

__all__ = ["serialize_error", "unexpected_error", "bad_request", "too_large"]

logger = logging.getLogger("kerastransfer.service")


def serialize_error(req, resp, exception: falcon.HTTPError) -> None:
    """Every falcon HTTP error as {"error": {"status": int, "message": str}}."""
    message = exception.description or exception.title or "Error"
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"error": {"status": exception.status_code,
                                      "message": message}})


def unexpected_error(req, resp, error, params) -> None:
    """falcon error handler for every exception: HTTP errors pass through."""
    if isinstance(error, falcon.HTTPError):
        raise error
    logger.exception("Unexpected error while answering %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(
        description=f"Internal error ({type(error).__name__}); see the logs")


def bad_request(message: str) -> falcon.HTTPBadRequest:
    """A 400 with the service's message."""
    return falcon.HTTPBadRequest(title="Bad request", description=message)


def too_large(message: str) -> falcon.HTTPContentTooLarge:
    """A 413 with the service's message."""
    return falcon.HTTPContentTooLarge(title="Payload too large", description=message)
