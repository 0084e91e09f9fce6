"""Loading saved models with clear errors and `safe_mode=True` by default."""

from __future__ import annotations

import os
import zipfile

from kerastransfer.errors import KerasTransferError

__all__ = ["load_model", "ModelLoadError"]


class ModelLoadError(KerasTransferError, ValueError):
    """A model file that is missing, of the wrong type, or corrupt."""


def load_model(path: str | os.PathLike, *, safe_mode: bool = True,
               compile: bool = True):
    """Loads a `.keras` file saved by kerastransfer (or any Keras 3 model).

    `safe_mode=True` (the default) refuses files that would run arbitrary code
    (Lambda layers); kerastransfer's own classes never need it off.

    Args:
        path: the `.keras` file.
        safe_mode: as for `keras.saving.load_model`. Defaults to `True`.
        compile: restore the training configuration. Defaults to `True`.

    Returns:
        The model (a `TransferModel` or another task if it was saved as one).

    Raises:
        ModelLoadError: the file is missing, not a `.keras` archive, or corrupt.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"Model file not found. Received: path={path!r}")
    if not path.endswith(".keras"):
        raise ModelLoadError(
            "Expected a .keras model file (for .onnx files use "
            "kerastransfer.runtime.OnnxPredictor). Received: path="
            f"{path!r}"
        )
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            "The file is not a valid .keras archive (corrupt or truncated). "
            f"Re-save or re-download it. Received: path={path!r}"
        )
    import keras

    import kerastransfer.tasks.classifier  # noqa: F401 -- registers the classes
    import kerastransfer.tasks.segmenter  # noqa: F401
    import kerastransfer.training.optimizers  # noqa: F401

    try:
        return keras.saving.load_model(path, safe_mode=safe_mode, compile=compile)
    except Exception as error:  # noqa: BLE001 -- wrapped with the file's name
        cause = _kerastransfer_cause(error)
        if cause is not None:  # already says what is wrong (e.g. a TF-Hub handle)
            raise cause from None
        raise ModelLoadError(
            f"Could not load the model ({type(error).__name__}: "
            f"{str(error)[:400]}). The file may be corrupt or saved by an "
            f"incompatible version. Received: path={path!r}"
        ) from error


def _kerastransfer_cause(error: BaseException) -> KerasTransferError | None:
    """The first `KerasTransferError` in an exception's chain (Keras wraps errors
    raised while deserializing a layer in a `TypeError`)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KerasTransferError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
