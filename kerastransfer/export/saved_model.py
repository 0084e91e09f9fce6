"""Export to a self-contained TensorFlow SavedModel (hub backbones included).

The SavedModel holds the model's functions and its (fine-tuned) weights, so it
runs without the TF-Hub handle, its cache or kerastransfer. Text (string-input)
models deploy this way: tf2onnx writes string ops onnxruntime cannot run
(docs/design.md, fact 6).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__all__ = ["export_saved_model"]

logger = logging.getLogger(__name__)


def export_saved_model(model: keras.Model, directory: str | os.PathLike, *,
                       overwrite: bool = False) -> str:
    """Exports a model (hub backbone included) as a self-contained SavedModel.

    The SavedModel holds the hub model's functions and the fine-tuned weights, so
    it runs without the handle, the TF-Hub cache or kerastransfer
    (`tf.saved_model.load(directory).serve(images)`). Use it to deploy text (string
    input) models, which ONNX cannot take; deploy image models with
    `kerastransfer.export.export_onnx`.

    Args:
        model: a `TransferModel` (or any built Keras model).
        directory: the folder to write (written atomically: a failed export leaves
            no folder, and a replaced one stays intact until the new one is
            complete).
        overwrite: replace an existing folder. Defaults to `False`.

    Returns:
        The directory written.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ExportError: the model cannot be exported.

    Example:

    >>> export_saved_model(model, "exported/")  # doctest: +SKIP
    'exported/'
    """
    from kerastransfer.errors import ExportError
    from kerastransfer.io import atomic_path

    directory = os.fspath(directory)
    target = directory.rstrip(os.sep) or directory
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{directory!r} exists. Pass overwrite=True to replace it or choose "
            f"another folder. Received: directory={directory!r}"
        )
    backup = None
    if os.path.exists(target):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old.",
                                  dir=os.path.dirname(os.path.abspath(target)))
        os.rmdir(backup)
        os.replace(target, backup)
    try:
        with atomic_path(target) as tmp:
            try:
                model.export(tmp, format="tf_saved_model", verbose=False)
            except Exception as error:  # noqa: BLE001 -- wrapped with context
                raise ExportError(
                    f"SavedModel export failed ({type(error).__name__}: "
                    f"{str(error)[:300]}). Call the model on one batch first, or "
                    f"export its .keras file instead. Received: "
                    f"directory={directory!r}"
                ) from error
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    logger.info("Exported a self-contained SavedModel to %s", directory)
    return directory
