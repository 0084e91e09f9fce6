"""Audio augmentation on waveforms, in the input pipeline only (numpy).

`AudioAugmentation` changes training clips, never the saved model: random gain,
circular time shift, background noise mixed at a random SNR, and
SpecAugment-style masking applied to the waveform so the front end inside the
model stays deterministic: a time mask zeroes a random span of samples, a
frequency mask removes a random band of the spectrum (FFT bins zeroed, the band
width drawn on the mel scale, so it covers a similar number of mel bands
wherever it falls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AudioAugmentation"]


def _hz_to_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * np.expm1(np.asarray(mel) / 1127.0)


@dataclass
class AudioAugmentation:
    """Random waveform augmentation for training clips.

    Args:
        gain_db: range of the random gain in dB. Defaults to `(-6.0, 6.0)`.
        shift: largest circular time shift, as a fraction of the clip.
            Defaults to `0.1`.
        noise: background noise clips `(n, samples)` (any length, mono, same
            rate) mixed in, or `None` for white noise. Defaults to `None`.
        snr_db: range of the signal-to-noise ratio of the mixed noise in dB;
            `None` adds no noise. Defaults to `(10.0, 30.0)`.
        time_mask: largest time mask as a fraction of the clip (0: none).
            Defaults to `0.1`.
        freq_mask: largest frequency mask as a fraction of the mel range
            (0: none). Defaults to `0.1`.
        probability: chance each transform is applied to a clip. Defaults to
            `0.8`.
    """

    gain_db: tuple[float, float] = (-6.0, 6.0)
    shift: float = 0.1
    noise: Any = None
    snr_db: tuple[float, float] | None = (10.0, 30.0)
    time_mask: float = 0.1
    freq_mask: float = 0.1
    probability: float = 0.8

    def __post_init__(self):
        for name in ("shift", "time_mask", "freq_mask", "probability"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{name} must be in [0, 1]. Received: {name}={value!r}"
                )
        if self.noise is not None:
            noise = np.asarray(self.noise, dtype="float32")
            if noise.ndim == 1:
                noise = noise[None]
            if noise.ndim != 2 or noise.shape[1] == 0:
                raise ValueError(
                    "noise must be clips (n, samples) of mono audio. "
                    f"Received: noise.shape={noise.shape}"
                )
            self.noise = noise

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000
    ) -> np.ndarray:
        """Returns an augmented copy of one mono clip (float32, clipped to [-1, 1])."""
        x = np.array(clip, dtype="float32")
        n = len(x)

        def chance() -> bool:
            return rng.random() < self.probability

        if self.gain_db and chance():
            x *= 10.0 ** (rng.uniform(*self.gain_db) / 20.0)
        if self.shift and chance():
            x = np.roll(
                x, int(rng.integers(-int(self.shift * n), int(self.shift * n) + 1))
            )
        if self.snr_db is not None and chance():
            x = x + self._noise(x, rng)
        if self.freq_mask and chance():
            x = self._mask_band(x, rng, sample_rate)
        if self.time_mask and chance():
            width = int(rng.integers(0, int(self.time_mask * n) + 1))
            start = int(rng.integers(0, n - width + 1))
            x[start : start + width] = 0.0
        return np.clip(x, -1.0, 1.0).astype("float32")

    def _noise(self, x, rng):
        n = len(x)
        if self.noise is None:
            noise = rng.standard_normal(n).astype("float32")
        else:
            source = self.noise[int(rng.integers(len(self.noise)))]
            reps = int(np.ceil(n / len(source))) + 1
            source = np.tile(source, reps)
            start = int(rng.integers(0, len(source) - n + 1))
            noise = source[start : start + n]
        signal_power = float(np.mean(x**2))
        noise_power = float(np.mean(noise**2))
        if signal_power == 0.0 or noise_power == 0.0:
            return np.zeros_like(x)
        snr = rng.uniform(*self.snr_db)
        return noise * np.sqrt(signal_power / (noise_power * 10.0 ** (snr / 10.0)))

    def _mask_band(self, x, rng, sample_rate):
        spectrum = np.fft.rfft(x)
        top = _hz_to_mel(sample_rate / 2)
        width = rng.uniform(0, self.freq_mask) * top
        low = rng.uniform(0, top - width)
        lo_hz, hi_hz = _mel_to_hz([low, low + width])
        freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
        spectrum[(freqs >= lo_hz) & (freqs <= hi_hz)] = 0.0
        return np.fft.irfft(spectrum, n=len(x)).astype("float32")
