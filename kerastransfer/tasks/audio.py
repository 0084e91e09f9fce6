"""`AudioClassifier`: waveform -> log-mel front end -> backbone -> classification head.

An `AudioClassifier` is a `TransferTask` (`kerastransfer/tasks/base.py`): the
shared base owns the phases, feature caching, resume and saving; this module
declares the audio contract. Inputs are float32 mono waveforms `(batch,
samples)` in [-1, 1] at `sample_rate`, `samples = round(sample_rate *
duration)` (`kerastransfer.data.audio` decodes, resamples, downmixes and
pads/crops files to that).

Backbones:

* `"spectrogram_cnn"`: the built-in spectrogram CNN (1 channel,
  `kerastransfer/audio/backbone.py`);
* any catalog image backbone (`"resnet50"`, `"mobilenet_v3_small"`, ...): the
  normalized log-mel (zero mean, unit variance) is mapped to the image range
  (`127.5 + 64 x`) and fed, as one channel, to the backbone whose first
  convolution `kerastransfer/backbones/adapt.py` adapted to 1 channel (the
  pretrained kernel summed over RGB, the family's preprocessing folded in), so
  ImageNet weights are kept;
* `"tfhub:<handle>"` with `frontend="none"`: a TF-Hub SavedModel taking
  waveforms (YAMNet-style frame embeddings are averaged over time);
* a `keras.Model` taking the front end's output (or waveforms with
  `frontend="none"`).

The exported output is one probability per class in `class_names` order; the
ONNX graph takes the waveforms and contains the front end
(`kerastransfer/audio/frontend.py` explains how).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kerastransfer.audio.frontend import FRONTENDS, LogMelSpectrogram
from kerastransfer.backbones.registry import BackboneSpec, get_backbone
from kerastransfer.tasks.backbone import BackboneParts, build_scope, resolve_backbone
from kerastransfer.tasks.base import TransferTask
from kerastransfer.tasks.classifier import (
    _check_classification_labels,
    _check_head_args,
    _head_layers,
)

__all__ = ["AudioClassifier", "AUDIO_TASKS"]

AUDIO_TASKS = ("multiclass", "multilabel")
_HUB_PREFIX = "tfhub:"


@keras.saving.register_keras_serializable(package="kerastransfer")
class AudioClassifier(TransferTask):
    """Classifies fixed-length audio clips with a pretrained backbone.

    Args:
        backbone: `"spectrogram_cnn"`, a catalog image backbone name, a
            `BackboneSpec`, `"tfhub:<handle>"` (waveform models, with
            `frontend="none"`), or a `keras.Model`.
        num_classes: number of classes. Defaults to `len(class_names)`.
        sample_rate: sampling rate of the waveforms in Hz. Defaults to `16000`.
        duration: clip length in seconds. Defaults to `1.0`.
        frontend: `"log_mel"` (`LogMelSpectrogram`) or `"none"` (the backbone
            takes waveforms). Defaults to `"log_mel"`.
        weights: `"imagenet"` (catalog image backbones), `None` (random
            initialization) or a weights file for the backbone (e.g. a
            pretrained `spectrogram_cnn`). Ignored for a `keras.Model`.
            Defaults to `"imagenet"`.
        class_names: class names in label order. Defaults to `["0", "1", ...]`.
        task: `"multiclass"` (softmax) or `"multilabel"` (sigmoid). Defaults to
            `"multiclass"`.
        fft_length: STFT window and FFT length in samples. Defaults to `512`.
        hop_length: STFT hop in samples. Defaults to `160`.
        num_mel_bins: mel bands. Defaults to `64`.
        dropout: dropout before the output layer. Defaults to `0.2`.
        image_input: map the normalized log-mel to the image range
            (`127.5 + 64 x`) before the backbone, as an image backbone expects.
            Defaults to `None` (`True` for catalog image backbones).
        mixed_precision: `"mixed_float16"`, `"mixed_bfloat16"` or `None`.
            Defaults to `None`.
        strategy: a `tf.distribute.Strategy` (not saved). Defaults to `None`.
        name: the model's name. Defaults to `"audio_classifier"`.

    Raises:
        ValueError: bad arguments (clear message each).
        HubModelError: a TF-Hub model that does not take waveforms.

    Example:

    >>> model = AudioClassifier("spectrogram_cnn", num_classes=3, weights=None,
    ...                         duration=0.5)
    >>> model.input_shape
    (None, 8000)
    """

    def __init__(
        self,
        backbone: str | BackboneSpec | keras.Model,
        num_classes: int | None = None,
        *,
        sample_rate: int = 16000,
        duration: float = 1.0,
        frontend: str = "log_mel",
        weights: str | None = "imagenet",
        class_names: Sequence[str] | None = None,
        task: str = "multiclass",
        fft_length: int = 512,
        hop_length: int = 160,
        num_mel_bins: int = 64,
        dropout: float = 0.2,
        image_input: bool | None = None,
        mixed_precision: str | None = None,
        strategy: Any = None,
        name: str = "audio_classifier",
        **kwargs,
    ):
        if task not in AUDIO_TASKS:
            raise ValueError(
                f"task must be one of {AUDIO_TASKS}. Received: task={task!r}"
            )
        if frontend not in FRONTENDS:
            raise ValueError(
                f"frontend must be one of {FRONTENDS}. Received: frontend={frontend!r}"
            )
        num_samples = _num_samples(sample_rate, duration)
        num_classes, class_names = _check_head_args(
            num_classes, class_names, task, "avg", dropout, ()
        )
        with build_scope(strategy, mixed_precision):
            inputs = keras.Input(shape=(num_samples,), name="waveform")
            x = inputs
            front = None
            if frontend == "log_mel":
                front = LogMelSpectrogram(
                    sample_rate=sample_rate,
                    fft_length=fft_length,
                    hop_length=hop_length,
                    num_mel_bins=num_mel_bins,
                    name="frontend",
                )
                x = front(x)
            parts = _resolve_audio_backbone(backbone, weights, x, frontend)
            if image_input is None:
                image_input = bool(parts.spec and parts.spec.channels == 3)
            if frontend == "log_mel" and image_input:
                x = keras.layers.Rescaling(
                    64.0, offset=127.5, name="to_image_range"
                )(x)
            features = parts.model(x)
            rank = len(features.shape)
            head_layers = (
                [keras.layers.GlobalAveragePooling1D(name="pool")] if rank == 3 else []
            )
            head_layers += _head_layers(
                2 if rank == 3 else rank, num_classes, task, "avg", dropout, ()
            )
            y = feature_tensor = features
            for layer in head_layers:
                y = layer(y)
                if layer.name == "pool":
                    feature_tensor = y
            super().__init__(inputs=inputs, outputs=y, name=name, **kwargs)

        self._init_task(
            parts,
            head_layers=head_layers,
            feature_tensor=feature_tensor,
            strategy=strategy,
            mixed_precision=mixed_precision,
        )
        self.frontend = front
        self.frontend_name = frontend
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = task
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.num_samples = num_samples
        self.fft_length = int(fft_length)
        self.hop_length = int(hop_length)
        self.num_mel_bins = int(num_mel_bins)
        self.dropout = float(dropout)
        self.image_input = bool(image_input)

    # --- The task contract -------------------------------------------------
    def default_loss(self):
        """Sparse categorical (multiclass) or binary (multilabel) cross-entropy."""
        return (
            "sparse_categorical_crossentropy"
            if self.task == "multiclass"
            else "binary_crossentropy"
        )

    def default_metrics(self) -> list:
        """Accuracy (binary accuracy for multilabel)."""
        if self.task == "multilabel":
            return [keras.metrics.BinaryAccuracy(name="accuracy")]
        return ["accuracy"]

    def _check_labels(self, y) -> None:
        _check_classification_labels(self.task, self.num_classes, y)

    def export_contract(self) -> dict:
        """The ONNX input is float32 mono waveforms `(batch, num_samples)` in
        [-1, 1] at `sample_rate` (front end inside the graph); the output is one
        probability per class in `class_names` order. `AudioPredictor` reads it."""
        return {
            "kind": "audio",
            "task": self.task,
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "input_name": "waveform",
            "input_shape": [self.num_samples],
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "num_samples": self.num_samples,
            "frontend": self.frontend_name,
            "fft_length": self.fft_length,
            "hop_length": self.hop_length,
            "num_mel_bins": self.num_mel_bins,
        }

    def export_graph(self, *, include_preprocessing: bool = True,
                     output: str = "predictions") -> keras.Model:
        """The Keras model an ONNX export reproduces: the model itself
        (waveforms -> probabilities, the front end inside)."""
        if not include_preprocessing or output != "predictions":
            raise ValueError(
                "Audio models export waveforms -> predictions with the front end in "
                "the graph. Use the defaults. Received: "
                f"include_preprocessing={include_preprocessing}, output={output!r}"
            )
        return self

    def example_inputs(self, data: Any, limit: int | None = None):
        """Waveforms `(n, num_samples)` from validation/calibration data:
        waveforms or audio files/folders (`audio/export.py`'s `load_waveforms`)."""
        from kerastransfer.audio.export import load_waveforms

        return load_waveforms(data, self, limit=limit)

    def onnx_exporter(self, **kwargs):
        """The audio steps of `export_onnx` (`audio/export.py`'s `AudioExport`)."""
        from kerastransfer.audio.export import AudioExport

        return AudioExport(self, **kwargs)

    def _checkpoint_identity(self) -> dict:
        return {
            **super()._checkpoint_identity(),
            "num_classes": int(self.num_classes),
            "num_samples": self.num_samples,
            "sample_rate": self.sample_rate,
            "frontend": self.frontend_name,
        }

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "frontend": self.frontend_name,
            "class_names": list(self.class_names),
            "task": self.task,
            "fft_length": self.fft_length,
            "hop_length": self.hop_length,
            "num_mel_bins": self.num_mel_bins,
            "dropout": self.dropout,
            "image_input": self.image_input,
        }


def _num_samples(sample_rate, duration) -> int:
    from kerastransfer.audio.io import clip_samples

    samples = clip_samples(sample_rate, duration)  # checks both arguments
    if samples < 2:
        raise ValueError(
            "A clip must hold at least 2 samples. Increase duration. Received: "
            f"duration={duration}, sample_rate={sample_rate}"
        )
    return samples


def _resolve_audio_backbone(backbone, weights, x, frontend) -> BackboneParts:
    """The backbone for the front end's output `x` (spectrograms or waveforms)."""
    shape = tuple(x.shape[1:])
    if (
        isinstance(backbone, str)
        and backbone.startswith(_HUB_PREFIX)
        and frontend == "none"
    ):
        from kerastransfer.audio.backbone import hub_waveform_backbone

        model = hub_waveform_backbone(backbone[len(_HUB_PREFIX) :], shape[0])
        return BackboneParts(
            model=model,
            spec=None,
            name=backbone,
            pretrained=True,
            input_shape=shape,
            input_dtype="float32",
        )
    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    if isinstance(backbone, BackboneSpec):
        if frontend == "none":
            raise ValueError(
                f"Backbone {backbone.name!r} takes spectrograms or images, not "
                "waveforms. Use frontend='log_mel', or a waveform backbone "
                f"('tfhub:<handle>'). Received: frontend={frontend!r}"
            )
    # A 3-channel image backbone on the 1-channel spectrogram: resolve_backbone
    # adapts its first convolution (kerastransfer/backbones/adapt.py: the kernel
    # summed over RGB, the family's preprocessing folded in).
    return resolve_backbone(backbone, weights=weights, input_shape=shape)
