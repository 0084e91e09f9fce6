"""`kerastransfer train`: a task model trained on DATA_DIR and saved as `.keras`.

One flow for every task (`run_training`): the task's hooks (the table in
`cli/tasks.py`: `cli/image.py`, `audio.py`, `text.py`, `segmentation.py`) check
the options, read the data, build the model and describe the result; the
phased `fit`, the save and the training record's metrics
(`report_classifier`) are shared.
"""

from __future__ import annotations

import os
import re

import click

from kerastransfer.cli._common import (
    IMAGE_SIZE,
    check_out_path,
    import_tensorflow_quietly,
    is_quiet,
    logger,
)
from kerastransfer.cli.record import write_record
from kerastransfer.cli.tasks import TASKS, task_help, task_hooks


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


@click.command()
@click.argument("data_dir", type=click.Path(exists=True))
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
@click.option("--head", type=click.Choice(["auto", "epochs", "linear_probe"]),
              default="auto", show_default=True,
              help="How the frozen phase trains the head: epochs of the optimizer, "
                   "linear_probe (logistic regression solved once on the "
                   "features; one epoch in the history), or auto (linear_probe "
                   "for image classifiers with at most 10 images per class).")
@click.option("--unlabelled", type=click.Path(exists=True, file_okay=False),
              default=None,
              help="--head linear_probe, --task image: a folder of unlabelled "
                   "images of the same domain; the probe is self-trained on "
                   "them (pseudo-labels).")
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
@click.option("--task", type=click.Choice(list(TASKS)), default="image",
              show_default=True, help=task_help())
@click.option("--text-column", default="text", show_default=True,
              help="--task text: the CSV column holding the text.")
@click.option("--label-column", default="label", show_default=True,
              help="--task text: the CSV column holding the label.")
@click.option("--sequence-length", type=click.IntRange(min=3), default=128,
              show_default=True, help="--task text: tokens per text.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=16000,
              show_default=True, help="--task audio: the rate clips are resampled to.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="--task audio: clip length in seconds.")
@click.option("--augment", is_flag=True,
              help="--task audio: gain, shift, noise and masking augmentation.")
@click.option("--format", type=click.Choice(["coco", "voc", "yolo"]), default="coco",
              show_default=True, help="--task detection: the annotation format.")
@click.option("--strict", is_flag=True,
              help="Fail on unreadable images instead of skipping them.")
@click.option("--channels", type=click.IntRange(min=1), default=None,
              help="Image channels of the model (1: grayscale, e.g. X-ray/CT; "
                   "C > 3: multi-channel NIfTI/TIFF). Default: the backbone's (3).")
@click.option("--window", default=None,
              help="Intensity window stored in the model: a preset (lung, brain, "
                   "bone, soft_tissue, ...) or CENTER,WIDTH (docs/medical.md).")
def train(**options):
    """Train a model on a folder of class subfolders (DATA_DIR/<class>/*.jpg).

    Phase 1 trains the head on the frozen backbone for --epochs; phase 2
    fine-tunes what --unfreeze says for --fine-tune-epochs. With --weights none
    the backbone is random and everything trains in one phase.

    The metrics printed at the end are the saved model's, evaluated on the
    validation split after training. Next to the model (model.keras), the
    training record model.train.json names the training folder, which `export`
    samples to validate the ONNX file on real images.

    \b
    Examples:
      kerastransfer train data/ --backbone mobilenet_v3_small --weights imagenet \\
          --image-size 224 --epochs 5 --fine-tune-epochs 5 --out model.keras
      kerastransfer train data/ --backbone resnet50 --weights resnet50_notop.h5 \\
          --unfreeze blocks:2 --plots report/ --checkpoint-dir ckpt/
      kerastransfer train data/ --weights none --image-size 64 --epochs 20
      kerastransfer train reviews.csv --task text --text-column review \\
          --label-column label --backbone kerashub:bert_tiny_en_uncased
      kerastransfer train clips/ --task audio --backbone spectrogram_cnn \\
          --weights none --duration 1.0 --epochs 10 --augment
      kerastransfer train coco/annotations.json --task detection --format coco \\
          --backbone mobilenet_v2 --image-size 320 --epochs 10
    """
    import_tensorflow_quietly()
    options["out"] = check_out_path(options["out"], ".keras", "'--out'")
    check_unlabelled(options)
    run_training(task_hooks(options["task"]), options)


def run_training(hooks, options: dict) -> None:
    """Trains, saves and describes a model of one task (see `cli/tasks.py` for
    the hooks)."""
    hooks.check(options)  # every option, before reading any file
    import keras

    keras.utils.set_random_seed(options["seed"])
    data = hooks.load_data(options)
    from kerastransfer.errors import WeightsError

    try:
        model = hooks.build_model(options, data)
    except WeightsError as error:  # the offline error speaks in CLI options
        raise WeightsError(cli_wording(str(error))) from error
    if options["checkpoint_dir"] is not None:
        os.makedirs(options["checkpoint_dir"], exist_ok=True)
    x, extra = hooks.fit_arguments(options, data)
    if options["head"] != "auto":  # every task's fit takes the default
        extra = {**extra, "head": options["head"]}
    if options["unlabelled"] is not None:
        extra["unlabelled"] = load_unlabelled_images(options)
    history = model.fit(
        x, epochs=options["epochs"], fine_tune_epochs=options["fine_tune_epochs"],
        learning_rate=options["learning_rate"], fine_tune_lr=options["fine_tune_lr"],
        unfreeze=options["unfreeze"], checkpoint_dir=options["checkpoint_dir"],
        report_dir=options["plots"], verbose=0 if is_quiet() else 2, **extra)
    model.save(options["out"])
    for phase in history.phases:
        logger.info("Phase %s: epochs %d-%d", phase["name"], phase["start_epoch"] + 1,
                    phase["end_epoch"])
    hooks.describe(options, data, model, history)


def check_unlabelled(options: dict) -> None:
    """`--unlabelled` needs `--head linear_probe` and `--task image`."""
    if options.get("unlabelled") is None:
        return
    if options["head"] != "linear_probe" or options["task"] != "image":
        raise click.BadParameter(
            "--unlabelled self-trains the linear probe of an image classifier: "
            "use it with --head linear_probe and --task image. Received: "
            f"--head {options['head']} --task {options['task']}",
            param_hint="'--unlabelled'")


def load_unlabelled_images(options: dict):
    """The images of the `--unlabelled` folder as a numpy array, decoded and
    resized by the pipeline that reads the training images (unreadable files
    are skipped with a warning, or refused with --strict)."""
    import numpy as np

    from kerastransfer.data.checks import scan_images
    from kerastransfer.data.pipeline import file_pipeline
    from kerastransfer.runtime import list_image_files

    paths = list_image_files(options["unlabelled"])
    good, _ = scan_images(paths, strict=options["strict"],
                          channels=options["channels"])
    if not good:
        raise click.BadParameter(
            "Expected a folder holding readable images. "
            f"Received: {options['unlabelled']!r} ({len(paths)} image files)",
            param_hint="'--unlabelled'")
    paths = [paths[i] for i in good]
    dataset = file_pipeline(paths, np.zeros(len(paths), "int64"),
                            image_size=options["image_size"],
                            batch_size=options["batch_size"], shuffle=False,
                            seed=options["seed"], cache=False,
                            channels=options["channels"])
    return np.concatenate([images.numpy() for images, _ in dataset])


def check_folder_and_weights(options: dict) -> None:
    """DATA_DIR is a folder and `--weights` is 'imagenet', 'none' or a file
    (the folder tasks' `check`); sets `options["weights"]`."""
    if not os.path.isdir(options["data_dir"]):
        raise click.BadParameter(
            f"Expected a folder of class subfolders (a CSV file needs --task text). "
            f"Received: {options['data_dir']!r}", param_hint="'DATA_DIR'")
    options["weights"] = _parse_weights(options["weights"])


def report_classifier(options: dict, model, history, *, validation, num_validation,
                      unit: str, record: dict, evaluate=None) -> None:
    """Writes a classifier's training record and prints its summary.

    The metrics are the saved model's on the validation split (`evaluate()`,
    default `model.evaluate(validation)`), else the last epoch's training
    metrics, and the record names the data `export` samples to validate on.

    Args:
        options: `train`'s options.
        model: the saved model.
        history: what `fit` returned.
        validation: the validation data, or None.
        num_validation: its size.
        unit: what one example is called (`"images"`, `"clips"`, `"texts"`).
        record: the task's record fields (before the shared ones).
        evaluate: a function returning the validation metrics dict.
    """
    out = options["out"]
    metrics, source = _final_metrics(model, validation, num_validation, history,
                                     unit, evaluate)
    record = {
        **record,
        "model": os.path.abspath(out),
        "data_dir": os.path.abspath(options["data_dir"]),
        "validation_split": options["validation_split"],
        "seed": options["seed"],
        "class_names": list(model.class_names),
        "num_validation": num_validation,
        "metrics": metrics,
        "metrics_source": source,
    }
    record_file = write_record(out, record)
    click.echo(f"Saved {out} (training record: {record_file})")
    if metrics:
        click.echo(f"Final ({source}): " + ", ".join(
            f"{key}={_format_metric(key, value)}" for key, value in metrics.items()))
    if options["plots"] is not None:
        click.echo(f"Wrote the report (learning curves, confusion matrix, "
                   f"metrics.json) to {options['plots']}")


def cli_wording(message: str) -> str:
    """Rewrites the Python API's `weights=...` spellings in a library message as
    the `--weights` option: `weights=None` -> `--weights none`,
    `weights='x'` -> `--weights x`."""
    message = re.sub(r"\bweights=None\b", "--weights none", message)
    return re.sub(r"\bweights='([^']*)'", r"--weights \1", message)


def _final_metrics(model, validation, num_validation, history, unit="images",
                   evaluate=None) -> tuple[dict[str, float], str]:
    """The metrics that describe the saved model, and where they come from.

    The last epoch's `val_*` values are measured before the end of the phase
    (BatchNorm statistics may still be recomputed afterwards), so the saved
    model is evaluated on the validation split once more. Without a validation
    split, the last epoch's training metrics (averaged over that epoch) are all
    there is, and the label says so.
    """
    if validation is not None and num_validation:
        values = (evaluate() if evaluate is not None else
                  model.evaluate(validation, return_dict=True, verbose=0))
        metrics = {f"val_{key}": float(value) for key, value in values.items()}
        return metrics, (f"the saved model on the validation split, "
                         f"{num_validation} {unit}")
    metrics = {key: float(values[-1]) for key, values in history.history.items()
               if values and values[-1] is not None and not key.startswith("val_")}
    return metrics, "no validation split: training metrics averaged over the last epoch"


def _format_metric(key: str, value: float) -> str:
    """Losses with 4 significant digits (they get small), rates with 4 decimals."""
    return f"{value:.4g}" if "loss" in key else f"{value:.4f}"
