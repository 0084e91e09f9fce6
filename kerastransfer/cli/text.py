"""The CLI's text hooks: `train --task text` (the hooks of `cli/tasks.py`), and
the text predictors that `predict`, `evaluate` and `export` use for text models.

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

from kerastransfer.cli._common import echo_json, logger, onnx_kind

__all__ = ["KerasTextPredictor", "onnx_is_text", "open_text_predictor",
           "open_predictor", "read_texts", "predict_texts", "evaluate_texts",
           "sample_texts", "is_text_model"]

VALIDATION_TEXTS = 32  # texts `export` compares Keras and ONNX on


def onnx_is_text(path: str) -> bool:
    """Whether an ONNX file's metadata (or sidecar) says `kind="text"`
    (read without onnxruntime or TensorFlow)."""
    return onnx_kind(path) == "text"


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


def open_predictor(model_path: str, keras_model: Any = None):
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


open_text_predictor = open_predictor  # the name predict/export use


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


def export_sample(model_path: str, model: Any, validation_dir: str | None):
    """`export`'s validation texts: a sample of the training CSV (`sample_texts`)."""
    return sample_texts(model_path)


def benchmark_inputs(predictor: Any, batch_size: int, seed: int):
    """`benchmark`'s input: `(texts, description)`, `batch_size` texts of
    `sequence_length` random whole words of the tokenizer's vocabulary, so
    every text fills the sequence (the slowest case)."""
    vocabulary = predictor.tokenizer.get_vocab()
    words = sorted((w for w in vocabulary if w.isalpha() and w.isascii()),
                   key=vocabulary.get) or ["a"]
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(words, predictor.sequence_length))
             for _ in range(batch_size)]
    return texts, (f"{batch_size} texts of {predictor.sequence_length} random "
                   "vocabulary words")


def info_input(model: Any) -> dict:
    """`info`'s input entry for a `.keras` text model."""
    return {"name": "texts", "shape": [None], "dtype": "string",
            "range": f"tokenized to {model.sequence_length} int32 token ids "
                     "(token ids, segment ids, padding mask)"}


# --- train --task text (hooks: cli/tasks.py) ---------------------------------
def check(options: dict) -> None:
    """DATA_DIR is a CSV file, the backbone a KerasHub preset and --weights
    'pretrained' (or 'imagenet', its alias) or 'none'."""
    data_path, backbone = options["data_dir"], options["backbone"]
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
    choice = options["weights"].lower()
    if choice not in ("pretrained", "imagenet", "none"):
        raise click.BadParameter(
            "A text model takes --weights pretrained (the preset's) or none. "
            f"Received: {options['weights']!r}", param_hint="'--weights'")
    options["weights"] = choice


def load_data(options: dict):
    from kerastransfer.data.text import load_text_csv

    return load_text_csv(options["data_dir"], text_column=options["text_column"],
                         label_column=options["label_column"],
                         validation_split=options["validation_split"],
                         seed=options["seed"])


def build_model(options: dict, data):
    from kerastransfer.tasks.text import TextClassifier

    return TextClassifier(
        options["backbone"], sequence_length=options["sequence_length"],
        class_names=data.class_names, dropout=options["dropout"],
        weights=None if options["weights"] == "none" else "pretrained")


def fit_arguments(options: dict, data):
    return data, {"lr_decay": options["lr_decay"], "batch_size": options["batch_size"]}


def describe(options: dict, data, model, history) -> None:
    from kerastransfer.cli.train import report_classifier

    for row, reason in data.skipped:
        logger.warning("Skipped row %s: %s", row, reason)
    validation = data.validation
    num_validation = 0 if validation is None else len(validation[0])
    report_classifier(
        options, model, history, validation=validation,
        num_validation=num_validation, unit="texts",
        evaluate=lambda: model.evaluate(*validation, return_dict=True, verbose=0),
        record={"task": "text", "text_column": options["text_column"],
                "label_column": options["label_column"],
                "sequence_length": model.sequence_length,
                "backbone": options["backbone"], "weights": options["weights"],
                "num_train": len(data.train[0]),
                "skipped": [list(s) for s in data.skipped]})
