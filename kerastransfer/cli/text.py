"""The CLI's text hooks: `train --task text`, and the text predictors that
`predict`, `evaluate` and `export` use for text models.

A model is a text model when its ONNX metadata says `kind="text"` or its
`.keras` file holds a `TextClassifier`. Texts come from CSV files (a header
row; `--text-column`, and `--label-column` for training and evaluation) or, for
`predict`, from plain text files (one text per non-empty line). The `.onnx`
path runs `kerastransfer.runtime.TextPredictor` (tokenizers + onnxruntime, no
TensorFlow); the `.keras` path the `TextClassifier` itself.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from kerastransfer.cli._common import (
    echo_json,
    import_tensorflow_quietly,
    is_quiet,
    logger,
)

__all__ = ["KerasTextPredictor", "onnx_is_text", "open_text_predictor",
           "read_texts", "train_text", "predict_texts", "evaluate_texts",
           "sample_texts", "is_text_model"]

VALIDATION_TEXTS = 32  # texts `export` compares Keras and ONNX on


def onnx_is_text(path: str) -> bool:
    """Whether an ONNX file's metadata (or sidecar) says `kind="text"`
    (read without onnxruntime or TensorFlow)."""
    import onnx

    from kerastransfer.runtime.base import decode_metadata, read_sidecar

    proto = onnx.load(path, load_external_data=False)
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    if not meta:
        meta = read_sidecar(path) or {}
    return meta.get("kind") == "text"


def is_text_model(model: Any) -> bool:
    """Whether a loaded Keras model is a text task (its export contract)."""
    contract = getattr(model, "export_contract", None)
    return callable(contract) and contract().get("kind") == "text"


class KerasTextPredictor:
    """Predicts with a `.keras` `TextClassifier` (tokenized by its KerasHub
    preprocessor); the same interface as `TextPredictor`."""

    kind = "text"

    def __init__(self, model: Any):
        self.model = model
        self.class_names = list(model.class_names)
        self.sequence_length = model.sequence_length

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return np.asarray(self.model.predict(list(texts), batch_size=batch_size,
                                             verbose=0))


def open_text_predictor(model_path: str, keras_model: Any = None):
    """A `TextPredictor` (.onnx) or `KerasTextPredictor` (.keras), or None when
    the model is not a text model."""
    if model_path.endswith(".onnx"):
        if not onnx_is_text(model_path):
            return None
        from kerastransfer.runtime.text import TextPredictor

        predictor = TextPredictor(model_path)
        predictor.kind = "text"
        return predictor
    if keras_model is None or not is_text_model(keras_model):
        return None
    return KerasTextPredictor(keras_model)


def read_texts(paths: Sequence[str], text_column: str = "text") -> list[str]:
    """Texts of `.csv` files (`text_column`) and plain text files (one per
    non-empty line), in order; folders are searched for `.csv`/`.txt` files.

    Raises:
        click.BadParameter: a CSV file has no such column, or nothing was read.
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, f) for f in os.listdir(path)
                            if f.lower().endswith((".csv", ".txt")))
        else:
            files.append(path)
    texts: list[str] = []
    for path in files:
        with open(path, encoding="utf-8", newline="") as handle:
            if path.lower().endswith(".csv"):
                reader = csv.DictReader(handle)
                if text_column not in (reader.fieldnames or []):
                    raise click.BadParameter(
                        f"The CSV file has no {text_column!r} column. Pass "
                        f"--text-column (its columns: {reader.fieldnames}). "
                        f"Received: {path}", param_hint="'--text-column'")
                texts += [row[text_column] for row in reader
                          if (row[text_column] or "").strip()]
            else:
                texts += [line.rstrip("\r\n") for line in handle if line.strip()]
    if not texts:
        raise click.BadParameter(
            "No text found (a .csv file's --text-column, or the non-empty lines of "
            f"a text file). Received: {' '.join(paths)}", param_hint="'INPUTS'")
    return texts


def predict_texts(predictor: Any, inputs: Sequence[str], *, text_column: str,
                  top_k: int, batch_size: int, as_json: bool) -> None:
    """`kerastransfer predict` on a text model: top-k classes per text."""
    texts = read_texts(inputs, text_column)
    probabilities = np.concatenate([
        predictor.predict(texts[i:i + batch_size])
        for i in range(0, len(texts), batch_size)])
    from kerastransfer.runtime.files import rank_classes

    top_k = min(top_k, len(predictor.class_names))
    ranked = [rank_classes(row, predictor.class_names, top_k) for row in probabilities]
    if as_json:
        echo_json([
            {"text": text,
             "top_k": [{"class_name": c, "probability": p} for _, c, p in ranks],
             "probabilities": dict(zip(predictor.class_names,
                                       (float(v) for v in row), strict=True))}
            for text, ranks, row in zip(texts, ranked, probabilities, strict=True)])
        return
    for text, ranks in zip(texts, ranked, strict=True):
        shown = text if len(text) <= 60 else text[:57] + "..."
        click.echo(f"{shown}: " + ", ".join(f"{c} {p:.3f}" for _, c, p in ranks))


def evaluate_texts(predictor: Any, csv_path: str, *, text_column: str,
                   label_column: str, batch_size: int):
    """`(y_true, y_pred)` in the model's class indices for a labelled CSV.

    Raises:
        DataError: the file has labels the model does not know (or no rows).
    """
    from kerastransfer.data.text import load_text_csv
    from kerastransfer.errors import DataError

    if not os.path.isfile(csv_path):
        raise click.BadParameter(f"A text model is evaluated on a CSV file. "
                                 f"Received: {csv_path!r}", param_hint="'DATA'")
    data = load_text_csv(csv_path, text_column=text_column, label_column=label_column)
    names = list(predictor.class_names)
    unknown = [c for c in data.class_names if c not in names]
    if unknown:
        raise DataError(
            f"The file has classes the model does not know: {unknown}. The "
            f"model's classes are {names}. Received: data={csv_path!r}")
    texts, labels = data.train
    to_model = np.array([names.index(c) for c in data.class_names])
    y_pred = np.concatenate([
        predictor.predict(texts[i:i + batch_size]).argmax(-1)
        for i in range(0, len(texts), batch_size)])
    return to_model[np.asarray(labels, int)], y_pred


def sample_texts(model_path: str, limit: int = VALIDATION_TEXTS):
    """`(texts, description)`: up to `limit` texts of the training CSV in the
    model's training record (evenly spaced), else `(None, None)`."""
    from kerastransfer.cli.record import read_record, record_path

    record = read_record(model_path) or {}
    path = record.get("data_dir")
    if not path or not os.path.isfile(path):
        return None, None
    texts = read_texts([path], record.get("text_column", "text"))
    pick = np.unique(np.linspace(0, len(texts) - 1, min(limit, len(texts))).astype(int))
    return ([texts[i] for i in pick],
            f"{path} (the training file in {record_path(model_path)})")


def train_text(*, data_path, backbone, weights, batch_size, epochs, fine_tune_epochs,
               learning_rate, fine_tune_lr, unfreeze, lr_decay, dropout,
               validation_split, seed, out, plots, checkpoint_dir, text_column,
               label_column, sequence_length):
    """`kerastransfer train --task text`: a `TextClassifier` on a CSV file;
    saves it and its training record (with the saved model's metrics)."""
    if not os.path.isfile(data_path) or not data_path.lower().endswith(".csv"):
        raise click.BadParameter(
            "--task text trains on a CSV file with a header row. "
            f"Received: {data_path!r}", param_hint="'DATA'")
    if not backbone.startswith("kerashub:"):
        raise click.BadParameter(
            "A text backbone is a KerasHub preset, 'kerashub:<preset>' (e.g. "
            "kerashub:bert_tiny_en_uncased), or a local preset folder, "
            f"'kerashub:/path/to/preset'. Received: {backbone!r}",
            param_hint="'--backbone'")
    choice = weights.lower()
    if choice not in ("pretrained", "imagenet", "none"):
        raise click.BadParameter(
            "A text model takes --weights pretrained (the preset's) or none. "
            f"Received: {weights!r}", param_hint="'--weights'")
    import_tensorflow_quietly()
    import keras

    from kerastransfer.cli.record import write_record
    from kerastransfer.cli.train import _format_metric, cli_wording
    from kerastransfer.data.text import load_text_csv
    from kerastransfer.errors import WeightsError
    from kerastransfer.tasks.text import TextClassifier

    keras.utils.set_random_seed(seed)
    data = load_text_csv(data_path, text_column=text_column, label_column=label_column,
                         validation_split=validation_split, seed=seed)
    try:
        model = TextClassifier(backbone, sequence_length=sequence_length,
                               class_names=data.class_names, dropout=dropout,
                               weights=None if choice == "none" else "pretrained")
    except WeightsError as error:
        raise WeightsError(cli_wording(str(error))) from error
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    history = model.fit(
        data, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate, fine_tune_lr=fine_tune_lr, unfreeze=unfreeze,
        lr_decay=lr_decay, batch_size=batch_size, checkpoint_dir=checkpoint_dir,
        report_dir=plots, verbose=0 if is_quiet() else 2)
    model.save(out)
    if data.validation is not None and len(data.validation[0]):
        values = model.evaluate(*data.validation, return_dict=True, verbose=0)
        metrics = {f"val_{key}": float(value) for key, value in values.items()}
        source = (f"the saved model on the validation split, "
                  f"{len(data.validation[0])} texts")
    else:
        metrics = {key: float(values[-1]) for key, values in history.history.items()
                   if values and not key.startswith("val_")}
        source = "no validation split: training metrics averaged over the last epoch"
    record = {"task": "text", "model": os.path.abspath(out),
              "data_dir": os.path.abspath(data_path), "text_column": text_column,
              "label_column": label_column, "sequence_length": model.sequence_length,
              "validation_split": validation_split, "seed": seed,
              "backbone": backbone, "weights": choice,
              "class_names": list(data.class_names),
              "num_train": len(data.train[0]),
              "num_validation": 0 if data.validation is None
              else len(data.validation[0]),
              "skipped": [list(s) for s in data.skipped], "metrics": metrics,
              "metrics_source": source}
    record_file = write_record(out, record)
    for row, reason in data.skipped:
        logger.warning("Skipped row %s: %s", row, reason)
    click.echo(f"Saved {out} (training record: {record_file})")
    if metrics:
        click.echo(f"Final ({source}): " + ", ".join(
            f"{k}={_format_metric(k, v)}" for k, v in metrics.items()))
