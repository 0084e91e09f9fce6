"""The audio front end: waveforms -> normalized log-mel spectrograms (a Keras layer).

`LogMelSpectrogram` turns float32 mono waveforms `(batch, samples)` in [-1, 1]
into `(batch, frames, mel_bins, 1)` "images" (time down, frequency across) that a
2-D backbone takes:

1. STFT with Keras's own `keras.ops.stft`: periodic Hann window of
   `fft_length` samples (window length = FFT length), hop `hop_length`,
   `center=True` (the signal is reflect-padded by `fft_length // 2` on each
   side), so `frames = 1 + samples // hop_length`.
2. Power spectrum `re² + im²`, projected onto `num_mel_bins` triangular mel
   bands between `min_freq` and `max_freq` with Keras's own mel matrix
   (`keras.layers.MelSpectrogram.linear_to_mel_weight_matrix`, HTK mel scale).
3. Log compression `log(mel + log_offset)`.
4. Per-utterance normalization: each clip's log-mel has zero mean and unit
   variance over all its frames and bands (`(x - mean) / sqrt(var + 1e-5)`), so
   loudness and recording gain do not change the input.

Defaults (16 kHz): 512-sample window and FFT (32 ms), 160-sample hop (10 ms),
64 mel bands from 20 Hz to 8 kHz, `log_offset=1e-6`. One second is 101 frames.

Keras's `MelSpectrogram` layer itself is not used as is: its decibel scaling
clips at `max - top_db` where the max is over the whole *batch*, so a clip's
features would depend on the other clips in its batch.

ONNX: tf2onnx writes TensorFlow's STFT as a contrib `RFFT` node that
onnxruntime cannot run ("No Op registered for RFFT"). For export, the layer
computes the same STFT as one strided `Conv1D` whose kernels are the windowed
DFT basis (`dft="matmul"`, see `export_mode`); the exported graph then holds the
whole front end in plain Conv/MatMul/Log nodes, and export validation compares
it with the Keras model using `keras.ops.stft`.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

__all__ = ["LogMelSpectrogram", "export_mode", "FRONTENDS"]

FRONTENDS = ("log_mel", "none")
_DFT_MODES = ("stft", "matmul")
_VARIANCE_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="kerastransfer")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveforms `(batch, samples)` -> normalized log-mel `(batch, frames, mels, 1)`.

    See the module docstring for the exact computation.

    Args:
        sample_rate: sampling rate of the waveforms in Hz. Defaults to `16000`.
        fft_length: window and FFT length in samples. Defaults to `512`.
        hop_length: hop between frames in samples. Defaults to `160`.
        num_mel_bins: mel bands. Defaults to `64`.
        min_freq: lowest band edge in Hz. Defaults to `20.0`.
        max_freq: highest band edge in Hz. Defaults to `None` (`sample_rate / 2`).
        log_offset: added before the logarithm. Defaults to `1e-6`.
        normalize: per-utterance mean/variance normalization. Defaults to `True`.
        dft: `"stft"` (`keras.ops.stft`) or `"matmul"` (a strided convolution
            with the windowed DFT basis: the same numbers, ONNX-exportable).
            Defaults to `"stft"`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> layer = LogMelSpectrogram()
    >>> layer(np.zeros((2, 16000), "float32")).shape
    TensorShape([2, 101, 64, 1])
    """

    def __init__(
        self,
        sample_rate=16000,
        fft_length=512,
        hop_length=160,
        num_mel_bins=64,
        min_freq=20.0,
        max_freq=None,
        log_offset=1e-6,
        normalize=True,
        dft="stft",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # STFT runs in float32 (not float16)
        super().__init__(**kwargs)
        for name, value in (
            ("sample_rate", sample_rate),
            ("fft_length", fft_length),
            ("hop_length", hop_length),
            ("num_mel_bins", num_mel_bins),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{name} must be a positive int. Received: {name}={value!r}"
                )
        max_freq = sample_rate / 2 if max_freq is None else float(max_freq)
        if not 0 <= float(min_freq) < max_freq <= sample_rate / 2:
            raise ValueError(
                "Mel band edges must satisfy 0 <= min_freq < max_freq <= "
                f"sample_rate / 2 ({sample_rate / 2}). Received: "
                f"min_freq={min_freq}, max_freq={max_freq}"
            )
        if dft not in _DFT_MODES:
            raise ValueError(f"dft must be one of {_DFT_MODES}. Received: dft={dft!r}")
        self.sample_rate = int(sample_rate)
        self.fft_length = int(fft_length)
        self.hop_length = int(hop_length)
        self.num_mel_bins = int(num_mel_bins)
        self.min_freq = float(min_freq)
        self.max_freq = float(max_freq)
        self.log_offset = float(log_offset)
        self.normalize = bool(normalize)
        self.dft = dft
        bins = self.fft_length // 2 + 1
        mel = keras.layers.MelSpectrogram(
            fft_length=self.fft_length,
            sampling_rate=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            min_freq=self.min_freq,
            max_freq=self.max_freq,
            dtype="float32",
        )
        matrix = mel.linear_to_mel_weight_matrix(
            num_mel_bins=self.num_mel_bins,
            num_spectrogram_bins=bins,
            sampling_rate=self.sample_rate,
            lower_edge_hertz=self.min_freq,
            upper_edge_hertz=self.max_freq,
        )
        self._mel_matrix = np.asarray(keras.ops.convert_to_numpy(matrix), "float32")
        self._dft_kernel = _dft_kernel(self.fft_length)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for `num_samples` samples (`1 + samples // hop`)."""
        return 1 + int(num_samples) // self.hop_length

    def call(self, inputs):
        ops = keras.ops
        x = ops.cast(inputs, "float32")
        if self.dft == "stft":
            real, imag = ops.stft(
                x,
                sequence_length=self.fft_length,
                sequence_stride=self.hop_length,
                fft_length=self.fft_length,
                window="hann",
                center=True,
            )
            power = ops.square(real) + ops.square(imag)
        else:
            pad = self.fft_length // 2
            x = ops.pad(x, [[0, 0], [pad, pad]], mode="reflect")
            spectrum = ops.conv(
                ops.expand_dims(x, -1),
                ops.convert_to_tensor(self._dft_kernel),
                strides=self.hop_length,
                padding="valid",
            )
            bins = self.fft_length // 2 + 1
            power = ops.square(spectrum[..., :bins]) + ops.square(spectrum[..., bins:])
        mel = ops.matmul(power, ops.convert_to_tensor(self._mel_matrix))
        features = ops.log(mel + self.log_offset)
        if self.normalize:
            mean = ops.mean(features, axis=(1, 2), keepdims=True)
            variance = ops.mean(ops.square(features - mean), axis=(1, 2), keepdims=True)
            features = (features - mean) / ops.sqrt(variance + _VARIANCE_EPSILON)
        return ops.expand_dims(features, -1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else self.num_frames(samples)
        return (input_shape[0], frames, self.num_mel_bins, 1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "fft_length": self.fft_length,
                "hop_length": self.hop_length,
                "num_mel_bins": self.num_mel_bins,
                "min_freq": self.min_freq,
                "max_freq": self.max_freq,
                "log_offset": self.log_offset,
                "normalize": self.normalize,
            }
        )  # `dft` is an export-time detail: always reloads as "stft"
        return config


def _dft_kernel(fft_length: int) -> np.ndarray:
    """The windowed real DFT basis as a Conv1D kernel `(fft, 1, 2 * bins)`:
    cosines then minus sines, times the periodic Hann window (as `ops.stft`)."""
    n = np.arange(fft_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / fft_length)  # periodic Hann
    k = np.arange(fft_length // 2 + 1)
    angle = 2 * np.pi * np.outer(n, k) / fft_length
    basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    return (window[:, None] * basis)[:, None, :].astype("float32")


@contextlib.contextmanager
def export_mode(model: keras.Model):
    """Within the block, every `LogMelSpectrogram` in `model` computes its STFT
    as a DFT convolution (ONNX-exportable); restored afterwards."""
    layers = [
        layer for layer in _all_layers(model) if isinstance(layer, LogMelSpectrogram)
    ]
    previous = [layer.dft for layer in layers]
    try:
        for layer in layers:
            layer.dft = "matmul"
        yield layers
    finally:
        for layer, mode in zip(layers, previous, strict=True):
            layer.dft = mode


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
