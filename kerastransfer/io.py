"""Atomic file writes: a failed or interrupted write never leaves a half-written
file at the destination, and the previous file there stays intact."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` on success.

    The temporary file lives in the destination folder, so the final `os.replace`
    is an atomic rename on the same file system. On any exception the temporary
    file is removed and `path` is untouched.

    Args:
        path: the destination.
        suffix: suffix of the temporary name (some writers check extensions).
            Defaults to `""`.

    Raises:
        OutputNotWritableError / OutputFolderNotFoundError: (`PermissionError` /
            `FileNotFoundError` subclasses of `OutputPathError`) the destination
            folder is not writable or does not exist, with the path in the
            message.
    """
    from kerastransfer.errors import OutputFolderNotFoundError, OutputNotWritableError

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputFolderNotFoundError(
            f"The output folder does not exist. Create it first. Received: "
            f"path={path!r}"
        )
    if not os.access(folder, os.W_OK):
        raise OutputNotWritableError(
            f"The output folder is not writable. Choose another path. Received: "
            f"path={path!r}"
        )
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=folder
        )
    except OSError as error:  # read-only file system, quota, ...
        raise OutputNotWritableError(
            f"Cannot write in the output folder ({error.strerror}). Choose another "
            f"path. Received: path={path!r}"
        ) from error
    os.close(fd)
    os.remove(tmp)  # writers such as Keras refuse to overwrite silently
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise OSError(f"Nothing was written for {path!r}.")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
