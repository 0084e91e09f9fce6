"""The CLI's audio hooks: `train --task audio` (the hooks of `cli/tasks.py`),
and the audio predictors that `predict`, `evaluate`, `export` and `benchmark`
use for audio models.

A model is an audio model when its ONNX metadata says `kind="audio"` or its
`.keras` file holds an `AudioClassifier`; the commands then read audio files
(`kerastransfer.audio.io`: soundfile + soxr) instead of images.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kerastransfer.cli._common import logger, onnx_kind

__all__ = [
    "KerasAudioPredictor",
    "onnx_is_audio",
    "open_audio_predictor",
    "open_predictor",
    "benchmark_inputs",
    "folder_clips",
    "sample_clips",
]


def onnx_is_audio(path: str) -> bool:
    """Whether an ONNX file's metadata (or sidecar) says `kind="audio"`
    (read without onnxruntime or TensorFlow)."""
    return onnx_kind(path) == "audio"


class KerasAudioPredictor:
    """Predicts with a `.keras` `AudioClassifier`; decodes files exactly as
    `AudioPredictor` (`runtime/audio.py`)."""

    kind = "audio"

    def __init__(self, model: Any):
        self.model = model
        self.class_names = list(model.class_names)
        self.sample_rate = model.sample_rate
        self.num_samples = model.num_samples
        self.input_shape = (model.num_samples,)
        self.skipped: list[tuple[str, str]] = []

    def predict(self, waveforms):
        return np.asarray(
            self.model.predict_on_batch(np.asarray(waveforms, dtype="float32"))
        )

    def predict_files(self, paths, top_k: int = 5) -> list[dict]:
        from kerastransfer.runtime.audio import predict_audio_files

        results, self.skipped = predict_audio_files(
            self.predict,
            list(paths),
            sample_rate=self.sample_rate,
            num_samples=self.num_samples,
            class_names=self.class_names,
            top_k=top_k,
        )
        return results


def open_predictor(model_path: str, keras_model: Any = None):
    """An `AudioPredictor` (.onnx) or `KerasAudioPredictor` (.keras), or None
    when the model is not an audio model."""
    if model_path.endswith(".onnx"):
        if not onnx_is_audio(model_path):
            return None
        from kerastransfer.runtime.audio import AudioPredictor

        predictor = AudioPredictor(model_path)
        predictor.kind = "audio"
        predictor.input_shape = (predictor.num_samples,)
        return predictor
    if keras_model is None or type(keras_model).__name__ != "AudioClassifier":
        return None
    return KerasAudioPredictor(keras_model)


open_audio_predictor = open_predictor  # the name predict/export use


def benchmark_inputs(predictor: Any, batch_size: int, seed: int):
    """`benchmark`'s input: `(waveforms, description)`, `batch_size` clips of
    uniform noise in [-1, 1] at the model's length."""
    shape = [batch_size, predictor.num_samples]
    waveforms = np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")
    return waveforms, f"{shape} float32"


def folder_clips(
    data_dir: str, sample_rate: int, num_samples: int, limit: int | None = None
):
    """`(waveforms, labels, class_names, skipped)` of `DATA_DIR/<class>/` audio
    files, centre-cropped (deterministic: for evaluation and validation)."""
    from kerastransfer.audio.io import fit_length
    from kerastransfer.data.audio import decode_clips, list_class_clips

    names, paths, labels, _ = list_class_clips(data_dir)
    if limit is not None and len(paths) > limit:
        pick = np.linspace(0, len(paths) - 1, limit).astype(int)
        paths, labels = [paths[i] for i in pick], [labels[i] for i in pick]
    clips, kept, skipped = decode_clips(paths, sample_rate, 2 * num_samples)
    waves = (
        np.stack([fit_length(c, num_samples) for c in clips])
        if clips
        else np.zeros((0, num_samples), "float32")
    )
    return waves, np.asarray([labels[i] for i in kept], "int64"), names, skipped


def sample_clips(folder: str, model: Any, limit: int = 32):
    """Up to `limit` clips of a class folder, for export validation."""
    waves, _, _, _ = folder_clips(folder, model.sample_rate, model.num_samples, limit)
    return waves if len(waves) else None


def export_sample(model_path: str, model: Any, validation_dir: str | None):
    """`export`'s validation clips: up to 32 of `--validation-dir`, else of the
    training folder recorded next to the model, else `(None, None)`."""
    from kerastransfer.cli.record import read_record

    folder = validation_dir or (read_record(model_path) or {}).get("data_dir")
    if folder and os.path.isdir(folder):
        return sample_clips(folder, model), folder
    return None, None


# --- train --task audio (hooks: cli/tasks.py) --------------------------------
def check(options: dict) -> None:
    from kerastransfer.cli.train import check_folder_and_weights

    check_folder_and_weights(options)


def load_data(options: dict):
    from kerastransfer.data.audio import load_audio_folder

    return load_audio_folder(
        options["data_dir"], sample_rate=options["sample_rate"],
        duration=options["duration"], validation_split=options["validation_split"],
        seed=options["seed"], batch_size=options["batch_size"],
        augmentation=options["augment"] or None)


def build_model(options: dict, data):
    from kerastransfer.tasks.audio import AudioClassifier

    return AudioClassifier(
        options["backbone"], class_names=data.class_names,
        sample_rate=options["sample_rate"], duration=options["duration"],
        weights=options["weights"], dropout=options["dropout"])


def fit_arguments(options: dict, data):
    return data, {"train_bn": options["train_bn"], "lr_decay": options["lr_decay"]}


def describe(options: dict, data, model, history) -> None:
    from kerastransfer.cli.train import report_classifier

    for path, reason in data.skipped:
        logger.warning("Skipped %s: %s", path, reason)
    report_classifier(
        options, model, history, validation=data.validation,
        num_validation=data.num_validation, unit="clips",
        record={"task": "audio", "sample_rate": options["sample_rate"],
                "duration": options["duration"], "backbone": model.backbone_name,
                "num_train": data.num_train,
                "skipped": [p for p, _ in data.skipped]})
