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
