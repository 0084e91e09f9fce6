"""Resolving TF-Hub handles to local SavedModels, and loading them.

Handles are what `hub.load` accepts: a local SavedModel directory, a `file://`
path, or an https URL (tfhub.dev / Kaggle Models). `hub.resolve`/`hub.load`
accept local directories and `file://` paths; an https handle fails at once
offline with `urllib.error.URLError`; downloads are cached under
`TFHUB_CACHE_DIR` (or `<tmp>/tfhub_modules/<sha1(handle)>`), and a filled cache
loads offline (docs/design.md, fact 5).
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
from typing import Any

from kerastransfer.errors import HubModelError

__all__ = ["CACHE_ENV", "resolve_handle", "load_hub_object", "cache_key",
           "hub_variables"]

CACHE_ENV = "TFHUB_CACHE_DIR"


def _cache_dir_text() -> str:
    value = os.environ.get(CACHE_ENV)
    if value:
        return f"{CACHE_ENV}={value!r}"
    return (f"{CACHE_ENV} is not set, so the cache is "
            f"{os.path.join(tempfile.gettempdir(), 'tfhub_modules')!r}")


def _local_path(handle: str) -> str | None:
    """The local directory a handle names, or None for a remote (URL) handle."""
    if handle.startswith("file://"):
        return handle[len("file://"):]
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", handle):
        return None
    return os.path.expanduser(handle)


def _check_saved_model_dir(path: str, handle: str) -> None:
    if not os.path.exists(path):
        raise HubModelError(
            f"The TF-Hub handle does not resolve: {path!r} does not exist. Pass an "
            "existing TF2 SavedModel directory, a file:// path or an https URL; a "
            f"model downloaded before is found through {CACHE_ENV} "
            f"({_cache_dir_text()}). Received: handle={handle!r}"
        )
    if not os.path.isdir(path):
        raise HubModelError(
            "A TF-Hub handle must name a SavedModel directory, not a file. Pass the "
            f"folder that holds saved_model.pb. Received: handle={handle!r}"
        )
    if os.path.exists(os.path.join(path, "tfhub_module.pb")):
        raise HubModelError(
            "This is a TF1 hub.Module (it has tfhub_module.pb), which TF2 and Keras 3 "
            "cannot fine-tune. Use the model's TF2 SavedModel version (on tfhub.dev "
            "/ Kaggle Models, the 'TF2' format). Received: "
            f"handle={handle!r}"
        )
    if not any(os.path.exists(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise HubModelError(
            "The TF-Hub handle names a directory that is not a SavedModel (no "
            "saved_model.pb). Pass the folder written by tf.saved_model.save (or "
            f"downloaded from TF-Hub). Received: handle={handle!r}"
        )


def resolve_handle(handle: str) -> str:
    """Returns the local SavedModel directory of `handle` (downloading it if needed).

    Args:
        handle: a local directory, a `file://` path or an https URL.

    Returns:
        The directory holding `saved_model.pb`.

    Raises:
        HubModelError: the handle is unreachable (offline, or a bad URL), does not
            exist, is not a SavedModel, or is a TF1 `hub.Module`.
    """
    if not isinstance(handle, str) or not handle.strip():
        raise HubModelError(
            "A TF-Hub handle must be a non-empty string: a SavedModel directory, a "
            f"file:// path or an https URL. Received: handle={handle!r}"
        )
    path = _local_path(handle)
    if path is None:
        import tensorflow_hub as hub

        try:
            path = hub.resolve(handle)
        except (urllib.error.URLError, OSError) as error:
            raise HubModelError(
                f"Could not download the TF-Hub model ({type(error).__name__}: "
                f"{error}). Connect to the network, or point {CACHE_ENV} at a cache "
                "that already holds it, or download it once and pass its local "
                f"directory ({_cache_dir_text()}). Received: handle={handle!r}"
            ) from error
        except ValueError as error:
            raise HubModelError(
                f"TF-Hub does not accept this handle ({error}). Pass a tfhub.dev or "
                "Kaggle Models URL, a file:// path or a local SavedModel directory. "
                f"Received: handle={handle!r}"
            ) from error
    _check_saved_model_dir(path, handle)
    return path


def load_hub_object(handle: str):
    """`hub.load(handle)` with clear errors (see `resolve_handle`).

    Returns:
        The restored SavedModel object.

    Raises:
        HubModelError: as `resolve_handle`, or the SavedModel cannot be loaded.
    """
    path = resolve_handle(handle)
    import tensorflow_hub as hub

    try:
        return hub.load(path)
    except Exception as error:  # noqa: BLE001 -- re-raised with the handle
        raise HubModelError(
            f"Could not load the SavedModel ({type(error).__name__}: "
            f"{str(error)[:300]}). Check that it is a TF2 SavedModel written by a "
            f"compatible TensorFlow. Received: handle={handle!r}"
        ) from error


def cache_key(handle: str) -> tuple:
    """A key for `handle` that changes when its local SavedModel is rewritten."""
    path = _local_path(handle)
    stamp = None
    if path is not None:
        pb = os.path.join(path, "saved_model.pb")
        if os.path.exists(pb):
            stamp = os.path.getmtime(pb)
    return (handle, stamp)


def hub_variables(obj) -> list[tuple[Any, bool]]:
    """The SavedModel's variables, each with whether it is trainable."""
    import tensorflow as tf

    if hasattr(obj, "variables"):
        variables = list(obj.variables)
        if hasattr(obj, "trainable_variables"):
            trainable = {v.ref() for v in obj.trainable_variables}
        else:
            trainable = {v.ref() for v in variables if v.trainable}
    else:  # a plain TF2 SavedModel: find the variables in its object graph
        seen, variables = set(), []
        for item in tf.train.TrackableView(obj).descendants():
            if isinstance(item, tf.Variable) and item.ref() not in seen:
                seen.add(item.ref())
                variables.append(item)
        trainable = {v.ref() for v in variables if v.trainable}
    return [(v, v.ref() in trainable) for v in variables]

