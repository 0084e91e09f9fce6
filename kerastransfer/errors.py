"""Exceptions raised by kerastransfer.

Every error kerastransfer raises for a user's mistake or environment derives from
`KerasTransferError`, so callers (and the CLI) can tell "you asked for something
wrong" from a bug. Subclasses also derive from the matching builtin (`ValueError`,
`OSError`, ...) so ordinary `except ValueError:` code keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "KerasTransferError",
    "UnknownBackboneError",
    "WeightsError",
    "InputShapeError",
    "DataError",
    "ExportError",
    "ExportValidationError",
    "TrainingDivergedError",
    "HubModelError",
    "CheckpointError",
    "OutputPathError",
    "closest_names",
]


class KerasTransferError(Exception):
    """Base class of every error kerastransfer raises on purpose."""


class UnknownBackboneError(KerasTransferError, ValueError):
    """A backbone name that the registry does not know."""


class WeightsError(KerasTransferError, ValueError):
    """Weights that cannot be found, downloaded or loaded."""


class InputShapeError(KerasTransferError, ValueError):
    """An input shape a backbone cannot take (too small, wrong channels...)."""


class DataError(KerasTransferError, ValueError):
    """Training or evaluation data that cannot be used as given."""


class ExportError(KerasTransferError, RuntimeError):
    """A model that cannot be exported, or an export that failed."""


class ExportValidationError(ExportError):
    """The exported model does not match the Keras model.

    Args:
        mismatches: one human-readable line per mismatching output/batch.
    """

    def __init__(self, mismatches: list[str]):
        self.mismatches = list(mismatches)
        lines = "\n".join(f"  - {m}" for m in self.mismatches)
        super().__init__(
            f"The exported ONNX model does not match the Keras model "
            f"({len(self.mismatches)} mismatch(es)):\n{lines}"
        )


class TrainingDivergedError(KerasTransferError, RuntimeError):
    """The loss became NaN or infinite during `fit()`."""


class HubModelError(KerasTransferError, ValueError):
    """A TF-Hub handle that cannot be resolved, loaded or used as a backbone."""


class CheckpointError(KerasTransferError, ValueError):
    """A training checkpoint that cannot be written, read or resumed."""


class OutputPathError(KerasTransferError, OSError):
    """An output path that cannot be written (missing folder, not writable).

    `kerastransfer.io` raises the subclasses `OutputFolderNotFoundError` (also a
    `FileNotFoundError`) and `OutputNotWritableError` (also a `PermissionError`).
    """


class OutputFolderNotFoundError(OutputPathError, FileNotFoundError):
    """The folder of an output path does not exist."""


class OutputNotWritableError(OutputPathError, PermissionError):
    """An output path whose folder cannot be written."""


def closest_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Returns up to `n` candidates that look like `name` (case-insensitive)."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[m] for m in matches]
