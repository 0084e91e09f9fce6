"""The `kerastransfer` command line: thin commands over the public API.

Commands that only deploy (`backbones`, `info x.onnx`, `predict x.onnx`,
`benchmark`) never import TensorFlow: everything TensorFlow-heavy is imported
inside the commands that need it.

Exit codes: 0 success, 1 a runtime failure (bad data, corrupt model, failed
export...; one line on stderr, `--debug` shows the traceback), 2 a usage error
(a bad option or argument, named in the message).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["cli", "main"]

logger = logging.getLogger("kerastransfer")

_PROGRESS_MIN_FILES = 16  # show a progress bar from this many files on


# --- Errors -----------------------------------------------------------------
def _runtime_error_types() -> tuple[type[BaseException], ...]:
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


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)


class _Group(click.Group):
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
            expected = isinstance(error, _runtime_error_types())
            message = _one_line(error)
            if not expected:
                message = (f"Unexpected {type(error).__name__}: {message} "
                           "(re-run with --debug for the traceback)")
            raise click.ClickException(message) from None


def _configure_logging(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """Routes kerastransfer's logs to stderr at the chosen level for this command,
    and puts every logger back as it was when the command ends (commands also run
    in-process, e.g. under `CliRunner`)."""
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
    if not verbose:
        logging.getLogger().setLevel(logging.ERROR)
        # TensorFlow's C++ logs (read when TensorFlow is first imported).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def restore() -> None:
        logger.removeHandler(handler)
        for each, old_level, old_propagate in saved:
            each.setLevel(old_level)
            each.propagate = old_propagate

    ctx.call_on_close(restore)


# --- Parameter types --------------------------------------------------------
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


def _model_kind(path: str, param_hint: str, allowed: Sequence[str]) -> str:
    """The model file's extension (".keras" / ".onnx"), or a usage error."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise click.BadParameter(
            f"Expected a {' or '.join(allowed)} model file. Received: {path!r}",
            param_hint=param_hint,
        )
    return ext


def _check_out_path(path: str, ext: str, param_hint: str) -> str:
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


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
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


def _stderr_progress(iterable=None, length=None, label=None):
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr)


# --- The group --------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True,
              help="Show the full Python traceback when a command fails.")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.option("-v", "--verbose", count=True,
              help="More log output: -v progress, -vv debug (with tf2onnx logs).")
@click.version_option(package_name="kerastransfer", prog_name="kerastransfer")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, verbose: int) -> None:
    """Transfer learning with Keras 3, exported to ONNX.

    \b
    Examples:
      kerastransfer backbones
      kerastransfer train data/ --backbone mobilenet_v3_small --weights imagenet \\
          --image-size 224 --epochs 5 --fine-tune-epochs 5 --out model.keras
      kerastransfer export model.keras model.onnx
      kerastransfer predict model.onnx cat.jpg dog.jpg --top-k 3
      kerastransfer evaluate model.keras data/test/
      kerastransfer info model.onnx
      kerastransfer benchmark model.onnx --batch-size 1 --runs 100
    """
    if quiet and verbose:
        raise click.BadParameter("Use --quiet or --verbose, not both.",
                                 param_hint="'--quiet' / '--verbose'")
    ctx.meta["kerastransfer.debug"] = debug
    ctx.meta["kerastransfer.quiet"] = quiet
    ctx.meta["kerastransfer.verbose"] = verbose
    _configure_logging(ctx, quiet, verbose)


def _quiet() -> bool:
    return bool(click.get_current_context().meta.get("kerastransfer.quiet"))


# --- backbones --------------------------------------------------------------
@cli.command()
@click.option("--family", default=None, help="Only this family, e.g. resnet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backbones(family: str | None, as_json: bool) -> None:
    """List the backbone catalog: input sizes, feature dims, preprocessing.

    Reads the registry only: no model is built and nothing is downloaded.

    \b
    Examples:
      kerastransfer backbones
      kerastransfer backbones --family efficientnet --json
    """
    from kerastransfer.backbones.registry import get_backbone, list_backbones

    rows = []
    for name in list_backbones():
        spec = get_backbone(name)
        if family is not None and spec.family != family.lower():
            continue
        rows.append({
            "name": spec.name,
            "family": spec.family,
            "default_size": spec.default_size,
            "min_size": spec.min_size,
            "feature_dim": spec.feature_dim,
            "preprocessing": spec.preprocessing,
            "imagenet": spec.supports_imagenet,
            "aliases": list(spec.aliases),
        })
    if family is not None and not rows:
        families = sorted({get_backbone(n).family for n in list_backbones()})
        raise click.BadParameter(
            f"No backbone of that family. Known families: {', '.join(families)}. "
            f"Received: {family!r}", param_hint="'--family'",
        )
    if as_json:
        _echo_json(rows)
        return
    header = ("name", "family", "default", "min", "features", "preprocessing")
    table = [header] + [
        (r["name"], r["family"], str(r["default_size"]), str(r["min_size"]),
         str(r["feature_dim"]), r["preprocessing"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


# --- train ------------------------------------------------------------------
def _parse_weights(value: str) -> str | None:
    if value.lower() == "none":
        return None
    if value.lower() == "imagenet":
        return "imagenet"
    if not os.path.exists(value):
        raise click.BadParameter(
            "Expected 'imagenet', 'none' or the path of an existing weights file "
            f"(.weights.h5, .h5, .keras). Received: {value!r}",
            param_hint="'--weights'",
        )
    return value


@cli.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--backbone", default="mobilenet_v3_small", show_default=True,
              help="A registry name (see `kerastransfer backbones`).")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet', 'none' (train from scratch) or a weights file.")
@click.option("--image-size", type=IMAGE_SIZE, default=None,
              help="224 or HEIGHTxWIDTH. Defaults to the backbone's size.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              show_default=True)
@click.option("--epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs with the backbone frozen (the head only).")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=0,
              show_default=True, help="Epochs of fine-tuning after that.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Learning rate of the frozen phase [1e-3].")
@click.option("--fine-tune-lr", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Learning rate of fine-tuning [learning rate/10].")
@click.option("--unfreeze", default="all", show_default=True,
              help="What fine-tuning unfreezes: all, top:N, blocks:N, fraction:F, "
                   "from:LAYER.")
@click.option("--train-bn", is_flag=True,
              help="Let BatchNorm statistics train during fine-tuning.")
@click.option("--lr-decay", type=click.FloatRange(min=0, min_open=True, max=1),
              default=None, help="Layer-wise learning-rate decay per block.")
@click.option("--dropout", type=click.FloatRange(min=0, max=1, max_open=True),
              default=0.2, show_default=True)
@click.option("--validation-split", type=click.FloatRange(min=0, max=1, max_open=True),
              default=0.2, show_default=True,
              help="Share of the images held out for validation.")
@click.option("--seed", type=int, default=1337, show_default=True,
              help="Seed of the split, shuffling and initialization.")
@click.option("--out", "out", default="model.keras", show_default=True,
              help="Where to save the trained model (.keras).")
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Write learning curves, confusion matrix and per-class metrics "
                   "to this folder.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Save a checkpoint after every epoch here.")
@click.option("--strict", is_flag=True,
              help="Fail on unreadable images instead of skipping them.")
def train(data_dir, backbone, weights, image_size, batch_size, epochs,
          fine_tune_epochs, learning_rate, fine_tune_lr, unfreeze, train_bn,
          lr_decay, dropout, validation_split, seed, out, plots, checkpoint_dir,
          strict):
    """Train a model on a folder of class subfolders (DATA_DIR/<class>/*.jpg).

    Phase 1 trains the head on the frozen backbone for --epochs; phase 2
    fine-tunes what --unfreeze says for --fine-tune-epochs. With --weights none
    the backbone is random and everything trains in one phase.

    \b
    Examples:
      kerastransfer train data/ --backbone mobilenet_v3_small --weights imagenet \\
          --image-size 224 --epochs 5 --fine-tune-epochs 5 --out model.keras
      kerastransfer train data/ --backbone resnet50 --weights resnet50_notop.h5 \\
          --unfreeze blocks:2 --plots report/ --checkpoint-dir ckpt/
      kerastransfer train data/ --weights none --image-size 64 --epochs 20
    """
    from kerastransfer.errors import InputShapeError, UnknownBackboneError

    weights = _parse_weights(weights)
    out = _check_out_path(out, ".keras", "'--out'")
    # Check every option before reading any image or building any model.
    from kerastransfer.backbones.registry import get_backbone

    try:
        spec = get_backbone(backbone)
    except UnknownBackboneError as error:
        raise click.BadParameter(_one_line(error), param_hint="'--backbone'") from None
    if image_size is None:
        if spec.default_size is None:
            raise click.BadParameter(
                f"Backbone {spec.name!r} has no default size; pass one.",
                param_hint="'--image-size'",
            )
        image_size = (spec.default_size, spec.default_size)
    try:
        spec.resolve_input_shape((*image_size, spec.channels))
    except InputShapeError as error:
        raise click.BadParameter(_one_line(error),
                                 param_hint="'--image-size'") from None
    from kerastransfer.training.phases import Unfreeze

    try:
        Unfreeze.parse(unfreeze)
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="'--unfreeze'") from None

    import keras

    from kerastransfer.data import load_image_folder
    from kerastransfer.tasks.classifier import TransferModel

    keras.utils.set_random_seed(seed)
    data = load_image_folder(
        data_dir, image_size=image_size, batch_size=batch_size,
        validation_split=validation_split, seed=seed, shuffle=True, strict=strict,
    )
    model = TransferModel(
        spec.name, weights=weights, input_shape=(*image_size, spec.channels),
        class_names=data.class_names, dropout=dropout,
    )
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    history = model.fit(
        data.train, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate, fine_tune_lr=fine_tune_lr, unfreeze=unfreeze,
        train_bn=train_bn, lr_decay=lr_decay, validation_data=data.validation,
        checkpoint_dir=checkpoint_dir, report_dir=plots,
        verbose=0 if _quiet() else 2,
    )
    model.save(out)
    for phase in history.phases:
        logger.info("Phase %s: epochs %d-%d", phase["name"], phase["start_epoch"] + 1,
                    phase["end_epoch"])
    summary = {key: values[-1] for key, values in history.history.items()
               if values and values[-1] is not None}
    click.echo(f"Saved {out}")
    if summary:
        click.echo("Final: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    if plots is not None:
        click.echo(f"Wrote the report (learning curves, confusion matrix, "
                   f"metrics.json) to {plots}")


# --- export -----------------------------------------------------------------
@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("out", metavar="OUT")
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True)
@click.option("--quantize", type=click.Choice(["dynamic", "static"]), default=None,
              help="int8 quantization (static needs --calibration-dir).")
@click.option("--calibration-dir", type=click.Path(exists=True, file_okay=False),
              default=None,
              help="Images (or class subfolders) used to calibrate static "
                   "quantization.")
@click.option("--fp16", is_flag=True, help="Convert the weights to float16 (GPUs).")
@click.option("--no-validate", is_flag=True,
              help="Skip comparing the ONNX model's outputs with the Keras model.")
@click.option("--atol", type=click.FloatRange(min=0, min_open=True), default=1e-4,
              show_default=True, help="Tolerance of the validation.")
@click.option("--no-preprocessing", is_flag=True,
              help="Leave the preprocessing layer out of the ONNX graph.")
@click.option("--no-optimize", is_flag=True,
              help="Do not run onnxruntime's graph optimizer on the file.")
def export(model_path, out, opset, quantize, calibration_dir, fp16, no_validate,
           atol, no_preprocessing, no_optimize):
    """Export a trained .keras MODEL to an ONNX file OUT (validated by default).

    \b
    Examples:
      kerastransfer export model.keras model.onnx
      kerastransfer export model.keras model-int8.onnx --quantize static \\
          --calibration-dir data/train/
      kerastransfer export model.keras model-fp16.onnx --fp16 --no-validate
    """
    _model_kind(model_path, "'MODEL'", (".keras",))
    _check_out_path(out, ".onnx", "'OUT'")
    if quantize == "static" and calibration_dir is None:
        raise click.BadParameter(
            "Static quantization needs calibration images; pass "
            "--calibration-dir DIR (or use --quantize dynamic).",
            param_hint="'--calibration-dir'",
        )
    if calibration_dir is not None and quantize != "static":
        raise click.BadParameter(
            "--calibration-dir is only used with --quantize static. "
            f"Received: --quantize {quantize}", param_hint="'--calibration-dir'",
        )
    if fp16 and quantize is not None:
        raise click.BadParameter(
            "--fp16 and --quantize cannot be combined; choose one. "
            f"Received: --quantize {quantize}", param_hint="'--fp16'",
        )
    with _stderr_progress(length=2, label="Exporting") as bar:
        from kerastransfer.saving import load_model

        model = load_model(model_path)
        bar.update(1)
        from kerastransfer.export import export_onnx

        result = export_onnx(
            model, out, opset=opset, include_preprocessing=not no_preprocessing,
            validate=not no_validate, atol=atol, quantize=quantize,
            calibration_data=calibration_dir, fp16=fp16, optimize=not no_optimize,
        )
        bar.update(1)
    size = os.path.getsize(out)
    click.echo(f"Wrote {out} ({size / 1e6:.2f} MB)")
    click.echo(_export_details(result))


def _export_details(report: Any) -> str:
    """One line about what `export_onnx` checked (its `ExportReport`)."""
    parts = []
    if getattr(report, "validated", False):
        parts.append(f"validated: max |onnx - keras| = {report.max_abs_diff:.3g}")
    else:
        parts.append("not validated")
    if getattr(report, "quantization", None):
        parts.append(f"{report.quantization}")
        if report.agreement is not None:
            parts.append(f"top-1 agreement with float32 {report.agreement:.3f} "
                         f"(on {report.agreement_data})")
    for warning in getattr(report, "warnings", None) or []:
        logger.warning("%s", warning)
    return "; ".join(parts)


# --- predict ----------------------------------------------------------------
class _KerasPredictor:
    """Predicts with a .keras model; decodes files exactly as `OnnxPredictor`."""

    def __init__(self, path: str):
        from kerastransfer.saving import load_model

        self.model = load_model(path)
        self.class_names = list(self.model.class_names)
        self.input_shape = tuple(self.model.image_shape)
        self.skipped: list[tuple[str, str]] = []

    def predict(self, images):
        import numpy as np

        return np.asarray(self.model.predict_on_batch(
            np.asarray(images, dtype="float32")))

    def predict_files(self, paths: Sequence[str], top_k: int = 5) -> list[dict]:
        import numpy as np

        from kerastransfer.runtime import decode_images

        images, self.skipped = decode_images(paths, self.input_shape[:2])
        if self.skipped:
            logger.warning("Skipped %d unreadable file(s): %s", len(self.skipped),
                           "; ".join(f"{p} ({r})" for p, r in self.skipped[:10]))
        bad = {p for p, _ in self.skipped}
        good = [p for p in paths if p not in bad]
        if not good:
            return []
        results = []
        for path, scores in zip(good, self.predict(images), strict=True):
            order = np.argsort(-scores)[:top_k]
            results.append({
                "path": path,
                "top_k": [(self.class_names[i], float(scores[i])) for i in order],
                "probabilities": scores,
            })
        return results


def _open_predictor(model_path: str):
    kind = _model_kind(model_path, "'MODEL'", (".keras", ".onnx"))
    if kind == ".onnx":
        from kerastransfer.runtime import OnnxPredictor

        return OnnxPredictor(model_path)
    return _KerasPredictor(model_path)


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True))
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (with every class's probability).")
def predict(model_path, images, top_k, batch_size, as_json):
    """Classify IMAGES (files or folders) with a .keras or .onnx MODEL.

    A .onnx model runs on onnxruntime without importing TensorFlow. Unreadable
    files are reported on stderr and skipped; the command fails (exit 1) only
    when no image could be read.

    \b
    Examples:
      kerastransfer predict model.onnx cat.jpg dog.jpg
      kerastransfer predict model.keras photos/ --top-k 3 --json
    """
    from kerastransfer.runtime import list_image_files

    files = list_image_files(images)
    if not files:
        raise click.BadParameter(
            "No image files found (a folder is searched for "
            ".jpg/.jpeg/.png/.bmp/.gif/.webp/.tif files). "
            f"Received: {' '.join(images)}", param_hint="'IMAGES'",
        )
    predictor = _open_predictor(model_path)
    top_k = min(top_k, len(predictor.class_names))
    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    results: list[dict] = []
    skipped: list[tuple[str, str]] = []

    def run(chunk):
        results.extend(predictor.predict_files(chunk, top_k=top_k))
        skipped.extend(getattr(predictor, "skipped", []) or [])

    if len(files) >= _PROGRESS_MIN_FILES and not _quiet():
        with _stderr_progress(chunks, label="Predicting") as bar:
            for chunk in bar:
                run(chunk)
    else:
        for chunk in chunks:
            run(chunk)
    if not results:
        raise click.ClickException(
            f"None of the {len(files)} file(s) is a readable image."
        )
    if as_json:
        _echo_json([
            {"path": r["path"],
             "top_k": [{"class_name": c, "probability": p} for c, p in r["top_k"]],
             "probabilities": dict(zip(
                 predictor.class_names, (float(v) for v in r["probabilities"]),
                 strict=True))}
            for r in results
        ] + [{"path": p, "error": reason} for p, reason in skipped])
        return
    for item in results:
        ranked = ", ".join(f"{c} {p:.3f}" for c, p in item["top_k"])
        click.echo(f"{item['path']}: {ranked}")


# --- evaluate ---------------------------------------------------------------
@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(model_path, data_dir, batch_size, as_json):
    """Evaluate MODEL (.keras or .onnx) on DATA_DIR/<class>/ images.

    Prints accuracy, per-class precision/recall/F1 and the confusion matrix
    (rows: true class, columns: predicted class). The folder's class names must
    be among the model's.

    \b
    Examples:
      kerastransfer evaluate model.keras data/test/
      kerastransfer evaluate model.onnx data/test/ --json
    """
    import numpy as np

    predictor = _open_predictor(model_path)
    from kerastransfer.data import load_image_folder
    from kerastransfer.errors import DataError

    height, width = predictor.input_shape[:2]
    data = load_image_folder(data_dir, image_size=(height, width),
                             batch_size=batch_size, validation_split=0.0,
                             shuffle=False)
    names = list(predictor.class_names)
    unknown = [c for c in data.class_names if c not in names]
    if unknown:
        raise DataError(
            f"The folder has classes the model does not know: {unknown}. The "
            f"model's classes are {names}. Received: data_dir={data_dir!r}"
        )
    to_model = np.array([names.index(c) for c in data.class_names])
    y_true, y_pred = [], []
    for images, labels in data.train:
        probabilities = predictor.predict(np.asarray(images, dtype="float32"))
        y_pred.append(np.argmax(probabilities, axis=-1))
        y_true.append(to_model[np.asarray(labels).astype(int)])
    from kerastransfer.report import (
        classification_metrics,
        format_classification_report,
    )

    metrics = classification_metrics(np.concatenate(y_true), np.concatenate(y_pred),
                                     names)
    if as_json:
        _echo_json(metrics)
        return
    click.echo(f"Images: {metrics['num_samples']}  accuracy: {metrics['accuracy']:.4f}")
    click.echo(format_classification_report(metrics).rstrip())
    click.echo("Confusion matrix (rows: true class, columns: predicted class):")
    width = max(len(n) for n in names)
    cell = max([3] + [len(n) for n in names] +
               [len(str(v)) for row in metrics["confusion_matrix"] for v in row])
    click.echo(" " * (width + 2) + " ".join(n.rjust(cell) for n in names))
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        click.echo(f"{name.ljust(width)}  " + " ".join(str(v).rjust(cell) for v in row))


# --- info -------------------------------------------------------------------
def _keras_info(path: str) -> dict:
    from kerastransfer.saving import load_model

    model = load_model(path)
    info = {
        "format": "keras",
        "path": path,
        "backbone": getattr(model, "backbone_name", None),
        "task": getattr(model, "task", None),
        "class_names": list(getattr(model, "class_names", []) or []),
        "input": {"name": "image", "shape": [None, *model.input_shape[1:]],
                  "dtype": getattr(model, "input_dtype_name", "float32"),
                  "range": "RGB [0, 255]"},
        "preprocessing": getattr(model, "preprocessing_mode", None),
        "pretrained": getattr(model, "pretrained", None),
        "phase_state": getattr(model, "phase_state", None),
        "parameters": int(model.count_params()),
    }
    return info


def _onnx_info(path: str) -> dict:
    from kerastransfer.runtime import OnnxPredictor

    predictor = OnnxPredictor(path)
    session = getattr(predictor, "_session", None)  # input/output names, shapes
    info = {
        "format": "onnx",
        "path": path,
        "class_names": list(predictor.class_names),
        "input_shape": list(predictor.input_shape),
        "providers": list(predictor.providers),
        "metadata": dict(predictor.metadata),
        "size_bytes": os.path.getsize(path),
    }
    if session is not None:
        info["inputs"] = [{"name": i.name, "shape": i.shape, "type": i.type}
                          for i in session.get_inputs()]
        info["outputs"] = [{"name": o.name, "shape": o.shape, "type": o.type}
                           for o in session.get_outputs()]
    return info


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(model_path, as_json):
    """Show a model's metadata, classes and input spec (.keras or .onnx).

    \b
    Examples:
      kerastransfer info model.onnx
      kerastransfer info model.keras --json
    """
    kind = _model_kind(model_path, "'MODEL'", (".keras", ".onnx"))
    data = _onnx_info(model_path) if kind == ".onnx" else _keras_info(model_path)
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for sub_key, sub_value in value.items():
                click.echo(f"  {sub_key}: {sub_value}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            click.echo(f"{key}:")
            for item in value:
                click.echo("  " + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            click.echo(f"{key}: {value}")


# --- benchmark --------------------------------------------------------------
@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=1,
              show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed calls.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed calls first.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def benchmark(model_path, batch_size, runs, warmup, seed, as_json):
    """Measure an ONNX MODEL's latency (p50/p90/p99) and throughput.

    Times `OnnxPredictor.predict` on random images of the model's input size,
    on the providers onnxruntime picks (CUDA first when onnxruntime-gpu has a
    GPU).

    \b
    Examples:
      kerastransfer benchmark model.onnx
      kerastransfer benchmark model.onnx --batch-size 8 --runs 200 --json
    """
    import numpy as np

    _model_kind(model_path, "'MODEL'", (".onnx",))
    from kerastransfer.runtime import OnnxPredictor

    predictor = OnnxPredictor(model_path)
    shape = [batch_size, *(d if isinstance(d, int) and d > 0 else 224
                           for d in predictor.input_shape)]
    images = np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
    for _ in range(warmup):
        predictor.predict(images)
    latencies = []
    with _stderr_progress(range(runs), label="Benchmarking") as bar:
        for _ in bar:
            start = time.perf_counter()
            predictor.predict(images)
            latencies.append(time.perf_counter() - start)
    ms = np.asarray(latencies) * 1000.0
    result = {
        "model": model_path,
        "providers": list(predictor.providers),
        "batch_size": batch_size,
        "input_shape": shape,
        "runs": runs,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_images_per_s": float(batch_size * runs / (ms.sum() / 1000.0)),
    }
    if as_json:
        _echo_json(result)
        return
    click.echo(f"Provider: {', '.join(result['providers'])}")
    click.echo(f"Input: {shape} float32, {runs} runs after {warmup} warm-up")
    click.echo(f"Latency ms: p50 {result['p50_ms']:.2f}  p90 {result['p90_ms']:.2f}"
               f"  p99 {result['p99_ms']:.2f}  mean {result['mean_ms']:.2f}")
    click.echo(f"Throughput: {result['throughput_images_per_s']:.1f} images/s")


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=list(argv) if argv is not None else None,
             prog_name="kerastransfer")


if __name__ == "__main__":
    main()
