"""What every command shares: error handling, logging set-up, parameter types,
output helpers, and the quiet first import of TensorFlow.

Nothing here imports TensorFlow, Keras or onnxruntime at module level: the
deployment commands (`backbones`, `info x.onnx`, `predict x.onnx`, `benchmark`)
must stay TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from kerastransfer import startup

logger = logging.getLogger("kerastransfer")

PROGRESS_MIN_FILES = 16  # show a progress bar from this many files on


# --- Errors -----------------------------------------------------------------
def runtime_error_types() -> tuple[type[BaseException], ...]:
    """The exception types reported as one-line runtime failures (exit 1)."""
    from kerastransfer.errors import KerasTransferError

    types: list[type[BaseException]] = [KerasTransferError, OSError, ValueError,
                                         RuntimeError, MemoryError]
    onnxruntime = sys.modules.get("onnxruntime")
    if onnxruntime is not None:  # only if already imported: never import it here
        try:
            from onnxruntime.capi import onnxruntime_pybind11_state as state

            types.extend(
                getattr(state, name) for name in (
                    "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf",
                    "NoSuchFile", "RuntimeException", "NotImplemented",
                ) if hasattr(state, name)
            )
        except ImportError:  # pragma: no cover -- a broken onnxruntime install
            pass
    return tuple(types)


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type name when it has none)."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)


class Group(click.Group):
    """A click group that turns runtime failures into one-line errors (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 -- reported, or re-raised in debug
            if ctx.meta.get("kerastransfer.debug"):
                raise
            expected = isinstance(error, runtime_error_types())
            message = one_line(error)
            if not expected:
                message = (f"Unexpected {type(error).__name__}: {message} "
                           "(re-run with --debug for the traceback)")
            raise click.ClickException(message) from None


# --- Logging and TensorFlow's start-up noise ----------------------------------
def configure_logging(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """Routes kerastransfer's logs to stderr at the chosen level for this command,
    and puts every logger back as it was when the command ends (commands also run
    in-process, e.g. under `CliRunner`).

    Args:
        ctx: the group's click context.
        quiet: only errors.
        verbose: `0` warnings, `1` info, `2` debug (third-party logs too).
    """
    level = (logging.ERROR if quiet else logging.WARNING if not verbose
             else logging.INFO if verbose == 1 else logging.DEBUG)
    third_party = logging.DEBUG if verbose > 1 else logging.ERROR
    # root: onnxruntime.quantization warns through the root logger.
    names = ["kerastransfer", "tf2onnx", "absl", "tensorflow", ""]
    saved = [(logging.getLogger(n), logging.getLogger(n).level,
              logging.getLogger(n).propagate) for n in names]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    for name in names[1:-1]:
        logging.getLogger(name).setLevel(third_party)
    if verbose < 2:
        logging.getLogger().setLevel(logging.ERROR)
        # TensorFlow's C++ logs, read once when TensorFlow is first imported:
        # 3 hides its INFO/WARNING/ERROR start-up lines (cuda stubs, CPU
        # features); an explicit user setting wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    def restore() -> None:
        logger.removeHandler(handler)
        for each, old_level, old_propagate in saved:
            each.setLevel(old_level)
            each.propagate = old_propagate

    ctx.call_on_close(restore)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow (once) without its native start-up lines
    (`kerastransfer/startup.py`), or plainly with `-vv` (the user asked for
    everything)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().meta.get("kerastransfer.verbose", 0) > 1:
        import tensorflow  # noqa: F401 -- -vv: TensorFlow's own lines too
        return
    startup.import_tensorflow_quietly()


# --- Parameter types and checks ---------------------------------------------
class ImageSize(click.ParamType):
    """`224` (square) or `HEIGHTxWIDTH` (`224x160`)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        parts = text.split("x")
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            sizes = []
        if len(sizes) == 1:
            sizes = sizes * 2
        if len(sizes) != 2 or min(sizes) < 1:
            self.fail(
                "Expected a positive size such as 224 or 224x160 (height x width). "
                f"Received: {value!r}", param, ctx,
            )
        return tuple(sizes)


IMAGE_SIZE = ImageSize()


def model_kind(path: str, param_hint: str, allowed: Sequence[str]) -> str:
    """The model file's extension (".keras" / ".onnx"), or a usage error."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise click.BadParameter(
            f"Expected a {' or '.join(allowed)} model file. Received: {path!r}",
            param_hint=param_hint,
        )
    return ext


@contextlib.contextmanager
def usage_errors(*types: type[BaseException]) -> Iterator[None]:
    """Turns library errors about the user's data or options into one-line
    `click.UsageError`s (exit 2): a task hook's `load_data` / `build_model`.

    Args:
        *types: the exception types. Defaults to `KerasTransferError`.
    """
    if not types:
        from kerastransfer.errors import KerasTransferError

        types = (KerasTransferError,)
    try:
        yield
    except types as error:
        raise click.UsageError(one_line(error)) from None


def onnx_kind(path: str) -> str | None:
    """The `kind` an ONNX file's metadata (or its sidecar) names (`"audio"`,
    `"text"`, ...; None for image classifiers and foreign files), read with
    the `onnx` package only: no onnxruntime, no TensorFlow. An unreadable file
    has no kind: the image predictor that opens it next reports why.

    Every task's hook asks in turn, and `onnx.load` parses the whole file
    (weights included), so the answer is kept per file version."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _onnx_kind(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _onnx_kind(path: str, mtime_ns: int, size: int) -> str | None:
    """`onnx_kind` for one version of a file (the key's `mtime_ns` and `size`)."""
    import onnx
    from google.protobuf.message import DecodeError

    from kerastransfer.runtime.base import decode_metadata, read_sidecar

    try:
        proto = onnx.load(path, load_external_data=False)
    except (OSError, ValueError, DecodeError):
        return None
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    if not meta:
        meta = read_sidecar(path) or {}
    return meta.get("kind")


def check_out_path(path: str, ext: str, param_hint: str) -> str:
    """`path` if it ends with `ext` and its folder exists, else a usage error."""
    if not path.lower().endswith(ext):
        raise click.BadParameter(
            f"The output file must end with {ext}. Received: {path!r}",
            param_hint=param_hint,
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.BadParameter(
            f"The output folder does not exist; create it first. Received: {path!r}",
            param_hint=param_hint,
        )
    return path


# --- Output -----------------------------------------------------------------
def echo_json(payload: Any) -> None:
    """Prints `payload` as indented JSON (numpy values as Python values)."""
    click.echo(json.dumps(payload, indent=2, default=json_default))


def json_default(value: Any) -> Any:
    """`json.dumps` fallback: numpy scalars/arrays, tuples, else `str`."""
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def stderr_progress(iterable=None, length=None, label=None):
    """A click progress bar on stderr (stdout stays parseable)."""
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr)


def is_quiet() -> bool:
    """Whether the group's `--quiet` is on."""
    return bool(click.get_current_context().meta.get("kerastransfer.quiet"))

