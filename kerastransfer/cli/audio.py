"""The CLI's audio hooks: `train --task audio`, and the audio predictors that
`predict`, `evaluate`, `export` and `benchmark` use for audio models.

A model is an audio model when its ONNX metadata says `kind="audio"` or its
`.keras` file holds an `AudioClassifier`; the commands then read audio files
(`kerastransfer.audio.io`: soundfile + soxr) instead of images.
"""

from __future__ import annotations

import os
from typing import Any

import click
import numpy as np

from kerastransfer.cli._common import import_tensorflow_quietly, is_quiet, logger

__all__ = [
    "KerasAudioPredictor",
    "onnx_is_audio",
    "open_audio_predictor",
    "train_audio",
    "folder_clips",
    "sample_clips",
]


def onnx_is_audio(path: str) -> bool:
    """Whether an ONNX file's metadata (or sidecar) says `kind="audio"`
    (read without onnxruntime or TensorFlow)."""
    import onnx

    from kerastransfer.runtime.base import decode_metadata, read_sidecar

    proto = onnx.load(path, load_external_data=False)
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    if not meta:
        meta = read_sidecar(path) or {}
    return meta.get("kind") == "audio"


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


def open_audio_predictor(model_path: str, keras_model: Any = None):
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


def folder_clips(
    data_dir: str, sample_rate: int, num_samples: int, limit: int | None = None
):
    """`(waveforms, labels, class_names, skipped)` of `DATA_DIR/<class>/` audio
    files, centre-cropped (deterministic: for evaluation and validation)."""
    from kerastransfer.audio.io import fit_length
    from kerastransfer.data.audio import decode_clips
    from kerastransfer.runtime.audio import list_audio_files

    names = sorted(
        d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d))
    )
    paths, labels = [], []
    for label, name in enumerate(names):
        found = list_audio_files(os.path.join(data_dir, name))
        paths += found
        labels += [label] * len(found)
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


def train_audio(
    *,
    data_dir,
    backbone,
    weights,
    batch_size,
    epochs,
    fine_tune_epochs,
    learning_rate,
    fine_tune_lr,
    unfreeze,
    train_bn,
    lr_decay,
    dropout,
    validation_split,
    seed,
    out,
    plots,
    checkpoint_dir,
    sample_rate,
    duration,
    augment,
):
    """`kerastransfer train --task audio`: an `AudioClassifier` on
    `DATA_DIR/<class>/*.{wav,flac,ogg}`; saves it and its training record."""
    import_tensorflow_quietly()
    import keras

    from kerastransfer.cli.record import write_record
    from kerastransfer.cli.train import _final_metrics, _format_metric, cli_wording
    from kerastransfer.data.audio import load_audio_folder
    from kerastransfer.errors import WeightsError
    from kerastransfer.tasks.audio import AudioClassifier

    keras.utils.set_random_seed(seed)
    data = load_audio_folder(
        data_dir,
        sample_rate=sample_rate,
        duration=duration,
        validation_split=validation_split,
        seed=seed,
        batch_size=batch_size,
        augmentation=augment or None,
    )
    try:
        model = AudioClassifier(
            backbone,
            class_names=data.class_names,
            sample_rate=sample_rate,
            duration=duration,
            weights=weights,
            dropout=dropout,
        )
    except WeightsError as error:
        raise WeightsError(cli_wording(str(error))) from error
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    history = model.fit(
        data,
        epochs=epochs,
        fine_tune_epochs=fine_tune_epochs,
        learning_rate=learning_rate,
        fine_tune_lr=fine_tune_lr,
        unfreeze=unfreeze,
        train_bn=train_bn,
        lr_decay=lr_decay,
        checkpoint_dir=checkpoint_dir,
        report_dir=plots,
        verbose=0 if is_quiet() else 2,
    )
    model.save(out)
    metrics, source = _final_metrics(model, data, history)
    record = {
        "task": "audio",
        "model": os.path.abspath(out),
        "data_dir": os.path.abspath(data_dir),
        "sample_rate": sample_rate,
        "duration": duration,
        "validation_split": validation_split,
        "seed": seed,
        "backbone": model.backbone_name,
        "class_names": list(data.class_names),
        "num_train": data.num_train,
        "num_validation": data.num_validation,
        "skipped": [p for p, _ in data.skipped],
        "metrics": metrics,
        "metrics_source": source.replace("images", "clips"),
    }
    record_file = write_record(out, record)
    for path, reason in data.skipped:
        logger.warning("Skipped %s: %s", path, reason)
    click.echo(f"Saved {out} (training record: {record_file})")
    if metrics:
        click.echo(
            f"Final ({record['metrics_source']}): "
            + ", ".join(f"{k}={_format_metric(k, v)}" for k, v in metrics.items())
        )
