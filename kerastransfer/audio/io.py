"""Reading audio files: decode, downmix, resample, pad/crop (TensorFlow-free).

numpy, soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, ...) and soxr (the
maintained SoX resampler, "HQ" quality) only; shared by the training data
pipeline (`kerastransfer.data.audio`) and the runtime
(`kerastransfer.runtime.audio`), so both read a file identically.

Conventions:

* samples are float32 in [-1, 1] (soundfile's float decoding);
* multi-channel files are downmixed to mono by averaging the channels
  (`channels="mix"`), or one channel is taken (`channels=<index>`); an index
  the file does not have is an error;
* resampling ratios from 1/256 to 256 are accepted (e.g. 8 kHz -> 16 kHz,
  48 kHz -> 16 kHz); beyond that, or for non-positive rates, `resample`
  raises, as such a "sample rate" is almost always a mislabelled file;
* `fit_length` zero-pads short clips symmetrically and crops long ones
  (`"center"` at inference, `"random"` for training, `"start"`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kerastransfer.errors import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_RESAMPLE_RATIO",
    "read_audio",
    "read_audio_bytes",
    "resample",
    "to_mono",
    "fit_length",
    "load_clip",
    "clip_samples",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MAX_RESAMPLE_RATIO = 256
CROPS = ("center", "random", "start")


def clip_samples(sample_rate: Any, duration: Any) -> int:
    """Samples in a clip of `duration` seconds at `sample_rate` Hz (rounded).

    The one check of these two arguments, shared by the data loaders
    (`kerastransfer.data.audio`) and `AudioClassifier`.

    Raises:
        ValueError: `sample_rate` is not a positive int, or `duration` not a
            positive number.
    """
    if (
        not isinstance(sample_rate, int)
        or isinstance(sample_rate, bool)
        or sample_rate < 1
    ):
        raise ValueError(
            "sample_rate must be a positive int (Hz). "
            f"Received: sample_rate={sample_rate!r}"
        )
    if not isinstance(duration, (int, float)) or not duration > 0:
        raise ValueError(
            "duration must be a positive number of seconds. "
            f"Received: duration={duration!r}"
        )
    return int(round(sample_rate * duration))


def _soundfile():
    try:
        import soundfile
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "Reading audio files needs soundfile. Install the audio extra: "
            "`pip install kerastransfer[audio]`."
        ) from error
    return soundfile


def to_mono(
    samples: np.ndarray, channels: Any = "mix", *, source: str = ""
) -> np.ndarray:
    """`(frames,)` or `(frames, channels)` -> mono `(frames,)` float32.

    Args:
        samples: decoded samples.
        channels: `"mix"` (average the channels) or a channel index. Defaults
            to `"mix"`.
        source: a file name for error messages. Defaults to `""`.

    Raises:
        DataError: `channels` names a channel the audio does not have.
    """
    samples = np.asarray(samples, dtype="float32")
    if samples.ndim == 1:
        samples = samples[:, None]
    count = samples.shape[1]
    if channels == "mix":
        return samples.mean(axis=1) if count > 1 else samples[:, 0]
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise ValueError(
            "channels must be 'mix' or a channel index. "
            f"Received: channels={channels!r}"
        )
    if not -count <= channels < count:
        raise DataError(
            f"The audio has {count} channel(s), so channel {channels} does not "
            "exist. Pass channels='mix' (average them) or an index below "
            f"{count}. Received: channels={channels}{_where(source)}"
        )
    return samples[:, channels]


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resamples mono samples with soxr (HQ). Same rate: returned unchanged.

    Raises:
        DataError: a non-positive rate, or a ratio beyond `MAX_RESAMPLE_RATIO`.
    """
    samples = np.asarray(samples, dtype="float32")
    if orig_rate == target_rate:
        return samples
    for name, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        if (
            not isinstance(rate, (int, np.integer))
            or isinstance(rate, bool)
            or rate < 1
        ):
            raise DataError(
                "Sample rates must be positive integers (Hz). "
                f"Received: {name}={rate!r}"
            )
    ratio = max(orig_rate, target_rate) / min(orig_rate, target_rate)
    if ratio > MAX_RESAMPLE_RATIO:
        raise DataError(
            f"Cannot resample {orig_rate} Hz to {target_rate} Hz: ratios beyond "
            f"{MAX_RESAMPLE_RATIO} are refused (the file's rate is probably wrong). "
            "Fix the file's header or pass a matching sample_rate. Received: "
            f"orig_rate={orig_rate}, target_rate={target_rate}"
        )
    import soxr

    return np.asarray(
        soxr.resample(samples, orig_rate, target_rate, quality="HQ"), dtype="float32"
    )


def fit_length(
    samples: np.ndarray,
    num_samples: int,
    crop: str = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Zero-pads (centred) or crops mono samples to exactly `num_samples`.

    Args:
        samples: mono samples.
        num_samples: the length wanted.
        crop: `"center"`, `"random"` (training; uses `rng`) or `"start"`.
            Defaults to `"center"`.
        rng: the generator for random crops. Defaults to `None` (a fresh one).
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}. Received: crop={crop!r}")
    samples = np.asarray(samples, dtype="float32")
    length = len(samples)
    if length == num_samples:
        return samples
    if length < num_samples:
        left = (num_samples - length) // 2
        return np.pad(samples, (left, num_samples - length - left))
    excess = length - num_samples
    if crop == "center":
        start = excess // 2
    elif crop == "random":
        start = int((rng or np.random.default_rng()).integers(0, excess + 1))
    else:
        start = 0
    return samples[start : start + num_samples]


def read_audio(
    path: str | os.PathLike, sample_rate: int, *, channels: Any = "mix"
) -> np.ndarray:
    """Decodes an audio file to mono float32 samples at `sample_rate`.

    Args:
        path: a WAV, FLAC or OGG file (anything libsndfile reads).
        sample_rate: the rate wanted, in Hz (the file is resampled to it).
        channels: `"mix"` or a channel index (see `to_mono`). Defaults to `"mix"`.

    Returns:
        A float32 array `(samples,)` in [-1, 1].

    Raises:
        DataError: not an audio file, an empty (zero-length) clip, a missing
            channel, or a rate the resampler refuses.
        FileNotFoundError: no file at `path`.
    """
    soundfile = _soundfile()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No audio file at this path. Received: path={path!r}")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise DataError(
            f"Not an audio file soundfile can decode ({str(error).strip()[:200]}). "
            f"Use WAV, FLAC or OGG files, or remove it. Received: path={path!r}"
        ) from None
    if samples.shape[0] == 0:
        raise DataError(
            "The audio file holds no samples (zero length). Remove or re-record "
            f"it. Received: path={path!r}"
        )
    mono = to_mono(samples, channels, source=path)
    return resample(mono, int(rate), int(sample_rate))


def read_audio_bytes(
    data: bytes,
    sample_rate: int,
    *,
    channels: Any = "mix",
    source: str = "request body",
) -> np.ndarray:
    """`read_audio` for an in-memory file (e.g. a WAV posted to the service).

    Raises:
        DataError: as `read_audio`.
    """
    import io

    soundfile = _soundfile()
    try:
        samples, rate = soundfile.read(
            io.BytesIO(data), dtype="float32", always_2d=True
        )
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise DataError(
            f"Not an audio file soundfile can decode ({str(error).strip()[:200]}). "
            f"Send WAV, FLAC or OGG. Received: {source} of {len(data)} bytes"
        ) from None
    if samples.shape[0] == 0:
        raise DataError(f"The audio holds no samples (zero length). Received: {source}")
    return resample(
        to_mono(samples, channels, source=source), int(rate), int(sample_rate)
    )


def load_clip(
    path: str | os.PathLike,
    sample_rate: int,
    num_samples: int,
    *,
    channels: Any = "mix",
    crop: str = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """`read_audio` then `fit_length`: one fixed-length clip."""
    return fit_length(
        read_audio(path, sample_rate, channels=channels),
        num_samples,
        crop=crop,
        rng=rng,
    )


def _where(source: str) -> str:
    return f", path={source!r}" if source else ""
