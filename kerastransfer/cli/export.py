"""`kerastransfer export`: a `.keras` model to a validated ONNX file."""

from __future__ import annotations

import os
from typing import Any

import click

from kerastransfer.cli._common import (
    check_out_path,
    import_tensorflow_quietly,
    logger,
    model_kind,
    stderr_progress,
)
from kerastransfer.cli.record import load_image_sample, read_record, record_path


@click.command()
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
@click.option("--validation-dir", type=click.Path(exists=True, file_okay=False),
              default=None,
              help="Images (or class subfolders) to compare Keras and ONNX on. "
                   "Defaults to a sample of the training folder recorded next to "
                   "MODEL by `train` (model.keras -> model.train.json), else "
                   "random images.")
@click.option("--no-preprocessing", is_flag=True,
              help="Leave the preprocessing layer out of the ONNX graph.")
@click.option("--no-optimize", is_flag=True,
              help="Do not run onnxruntime's graph optimizer on the file.")
def export(model_path, out, opset, quantize, calibration_dir, fp16, no_validate,
           atol, validation_dir, no_preprocessing, no_optimize):
    """Export a trained .keras MODEL to an ONNX file OUT (validated by default).

    Validation runs Keras and onnxruntime on the same images: up to 16 from
    --validation-dir, else from the training folder that `train` recorded next
    to MODEL (model.keras -> model.train.json). Random images alone prove
    little: a trained softmax maps noise to saturated 0/1 probabilities, on
    which any export agrees.

    \b
    Examples:
      kerastransfer export model.keras model.onnx
      kerastransfer export model.keras model.onnx --validation-dir data/test/
      kerastransfer export model.keras model-int8.onnx --quantize static \\
          --calibration-dir data/train/
      kerastransfer export model.keras model-fp16.onnx --fp16 --no-validate
    """
    model_kind(model_path, "'MODEL'", (".keras",))
    check_out_path(out, ".onnx", "'OUT'")
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
    import_tensorflow_quietly()
    with stderr_progress(length=2, label="Exporting") as bar:
        from kerastransfer.saving import load_model

        model = load_model(model_path)
        images, source = None, None
        from kerastransfer.cli.tasks import task_hooks_of
        from kerastransfer.cli.text import is_text_model

        if not no_validate or quantize or fp16:
            # A task's own examples (texts, clips: its `export_sample` hook),
            # else images.
            hooks = task_hooks_of(model)
            if hasattr(hooks, "export_sample"):
                images, source = hooks.export_sample(model_path, model,
                                                     validation_dir)
            else:
                images, source = _validation_images(model_path, validation_dir,
                                                    model.image_shape)
        bar.update(1)
        from kerastransfer.export import export_onnx

        result = export_onnx(
            model, out, opset=opset, include_preprocessing=not no_preprocessing,
            validate=not no_validate, atol=atol, quantize=quantize,
            calibration_data=calibration_dir, validation_data=images, fp16=fp16,
            optimize=not no_optimize,
        )
        bar.update(1)
    real_diff = None
    if images is not None and not no_validate and result.quantization is None:
        real_diff = _max_diff_on(model, out, images)
    size = os.path.getsize(out)
    click.echo(f"Wrote {out} ({size / 1e6:.2f} MB)")
    details = _export_details(result, source, real_diff,
                              0 if images is None else len(images))
    if is_text_model(model):
        details = details.replace(" images", " texts")
    click.echo(details)


def _validation_images(model_path: str, validation_dir: str | None, image_shape):
    """`(images, description)`: a sample of `--validation-dir`, else of the
    training folder in the model's training record, else `(None, None)`."""
    if validation_dir is not None:
        return (load_image_sample(validation_dir, image_shape),
                f"{validation_dir} (--validation-dir)")
    record = read_record(model_path)
    folder = (record or {}).get("data_dir")
    if not folder:
        return None, None
    if not os.path.isdir(folder):
        logger.warning(
            "The training folder recorded in %s no longer exists (%s); validating "
            "on random images only. Pass --validation-dir DIR.",
            record_path(model_path), folder)
        return None, None
    return (load_image_sample(folder, image_shape),
            f"{folder} (the training folder in {record_path(model_path)})")


def _max_diff_on(model: Any, onnx_path: str, images) -> float:
    """max |p_onnx - p_keras| of the written file on `images` (float32 files)."""
    import numpy as np

    from kerastransfer.cli.tasks import open_task_predictor
    from kerastransfer.runtime import OnnxPredictor

    predictor = open_task_predictor(onnx_path) or OnnxPredictor(onnx_path)
    if hasattr(predictor, "predict_raw"):  # detection: the raw head outputs
        return float(np.max(np.abs(predictor.predict_raw(images).astype("float64")
                                   - model.predict_raw(images))))
    onnx_out = predictor.predict(images)
    keras_out = np.asarray(model.predict(images, verbose=0))
    return float(np.max(np.abs(onnx_out.astype("float64") - keras_out)))


def _export_details(report: Any, source: str | None, real_diff: float | None,
                    num_images: int) -> str:
    """One line about what `export_onnx` checked (its `ExportReport`) and on
    which images."""
    parts = []
    if not getattr(report, "validated", False):
        parts.append("not validated")
    elif real_diff is not None:
        parts.append(f"validated on {num_images} real images from {source}: "
                     f"max |onnx - keras| = {real_diff:.3g}")
    elif source is not None:
        parts.append(f"float32 graph validated on random and {num_images} real "
                     f"images from {source}: max |onnx - keras| = "
                     f"{report.max_abs_diff:.3g}")
    else:
        parts.append(f"validated on random images only (pass --validation-dir for "
                     f"real ones; a trained model saturates on noise): "
                     f"max |onnx - keras| = {report.max_abs_diff:.3g}")
    if getattr(report, "quantization", None):
        parts.append(f"{report.quantization}")
        if report.agreement is not None:
            data = (f"{num_images} images from {source}"
                    if report.agreement_data == "validation_data"
                    else report.agreement_data)
            parts.append(f"top-1 agreement with float32 {report.agreement:.3f} "
                         f"(on {data})")
    # export_onnx has already logged report.warnings: logging them again here
    # printed the int8 agreement warning twice.
    return "; ".join(parts)
