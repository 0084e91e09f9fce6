"""`kerastransfer train`: a `TransferModel` trained on a folder of class
subfolders and saved as `.keras`."""

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
    one_line,
)
from kerastransfer.cli.record import write_record


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
@click.option("--task", type=click.Choice(["image", "audio", "text", "segmentation"]),
              default="image", show_default=True,
              help="image: DATA_DIR/<class>/*.jpg; audio: DATA_DIR/<class>/*.wav "
                   "(an AudioClassifier, see docs/audio.md); text: DATA_DIR is a "
                   "CSV file (a TextClassifier, see docs/text.md); segmentation: "
                   "DATA_DIR/images/x.jpg + DATA_DIR/masks/x.png (a "
                   "SegmentationModel, see docs/segmentation.md).")
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
@click.option("--strict", is_flag=True,
              help="Fail on unreadable images instead of skipping them.")
@click.option("--channels", type=click.IntRange(min=1), default=None,
              help="Image channels of the model (1: grayscale, e.g. X-ray/CT; "
                   "C > 3: multi-channel NIfTI/TIFF). Default: the backbone's (3).")
@click.option("--window", default=None,
              help="Intensity window stored in the model: a preset (lung, brain, "
                   "bone, soft_tissue, ...) or CENTER,WIDTH (docs/medical.md).")
def train(data_dir, backbone, weights, image_size, batch_size, epochs,
          fine_tune_epochs, learning_rate, fine_tune_lr, unfreeze, train_bn,
          lr_decay, dropout, validation_split, seed, out, plots, checkpoint_dir,
          task, text_column, label_column, sequence_length, sample_rate, duration,
          augment, strict, channels, window):
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
    """
    import_tensorflow_quietly()
    from kerastransfer.errors import InputShapeError, UnknownBackboneError

    out = check_out_path(out, ".keras", "'--out'")
    if task == "text":  # kerastransfer/cli/text.py
        from kerastransfer.cli.text import train_text

        return train_text(
            data_path=data_dir, backbone=backbone, weights=weights,
            batch_size=batch_size, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
            learning_rate=learning_rate, fine_tune_lr=fine_tune_lr,
            unfreeze=unfreeze, lr_decay=lr_decay, dropout=dropout,
            validation_split=validation_split, seed=seed, out=out, plots=plots,
            checkpoint_dir=checkpoint_dir, text_column=text_column,
            label_column=label_column, sequence_length=sequence_length)
    if not os.path.isdir(data_dir):
        raise click.BadParameter(
            f"Expected a folder of class subfolders (a CSV file needs --task text). "
            f"Received: {data_dir!r}", param_hint="'DATA_DIR'")
    weights = _parse_weights(weights)
    if task == "segmentation":  # kerastransfer/cli/segmentation.py
        from kerastransfer.cli.segmentation import train_segmentation

        return train_segmentation(
            data_dir=data_dir, backbone=backbone, weights=weights,
            image_size=image_size, batch_size=batch_size, epochs=epochs,
            fine_tune_epochs=fine_tune_epochs, learning_rate=learning_rate,
            fine_tune_lr=fine_tune_lr, unfreeze=unfreeze, train_bn=train_bn,
            lr_decay=lr_decay, validation_split=validation_split, seed=seed,
            out=out, plots=plots, checkpoint_dir=checkpoint_dir, strict=strict,
            augment=augment)
    if task == "audio":  # kerastransfer/cli/audio.py
        from kerastransfer.cli.audio import train_audio

        return train_audio(
            data_dir=data_dir, backbone=backbone, weights=weights,
            batch_size=batch_size, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
            learning_rate=learning_rate, fine_tune_lr=fine_tune_lr,
            unfreeze=unfreeze, train_bn=train_bn, lr_decay=lr_decay,
            dropout=dropout, validation_split=validation_split, seed=seed, out=out,
            plots=plots, checkpoint_dir=checkpoint_dir, sample_rate=sample_rate,
            duration=duration, augment=augment)
    # Check every option before reading any image or building any model.
    from kerastransfer.backbones.registry import get_backbone

    try:
        spec = get_backbone(backbone)
    except UnknownBackboneError as error:
        raise click.BadParameter(one_line(error), param_hint="'--backbone'") from None
    if image_size is None:
        if spec.default_size is None:
            raise click.BadParameter(
                f"Backbone {spec.name!r} has no default size; pass one.",
                param_hint="'--image-size'",
            )
        image_size = (spec.default_size, spec.default_size)
    channels = channels or spec.channels
    if window is not None:  # a preset name, or "center,width"
        from kerastransfer.runtime.preprocess import resolve_window

        try:
            window = resolve_window(window if "," not in window else window.split(","))
        except ValueError as error:
            raise click.BadParameter(one_line(error), param_hint="'--window'") from None
    try:
        spec.resolve_input_shape((*image_size, spec.channels))
    except InputShapeError as error:
        raise click.BadParameter(one_line(error),
                                 param_hint="'--image-size'") from None
    from kerastransfer.training.phases import Unfreeze

    try:
        Unfreeze.parse(unfreeze)
    except ValueError as error:
        raise click.BadParameter(one_line(error), param_hint="'--unfreeze'") from None

    import keras

    from kerastransfer.data import load_image_folder
    from kerastransfer.tasks.classifier import TransferModel

    keras.utils.set_random_seed(seed)
    data = load_image_folder(
        data_dir, image_size=image_size, batch_size=batch_size,
        validation_split=validation_split, seed=seed, shuffle=True, strict=strict,
        channels=channels,
    )
    model = _build_model(TransferModel, spec.name, weights,
                         (*image_size, channels), data.class_names, dropout,
                         window=window)
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    history = model.fit(
        data.train, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate, fine_tune_lr=fine_tune_lr, unfreeze=unfreeze,
        train_bn=train_bn, lr_decay=lr_decay, validation_data=data.validation,
        checkpoint_dir=checkpoint_dir, report_dir=plots,
        verbose=0 if is_quiet() else 2,
    )
    model.save(out)
    for phase in history.phases:
        logger.info("Phase %s: epochs %d-%d", phase["name"], phase["start_epoch"] + 1,
                    phase["end_epoch"])
    metrics, source = _final_metrics(model, data, history)
    record = {
        "model": os.path.abspath(out),
        "data_dir": os.path.abspath(data_dir),
        "image_size": list(image_size),
        "validation_split": validation_split,
        "seed": seed,
        "backbone": spec.name,
        "weights": weights if weights in (None, "imagenet") else os.path.abspath(
            weights),
        "class_names": list(data.class_names),
        "num_train": data.num_train,
        "num_validation": data.num_validation,
        "metrics": metrics,
        "metrics_source": source,
    }
    record_file = write_record(out, record)
    click.echo(f"Saved {out} (training record: {record_file})")
    if metrics:
        click.echo(f"Final ({source}): " + ", ".join(
            f"{key}={_format_metric(key, value)}" for key, value in metrics.items()))
    if plots is not None:
        click.echo(f"Wrote the report (learning curves, confusion matrix, "
                   f"metrics.json) to {plots}")


def _build_model(model_class, name, weights, input_shape, class_names, dropout,
                 **options):
    """The `TransferModel`; the offline ImageNet error speaks in CLI options."""
    from kerastransfer.errors import WeightsError

    try:
        return model_class(name, weights=weights, input_shape=input_shape,
                           class_names=class_names, dropout=dropout, **options)
    except WeightsError as error:
        raise WeightsError(cli_wording(str(error))) from error


def cli_wording(message: str) -> str:
    """Rewrites the Python API's `weights=...` spellings in a library message as
    the `--weights` option: `weights=None` -> `--weights none`,
    `weights='x'` -> `--weights x`."""
    message = re.sub(r"\bweights=None\b", "--weights none", message)
    return re.sub(r"\bweights='([^']*)'", r"--weights \1", message)


def _final_metrics(model, data, history) -> tuple[dict[str, float], str]:
    """The metrics that describe the saved model, and where they come from.

    The last epoch's `val_*` values are measured before the end of the phase
    (BatchNorm statistics may still be recomputed afterwards), so the saved
    model is evaluated on the validation split once more. Without a validation
    split, the last epoch's training metrics (averaged over that epoch) are all
    there is, and the label says so.
    """
    if data.validation is not None and data.num_validation:
        values = model.evaluate(data.validation, return_dict=True, verbose=0)
        metrics = {f"val_{key}": float(value) for key, value in values.items()}
        return metrics, (f"the saved model on the validation split, "
                         f"{data.num_validation} images")
    metrics = {key: float(values[-1]) for key, values in history.history.items()
               if values and values[-1] is not None and not key.startswith("val_")}
    return metrics, "no validation split: training metrics averaged over the last epoch"


def _format_metric(key: str, value: float) -> str:
    """Losses with 4 significant digits (they get small), rates with 4 decimals."""
    return f"{value:.4g}" if "loss" in key else f"{value:.4f}"
