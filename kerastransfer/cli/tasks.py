"""The CLI's per-task hook table: `--task NAME` -> the module that says how
`train` reads the task's data, builds its model and describes the result, and
how `predict`/`export` recognise a model of that task.

Adding a task to the command line is one `TASKS` entry plus a small module
(`kerastransfer/cli/<task>.py`) with these functions:

* `check(options)`: checks and completes the options before any file is read
  (`options` is the dict of `train`'s options; raise `click.BadParameter`);
* `load_data(options)`: the training (and validation) data;
* `build_model(options, data)`: the task model;
* `fit_arguments(options, data)`: `(x, extra_fit_kwargs)` for `model.fit`
  (the phases, rates, checkpoint and report options are passed by `train`);
* `describe(options, data, model, history)`: writes the training record and
  prints the summary (`cli/train.py`'s `report_classifier` does it for
  classifiers);
* optionally `open_predictor(model_path, keras_model=None)`: the task's
  predictor for a `.onnx` file (`keras_model=None`) or a loaded `.keras`
  model, or None when the model is not of this task (`predict`, `export`);
* optionally `export_sample(model_path, model, validation_dir)`:
  `(examples, description)` `export` validates the ONNX file on (default:
  images of `--validation-dir` or of the recorded training folder).
* optionally `benchmark_inputs(predictor, batch_size, seed)`: `(inputs,
  description)` `benchmark` times the task's ONNX predictor on (default:
  random images);
* optionally `info_input(model)`: `info`'s `input` entry for a loaded
  `.keras` model of the task (default: an image input).

Nothing here imports TensorFlow, and the task modules must not at module level:
`predict x.onnx` imports them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["TaskCli", "TASKS", "task_hooks", "task_hooks_of", "task_help",
           "open_task_predictor", "task_benchmark_inputs"]


@dataclass(frozen=True)
class TaskCli:
    """One `--task` of the command line.

    Attributes:
        module: the module holding the task's hooks (see the module docstring).
        data: what DATA_DIR is for this task (`train --help`).
    """

    module: str
    data: str


TASKS: dict[str, TaskCli] = {
    "image": TaskCli("kerastransfer.cli.image", "DATA_DIR/<class>/*.jpg"),
    "audio": TaskCli("kerastransfer.cli.audio",
                     "DATA_DIR/<class>/*.wav (an AudioClassifier, see docs/audio.md)"),
    "text": TaskCli("kerastransfer.cli.text",
                    "DATA_DIR is a CSV file (a TextClassifier, see docs/text.md)"),
    "segmentation": TaskCli(
        "kerastransfer.cli.segmentation",
        "DATA_DIR/images/x.jpg + DATA_DIR/masks/x.png (a SegmentationModel, see "
        "docs/segmentation.md)"),
    "detection": TaskCli(
        "kerastransfer.cli.detection",
        "DATA_DIR is a COCO JSON file, a VOC or a YOLO folder (--format; a "
        "DetectionModel, see docs/detection.md)"),
}


def task_hooks(name: str) -> ModuleType:
    """The hook module of `--task name`."""
    return importlib.import_module(TASKS[name].module)


def task_hooks_of(model: Any) -> ModuleType | None:
    """The hook module of a loaded model's task (its `export_contract()`'s
    `kind`), or None (image classification, or a task without CLI hooks)."""
    contract = getattr(model, "export_contract", None)
    kind = contract().get("kind") if callable(contract) else None
    return task_hooks(kind) if kind in TASKS else None


def task_help() -> str:
    """`--task`'s help: what DATA_DIR is for each task."""
    return "; ".join(f"{name}: {task.data}" for name, task in TASKS.items()) + "."


def open_task_predictor(model_path: str, keras_model: Any = None) -> Any:
    """The first task predictor that recognises the model, or None (an image
    classifier: `OnnxPredictor` / the `.keras` predictor)."""
    for name in TASKS:
        hooks = task_hooks(name)
        if hasattr(hooks, "open_predictor"):
            predictor = hooks.open_predictor(model_path, keras_model)
            if predictor is not None:
                return predictor
    return None


def task_benchmark_inputs(model_path: str, batch_size: int, seed: int):
    """`(predictor, inputs, description)` for `benchmark`: the first task with a
    `benchmark_inputs` hook whose predictor opens the ONNX file, or None."""
    for name in TASKS:
        hooks = task_hooks(name)
        if hasattr(hooks, "benchmark_inputs") and hasattr(hooks, "open_predictor"):
            predictor = hooks.open_predictor(model_path)
            if predictor is not None:
                return (predictor, *hooks.benchmark_inputs(predictor, batch_size,
                                                           seed))
    return None
