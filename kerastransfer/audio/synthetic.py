"""Synthetic audio for tests, docs and smoke runs: pitch patterns in noise.

`make_pitch_patterns` draws clips whose class is the pitch *pattern*, not a
fixed frequency: each clip has a random base pitch, start time, length,
loudness and noise level, so a model must learn the contour from the
spectrogram. `write_audio_folder` writes such clips as WAV files in
`root/<class>/` (plus optional broken files, for the loaders' checks).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["PITCH_PATTERNS", "make_pitch_patterns", "write_audio_folder"]

PITCH_PATTERNS = ("rising", "falling", "steady", "warble")


def _contour(pattern: str, t: np.ndarray, base: float, rng) -> np.ndarray:
    if pattern == "rising":
        return base * 2.0 ** (1.5 * t)
    if pattern == "falling":
        return base * 2.0 ** (1.5 * (1.0 - t)) / 2.0**0.75
    if pattern == "steady":
        return np.full_like(t, base)
    rate = rng.uniform(5.0, 8.0)  # warble: vibrato of a few Hz
    return base * 2.0 ** (0.35 * np.sin(2 * np.pi * rate * t))


def make_pitch_patterns(
    num_per_class: int,
    *,
    sample_rate: int = 16000,
    duration: float = 1.0,
    classes=PITCH_PATTERNS,
    snr_db: tuple[float, float] = (5.0, 20.0),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Returns `(waveforms (n, samples) float32 in [-1, 1], labels, class_names)`."""
    rng = np.random.default_rng(seed)
    n = int(round(sample_rate * duration))
    waves, labels = [], []
    for label, pattern in enumerate(classes):
        for _ in range(num_per_class):
            length = int(n * rng.uniform(0.5, 0.9))
            start = int(rng.integers(0, n - length + 1))
            t = np.linspace(0.0, 1.0, length, endpoint=False)
            freq = _contour(pattern, t, rng.uniform(300.0, 1200.0), rng)
            phase = 2 * np.pi * np.cumsum(freq) / sample_rate
            tone = np.sin(phase) * np.hanning(length)
            clip = np.zeros(n)
            clip[start : start + length] = tone
            noise = rng.standard_normal(n)
            snr = rng.uniform(*snr_db)
            clip += noise * np.sqrt(np.mean(tone**2) * length / n / 10 ** (snr / 10))
            clip *= rng.uniform(0.1, 0.9) / max(np.max(np.abs(clip)), 1e-9)
            waves.append(clip.astype("float32"))
            labels.append(label)
    return np.stack(waves), np.asarray(labels, "int32"), list(classes)


def write_audio_folder(
    root: str,
    num_per_class: int,
    *,
    sample_rate: int = 16000,
    duration: float = 1.0,
    seed: int = 0,
    file_format: str = "WAV",
    broken: bool = False,
) -> list[str]:
    """Writes `make_pitch_patterns` clips to `root/<class>/<i>.wav`.

    With `broken=True` it also writes, in the first class, a text file with a
    `.wav` name (`not_audio.wav`) and a zero-length WAV (`empty.wav`).

    Returns:
        The class names.
    """
    import soundfile

    waves, labels, names = make_pitch_patterns(
        num_per_class, sample_rate=sample_rate, duration=duration, seed=seed
    )
    extension = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}[file_format]
    for i, (wave, label) in enumerate(zip(waves, labels, strict=True)):
        folder = os.path.join(root, names[label])
        os.makedirs(folder, exist_ok=True)
        soundfile.write(
            os.path.join(folder, f"{i:04d}.{extension}"),
            wave,
            sample_rate,
            format=file_format,
        )
    if broken:
        folder = os.path.join(root, names[0])
        with open(os.path.join(folder, "not_audio.wav"), "w") as file:
            file.write("this is text, not audio")
        soundfile.write(
            os.path.join(folder, "empty.wav"), np.zeros(0, "float32"), sample_rate
        )
    return names
