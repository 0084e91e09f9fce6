"""`kerastransfer evaluate`: accuracy, per-class metrics and the confusion
matrix of a .keras or .onnx model on a class-folder of images."""

from __future__ import annotations

import os

import click

from kerastransfer.cli._common import echo_json, import_tensorflow_quietly
from kerastransfer.cli.predict import open_predictor


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("data_dir", metavar="DATA", type=click.Path(exists=True))
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              show_default=True)
@click.option("--text-column", default="text", show_default=True,
              help="Text models: the CSV column holding the text.")
@click.option("--label-column", default="label", show_default=True,
              help="Text models: the CSV column holding the label.")
@click.option("--tta", is_flag=True,
              help="Image models: average the predictions on each image and its "
                   "horizontal and vertical flips.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=1000,
              show_default=True,
              help="2-class image models: resamples of the confidence intervals.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(model_path, data_dir, batch_size, text_column, label_column, tta,
             bootstrap, as_json):
    """Evaluate MODEL (.keras or .onnx) on DATA_DIR/<class>/ images.

    Prints accuracy, per-class precision/recall/F1 and the confusion matrix
    (rows: true class, columns: predicted class). The folder's class names must
    be among the model's. A 2-class image model also gets the clinical metrics:
    ROC AUC and PR AUC, sensitivity and specificity at the model's decision
    threshold (0.5, i.e. argmax, when it has none), each with a 95% bootstrap
    interval, and the expected calibration error.

    \b
    Examples:
      kerastransfer evaluate model.keras data/test/
      kerastransfer evaluate model.onnx data/test/ --json
      kerastransfer evaluate xray.keras scans/ --tta
      kerastransfer evaluate text.onnx test.csv --text-column review

    A text model (docs/text.md) is evaluated on a labelled CSV file.
    """
    from types import SimpleNamespace

    import numpy as np

    predictor = open_predictor(model_path)
    if getattr(predictor, "kind", "image") == "text":  # DATA is a labelled CSV
        from kerastransfer.cli.text import evaluate_texts

        y_true, y_pred = evaluate_texts(
            predictor, data_dir, text_column=text_column, label_column=label_column,
            batch_size=batch_size)
        return _print_metrics(list(predictor.class_names), [y_true], [y_pred],
                              as_json, "Texts")
    if getattr(predictor, "kind", "image") == "segmentation":  # images/ + masks/
        from kerastransfer.cli.segmentation import evaluate_segmentation

        return evaluate_segmentation(predictor, data_dir, batch_size, as_json)
    if not os.path.isdir(data_dir):
        raise click.BadParameter(f"Expected a folder of class subfolders. "
                                 f"Received: {data_dir!r}", param_hint="'DATA'")
    import_tensorflow_quietly()  # the folder is read with tf.data
    from kerastransfer.data import load_image_folder
    from kerastransfer.errors import DataError

    if getattr(predictor, "kind", "image") == "audio":  # DATA_DIR/<class>/*.wav
        from kerastransfer.cli.audio import folder_clips

        waves, labels, folder_names, _ = folder_clips(
            data_dir, predictor.sample_rate, predictor.num_samples)
        data = SimpleNamespace(class_names=folder_names, train=[
            (waves[i:i + batch_size], labels[i:i + batch_size])
            for i in range(0, len(waves), batch_size)])
    else:
        height, width = predictor.input_shape[:2]
        data = load_image_folder(data_dir, image_size=(height, width),
                                 batch_size=batch_size, validation_split=0.0,
                                 shuffle=False, channels=predictor.input_shape[-1] or 3)
    names = list(predictor.class_names)
    unknown = [c for c in data.class_names if c not in names]
    if unknown:
        raise DataError(
            f"The folder has classes the model does not know: {unknown}. The "
            f"model's classes are {names}. Received: data_dir={data_dir!r}"
        )
    to_model = np.array([names.index(c) for c in data.class_names])
    y_true, scores = [], []
    for images, labels in data.train:
        images = np.asarray(images, dtype="float32")
        if tta:
            from kerastransfer.runtime.postprocess import tta_views

            scores.append(np.mean([predictor.predict(v) for v in tta_views(images)],
                                  axis=0))
        else:
            scores.append(np.asarray(predictor.predict(images)))
        y_true.append(to_model[np.asarray(labels).astype(int)])
    clinical = None
    threshold = getattr(predictor, "threshold",
                        getattr(getattr(predictor, "model", None), "threshold", None))
    if len(names) == 2 and getattr(predictor, "task", "multiclass") == "multiclass":
        from kerastransfer.report.clinical import clinical_report

        clinical = clinical_report(np.concatenate(y_true), np.concatenate(scores),
                                   threshold=0.5 if threshold is None else threshold,
                                   n_resamples=bootstrap)
        clinical["threshold_source"] = ("the model" if threshold is not None
                                        else "default: argmax")
    y_pred = [np.argmax(s, axis=-1) if threshold is None else
              (s[:, 1] >= threshold).astype(int) for s in scores]
    _print_metrics(names, y_true, y_pred, as_json, "Images", clinical)


def _print_metrics(names, y_true, y_pred, as_json, unit, clinical=None):
    import numpy as np

    from kerastransfer.report import (
        classification_metrics,
        format_classification_report,
    )

    metrics = classification_metrics(np.concatenate(y_true), np.concatenate(y_pred),
                                     names)
    if clinical is not None:
        metrics["clinical"] = clinical
    if as_json:
        echo_json(metrics)
        return
    click.echo(f"{unit}: {metrics['num_samples']}  accuracy: {metrics['accuracy']:.4f}")
    click.echo(format_classification_report(metrics).rstrip())
    click.echo("Confusion matrix (rows: true class, columns: predicted class):")
    width = max(len(n) for n in names)
    cell = max([3] + [len(n) for n in names] +
               [len(str(v)) for row in metrics["confusion_matrix"] for v in row])
    click.echo(" " * (width + 2) + " ".join(n.rjust(cell) for n in names))
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        click.echo(f"{name.ljust(width)}  " + " ".join(str(v).rjust(cell) for v in row))
    if clinical is not None:
        click.echo(_format_clinical(clinical, names[1]))


def _format_clinical(c, positive):
    """The clinical metrics of a 2-class model, one per line, with 95% CIs."""
    lines = [f"Clinical metrics (positive class: {positive}; 95% bootstrap CIs):",
             f"  threshold    {c['threshold']:.4f} ({c['threshold_source']})"]
    for key in ("roc_auc", "pr_auc", "sensitivity", "specificity"):
        low, high = c[f"{key}_ci"]
        lines.append(f"  {key:<12} {c[key]:.4f} [{low:.4f}, {high:.4f}]")
    lines.append(f"  ECE          {c['calibration']['ece']:.4f}")
    return "\n".join(lines)
