"""`kerastransfer info`: a model's metadata, classes and input spec (a .onnx
file is read without TensorFlow)."""

from __future__ import annotations

import os

import click

from kerastransfer.cli._common import echo_json, import_tensorflow_quietly, model_kind


def keras_info(path: str) -> dict:
    """What `info` shows about a `.keras` file."""
    import_tensorflow_quietly()
    from kerastransfer.saving import load_model

    model = load_model(path)
    from kerastransfer.cli.tasks import task_hooks_of

    hooks = task_hooks_of(model)
    return {
        "format": "keras",
        "path": path,
        "backbone": getattr(model, "backbone_name", None),
        "task": getattr(model, "task", None),
        "class_names": list(getattr(model, "class_names", []) or []),
        "input": {"name": "image", "shape": [None, *model.input_shape[1:]],
                  "dtype": getattr(model, "input_dtype_name", "float32"),
                  "range": "RGB [0, 255]"} if not hasattr(hooks, "info_input")
        else hooks.info_input(model),
        "preprocessing": getattr(model, "preprocessing_mode", None),
        "pretrained": getattr(model, "pretrained", None),
        "phase_state": getattr(model, "phase_state", None),
        "parameters": int(model.count_params()),
    }


def onnx_info(path: str) -> dict:
    """What `info` shows about a `.onnx` file."""
    from kerastransfer.cli.tasks import open_task_predictor
    from kerastransfer.runtime import OnnxPredictor

    predictor = open_task_predictor(path) or OnnxPredictor(path)
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


@click.command()
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
    kind = model_kind(model_path, "'MODEL'", (".keras", ".onnx"))
    data = onnx_info(model_path) if kind == ".onnx" else keras_info(model_path)
    if as_json:
        echo_json(data)
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
