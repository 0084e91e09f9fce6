"""`kerastransfer evaluate`: accuracy, per-class metrics and the confusion
matrix of a .keras or .onnx model on a class-folder of images; the clinical
metrics (`kerastransfer.report.clinical`) of 2-class and multilabel image models
(a multilabel model is evaluated on a CSV list of images and their labels)."""

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
@click.option("--path-column", default="path", show_default=True,
              help="Multilabel image models: the CSV column holding the image "
                   "paths (relative to the CSV's folder).")
@click.option("--bootstrap", type=click.IntRange(min=10), default=1000,
              show_default=True,
              help="2-class and multilabel image models: resamples of the "
                   "confidence intervals.")
@click.option("--format", "data_format", type=click.Choice(["coco", "voc", "yolo"]),
              default="coco", show_default=True,
              help="Detection models: the annotation format of DATA.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(model_path, data_dir, batch_size, text_column, label_column, tta,
             path_column, bootstrap, data_format, as_json):
    """Evaluate MODEL (.keras or .onnx) on DATA_DIR/<class>/ images.

    Prints accuracy, per-class precision/recall/F1 and the confusion matrix
    (rows: true class, columns: predicted class). The folder's class names must
    be among the model's. A model of more than 2 classes also gets each class's
    one-vs-rest ROC AUC and PR AUC and their macro averages. A 2-class image
    model gets the clinical metrics:
    ROC AUC and PR AUC, sensitivity and specificity at the model's decision
    threshold (0.5, i.e. argmax, when it has none), each with a 95% bootstrap
    interval, and the expected calibration error.

    A multilabel image model is evaluated on a CSV file: a --path-column and
    either one 0/1 column per class or a --label-column of '|'-separated class
    names (empty: no finding). It gets, per class and macro, ROC AUC and PR AUC,
    sensitivity and specificity at the model's threshold (0.5 when it has
    none), each with a 95% bootstrap interval, the expected calibration error,
    and the exact-match accuracy of the decisions.

    \b
    Examples:
      kerastransfer evaluate model.keras data/test/
      kerastransfer evaluate model.onnx data/test/ --json
      kerastransfer evaluate xray.keras scans/ --tta
      kerastransfer evaluate chest.onnx findings.csv --label-column findings
      kerastransfer evaluate text.onnx test.csv --text-column review

    A text model (docs/text.md) is evaluated on a labelled CSV file. A
    detection model (docs/detection.md) is evaluated on a COCO JSON file, a VOC
    or a YOLO folder (--format): COCO mAP@[.5:.95], mAP@.5, mAP@.75 and each
    class's AP (pycocotools).
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
    if getattr(predictor, "kind", "image") == "detection":  # COCO/VOC/YOLO boxes
        from kerastransfer.cli.detection import evaluate_detections

        evaluate_detections(predictor, data_dir, data_format, batch_size, as_json)
        return None
    if getattr(predictor, "kind", "image") == "segmentation":  # images/ + masks/
        from kerastransfer.cli.segmentation import evaluate_segmentation

        return evaluate_segmentation(predictor, data_dir, batch_size, as_json)
    task = getattr(predictor, "task", None) or getattr(
        getattr(predictor, "model", None), "task", "multiclass")
    if task == "multilabel":  # DATA is a CSV of paths and label sets
        return _evaluate_multilabel(predictor, data_dir, path_column, label_column,
                                    batch_size, tta, bootstrap, as_json)
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
        scores.append(_predict(predictor, images, tta))
        y_true.append(to_model[np.asarray(labels).astype(int)])
    clinical = None
    threshold = _threshold(predictor)
    if len(names) == 2 and task == "multiclass":
        from kerastransfer.report.clinical import clinical_report

        clinical = clinical_report(np.concatenate(y_true), np.concatenate(scores),
                                   threshold=0.5 if threshold is None else threshold,
                                   n_resamples=bootstrap)
        clinical["threshold_source"] = ("the model" if threshold is not None
                                        else "default: argmax")
    elif len(names) > 2 and task == "multiclass":  # one-vs-rest AUCs, macro
        from kerastransfer.report.clinical import auc_scores

        auc = auc_scores(np.concatenate(y_true), np.concatenate(scores), names)
        clinical = {key: {name: None if np.isnan(v) else v for name, v in
                          values.items()} for key, values in auc.items()}
    y_pred = [np.argmax(s, axis=-1) if threshold is None else
              (s[:, 1] >= threshold).astype(int) for s in scores]
    _print_metrics(names, y_true, y_pred, as_json, "Images", clinical)


def _predict(predictor, images, tta):
    """Probabilities of a batch; with `tta`, averaged over the flips."""
    import numpy as np

    images = np.asarray(images, dtype="float32")
    if not tta:
        return np.asarray(predictor.predict(images))
    from kerastransfer.runtime.postprocess import tta_views

    return np.mean([predictor.predict(v) for v in tta_views(images)], axis=0)


def _threshold(predictor):
    """The decision threshold stored in the model (`.onnx` metadata or `.keras`)."""
    return getattr(predictor, "threshold",
                   getattr(getattr(predictor, "model", None), "threshold", None))


def read_multilabel_list(csv_path, class_names, path_column="path",
                         label_column="label"):
    """Reads a multilabel image list: paths and 0/1 rows in the model's order.

    Args:
        csv_path: a CSV file with a header row.
        class_names: the model's classes.
        path_column: the column of image paths (relative to the CSV's folder).
        label_column: used when the CSV has no column per class: class names
            separated by '|' (an empty cell: no class).

    Returns:
        `(paths, labels)`: full paths and int `(n, classes)` rows.

    Raises:
        click.BadParameter: not a CSV file, a missing column, a value that is
            not 0/1, or an unknown class name.
    """
    import csv

    import numpy as np

    hint = "'DATA'"
    if os.path.isdir(csv_path) or not str(csv_path).lower().endswith(".csv"):
        raise click.BadParameter(
            "A multilabel model is evaluated on a CSV file: a path column and one "
            "0/1 column per class, or a column of '|'-separated class names. "
            f"Received: {csv_path!r}", param_hint=hint)
    with open(csv_path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = list(rows[0]) if rows else []
    per_column = all(name in columns for name in class_names)
    needed = [path_column] + ([] if per_column else [label_column])
    missing = [c for c in needed if c not in columns]
    if not rows or missing:
        raise click.BadParameter(
            f"The CSV needs the columns {needed} (or one 0/1 column per class "
            f"{list(class_names)}). Received: columns={columns}, rows={len(rows)}",
            param_hint=hint)
    base = os.path.dirname(os.path.abspath(csv_path))
    paths = [os.path.join(base, row[path_column]) for row in rows]
    labels = np.zeros((len(rows), len(class_names)), dtype=int)
    for i, row in enumerate(rows):
        if per_column:
            for k, name in enumerate(class_names):
                value = str(row[name]).strip()
                if value not in ("0", "1", "0.0", "1.0"):
                    raise click.BadParameter(
                        f"Class columns must hold 0 or 1. Received: row {i + 2}, "
                        f"{name}={row[name]!r}", param_hint=hint)
                labels[i, k] = int(float(value))
            continue
        for name in filter(None, (n.strip() for n in (row[label_column] or "")
                                  .split("|"))):
            if name not in class_names:
                raise click.BadParameter(
                    f"Unknown class {name!r}; the model's classes are "
                    f"{list(class_names)}. Received: row {i + 2}, "
                    f"{label_column}={row[label_column]!r}", param_hint=hint)
            labels[i, list(class_names).index(name)] = 1
    return paths, labels


def _evaluate_multilabel(predictor, csv_path, path_column, label_column, batch_size,
                         tta, bootstrap, as_json):
    """Clinical metrics of a multilabel image model on a CSV list (TF-free for
    a .onnx model: files decode as in `OnnxPredictor.predict_files`)."""
    import numpy as np
    from sklearn.metrics import accuracy_score

    from kerastransfer.report.clinical import multilabel_clinical_report
    from kerastransfer.runtime.files import decode_images
    from kerastransfer.runtime.postprocess import decide

    names = list(predictor.class_names)
    paths, labels = read_multilabel_list(csv_path, names, path_column, label_column)
    shape = tuple(predictor.input_shape)
    kept, scores, skipped = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images, failed = decode_images(chunk, shape[:2], channels=shape[-1] or 3)
        bad = {p for p, _ in failed}
        skipped.extend(failed)
        kept.extend(start + i for i, p in enumerate(chunk) if p not in bad)
        if len(images):
            scores.append(_predict(predictor, images, tta))
    for path, reason in skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    if not kept:
        raise click.ClickException(f"None of the {len(paths)} listed images could be "
                                   f"read. Received: {csv_path!r}")
    y, p = labels[kept], np.concatenate(scores)
    threshold = _threshold(predictor)
    clinical = multilabel_clinical_report(y, p, names, threshold=threshold,
                                          n_resamples=bootstrap)
    decided = decide(p, "multilabel", threshold)
    result = {"task": "multilabel", "num_samples": len(y),
              "exact_match": float(accuracy_score(y, decided)),
              "skipped": len(skipped), "clinical": clinical}
    if as_json:
        return echo_json(result)
    click.echo(f"Images: {len(y)}  exact-match accuracy: {result['exact_match']:.4f}"
               f"  (thresholds: {clinical['threshold_source']})")
    click.echo(_format_multilabel(clinical))


def _format_multilabel(c):
    """Per-class and macro clinical metrics, one row each, with 95% CIs."""
    def cell(entry, key):
        if entry.get(key) is None:
            return "n/a (one class only)".ljust(22)
        low, high = entry.get(f"{key}_ci", (float("nan"),) * 2)
        return f"{entry[key]:.3f} [{low:.3f}, {high:.3f}]".ljust(22)

    keys = ("roc_auc", "pr_auc", "sensitivity", "specificity")
    width = max([5] + [len(n) for n in c["per_class"]])
    lines = ["Clinical metrics (95% bootstrap CIs):",
             f"{'class'.ljust(width)}  thresh  " + "".join(k.ljust(22) for k in keys)
             + "ECE"]
    for name, entry in c["per_class"].items():
        ece = entry.get("calibration", {}).get("ece")
        lines.append(f"{name.ljust(width)}  {entry['threshold']:.3f}   "
                     + "".join(cell(entry, k) for k in keys)
                     + ("n/a" if ece is None else f"{ece:.4f}"))
    macro = c["macro"]
    if "roc_auc" in macro:
        lines.append(f"{'macro'.ljust(width)}          "
                     + cell(macro, "roc_auc") + cell(macro, "pr_auc")
                     + f"{macro['sensitivity']:.3f}".ljust(22)
                     + f"{macro['specificity']:.3f}".ljust(22) + f"{macro['ece']:.4f}")
    return "\n".join(lines)


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
    if clinical is not None and "threshold" in clinical:
        click.echo(_format_clinical(clinical, names[1]))
    elif clinical is not None:  # one-vs-rest AUCs of a multiclass model
        click.echo("One-vs-rest AUCs (n/a: the class has no images here):")
        for name in [*names, "macro"]:
            cells = [clinical[key][name] for key in ("roc_auc", "pr_auc")]
            click.echo(f"  {name.ljust(width)}  " + "  ".join(
                f"{key} {'n/a' if v is None else f'{v:.4f}'}"
                for key, v in zip(("ROC AUC", "PR AUC"), cells, strict=True)))


def _format_clinical(c, positive):
    """The clinical metrics of a 2-class model, one per line, with 95% CIs."""
    lines = [f"Clinical metrics (positive class: {positive}; 95% bootstrap CIs):",
             f"  threshold    {c['threshold']:.4f} ({c['threshold_source']})"]
    for key in ("roc_auc", "pr_auc", "sensitivity", "specificity"):
        low, high = c[f"{key}_ci"]
        lines.append(f"  {key:<12} {c[key]:.4f} [{low:.4f}, {high:.4f}]")
    lines.append(f"  ECE          {c['calibration']['ece']:.4f}")
    return "\n".join(lines)
