"""The edge service's audio requests: posted audio files -> waveforms.

Used by `export/service.py` when the loaded model is an audio model
(`kerastransfer.runtime.AudioPredictor`): the body is one audio file
(`audio/*` or `application/octet-stream`: WAV, FLAC, OGG) or multipart file
fields; each is decoded, downmixed, resampled and centre-cropped exactly as
`AudioPredictor.predict_files` does (`kerastransfer/audio/io.py`).
"""

from __future__ import annotations

from typing import Any

import falcon
import numpy as np

from export.errors import bad_request, too_large

__all__ = ["audio_request"]


def audio_request(
    req: Any, content_type: str, predictor: Any, limits: Any
) -> tuple[np.ndarray, list[str | None]]:
    """Waveforms from a posted audio file (raw audio/* or octet-stream body,
    or multipart file fields): decoded, resampled and centre-cropped as
    `AudioPredictor.predict_files` does."""
    from kerastransfer.audio.io import fit_length, read_audio_bytes
    from kerastransfer.errors import DataError

    if content_type.startswith(("audio/", "application/octet-stream")):
        files = [(None, req.bounded_stream.read(limits.max_body_bytes + 1))]
    elif content_type == "multipart/form-data":
        try:
            files = [
                (part.filename, part.stream.read(limits.max_body_bytes + 1))
                for part in req.get_media()
                if part.filename is not None
            ][: limits.max_batch + 1]
        except falcon.MediaMalformedError as error:
            raise bad_request(
                f"Malformed multipart body: {error.description or ''}".rstrip(": ")
            ) from None
        if len(files) > limits.max_batch:
            raise too_large(
                f"Too many files; the limit is {limits.max_batch} per request"
            )
    else:
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description="This is an audio model. Send audio/wav (or another "
            "audio/* type, or application/octet-stream) with one WAV/FLAC/OGG "
            "file, or multipart/form-data file fields. Received: "
            f"{content_type or 'none'!r}",
        )
    if not files:
        raise bad_request(
            "The multipart body has no file; send audio as file "
            "fields, e.g. curl -F file=@yes.wav"
        )
    waves = []
    for name, data in files:
        try:
            clip = read_audio_bytes(
                data, predictor.sample_rate, source=name or "request body"
            )
        except DataError as error:
            raise bad_request(str(error)) from None
        waves.append(fit_length(clip, predictor.num_samples))
    return np.stack(waves), [name for name, _ in files]
