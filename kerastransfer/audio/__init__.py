"""Audio for kerastransfer: the log-mel front end, audio backbones, audio files.

`kerastransfer.audio.io` (decoding, resampling, pad/crop) is TensorFlow-free and
shared by the data pipeline and the runtime; the Keras parts
(`LogMelSpectrogram`, `spectrogram_cnn`) are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LogMelSpectrogram": "kerastransfer.audio.frontend",
    "build_spectrogram_cnn": "kerastransfer.audio.backbone",
    "hub_waveform_backbone": "kerastransfer.audio.backbone",
    "read_audio": "kerastransfer.audio.io",
    "resample": "kerastransfer.audio.io",
    "fit_length": "kerastransfer.audio.io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kerastransfer.audio' has no attribute {name!r}")
