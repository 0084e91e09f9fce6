"""`AudioPredictor`: run an exported kerastransfer audio model with onnxruntime.

numpy + onnxruntime + soundfile (and soxr when a file's rate differs from the
model's) only; never TensorFlow or Keras. The ONNX file holds the whole front
end (log-mel, `kerastransfer/audio/frontend.py`) and takes float32 mono
waveforms `(batch, samples)` in [-1, 1] at the model's sample rate; its
metadata (`kind="audio"`, sample rate, clip length, class names) says so.
Files are decoded by `kerastransfer.audio.io` (the same code as training):
downmixed to mono, resampled, centre-cropped or zero-padded.

Example:

>>> from kerastransfer.runtime import AudioPredictor
>>> predictor = AudioPredictor("kws.onnx")  # doctest: +SKIP
>>> predictor.predict_files(["yes.wav"], top_k=2)  # doctest: +SKIP
[{'path': 'yes.wav', 'top_k': [('yes', 0.98), ('no', 0.01)], ...}]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerastransfer.audio.io import AUDIO_EXTENSIONS, load_clip
from kerastransfer.errors import DataError
from kerastransfer.runtime.base import create_session, load_metadata
from kerastransfer.runtime.files import rank_classes
from kerastransfer.runtime.images import OnnxPredictor

__all__ = [
    "AudioPredictor",
    "list_audio_files",
    "predict_audio_files",
    "is_audio_model",
    "AUDIO_EXTENSIONS",
]

logger = logging.getLogger("kerastransfer.runtime")


def is_audio_model(path: str | os.PathLike) -> bool:
    """Whether an exported model is an audio model (`kind="audio"` in its
    `model.json` sidecar, else in the ONNX metadata)."""
    from kerastransfer.runtime.base import read_sidecar

    sidecar = read_sidecar(path)
    if sidecar is not None:
        return sidecar.get("kind") == "audio"
    metadata, _ = load_metadata(create_session(path, intra_op_threads=1), path)
    return metadata.get("kind") == "audio"


def list_audio_files(paths_or_folder: Any) -> list[str]:
    """A folder (recursively, sorted), a file or a list -> audio file paths.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    items = (
        [os.fspath(paths_or_folder)]
        if isinstance(paths_or_folder, (str, os.PathLike))
        else [os.fspath(p) for p in paths_or_folder]
    )
    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                paths += [
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.lower().endswith(AUDIO_EXTENSIONS)
                ]
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(
                f"No such audio file or folder. Check the path. Received: path={item!r}"
            )
    return paths


def predict_audio_files(
    predict: Callable[[np.ndarray], np.ndarray],
    paths_or_folder: Any,
    *,
    sample_rate: int,
    num_samples: int,
    class_names: Sequence[str],
    top_k: int = 5,
    batch_size: int = 32,
    channels: Any = "mix",
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Decodes audio files in batches, predicts them and ranks the classes.

    Shared by `AudioPredictor.predict_files`, the CLI's `.keras` predictor and
    the service.

    Returns:
        `(results, skipped)`: `{"path", "top_k": [(class, score), ...],
        "probabilities"}` per readable file, and `[(path, reason), ...]`.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int. Received: top_k={top_k!r}")
    paths = list_audio_files(paths_or_folder)
    results: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(paths), batch_size):
        clips, good = [], []
        for path in paths[start : start + batch_size]:
            try:
                clips.append(
                    load_clip(path, sample_rate, num_samples, channels=channels)
                )
                good.append(path)
            except (DataError, OSError) as error:
                skipped.append((path, str(error)))
        if not clips:
            continue
        for path, scores in zip(
            good, np.asarray(predict(np.stack(clips))), strict=True
        ):
            results.append(
                {
                    "path": path,
                    "probabilities": scores,
                    "top_k": [
                        (name, score)
                        for _, name, score in rank_classes(scores, class_names, top_k)
                    ],
                }
            )
    if skipped:
        logger.warning(
            "Skipped %d unreadable audio file(s): %s",
            len(skipped),
            "; ".join(f"{p} ({r})" for p, r in skipped[:10]),
        )
    return results, skipped


class AudioPredictor(OnnxPredictor):
    """Runs an audio ONNX model exported by `export_onnx(audio_model, ...)`.

    `OnnxPredictor(path)` also becomes an `AudioPredictor` for such a file (its
    metadata says `kind="audio"`; `runtime/images.py` `PREDICTOR_KINDS`).

    Args:
        path: the `.onnx` file.
        providers: onnxruntime execution providers. Defaults to `None` (the
            best available).
        intra_op_threads: threads per operator. Defaults to `None` (all cores
            available to this process).
        allow_spinning: let idle threads busy-wait. Defaults to `False`.

    Attributes:
        sample_rate: the rate (Hz) the model takes.
        num_samples: samples per clip.
        class_names: class names in output order.
        metadata: the `kerastransfer.*` metadata (file or `model.json` sidecar).
        skipped: `[(path, reason), ...]` of the last `predict_files` call.

    Raises:
        ValueError: the file is not an audio model (no `kind="audio"` metadata).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        *,
        intra_op_threads: int | None = None,
        allow_spinning: bool = False,
    ):
        super().__init__(path, providers, intra_op_threads=intra_op_threads,
                         allow_spinning=allow_spinning)
        self._init_kind()

    def _init_kind(self) -> None:
        if self.metadata.get("kind") != "audio":
            raise ValueError(
                "This ONNX file is not a kerastransfer audio model (its metadata "
                "has no kind='audio'). Use OnnxPredictor for image models. "
                f"Received: path={self.path!r}, kind={self.metadata.get('kind')!r}"
            )
        self.sample_rate = int(self.metadata["sample_rate"])
        self.num_samples = int(self.metadata["num_samples"])
        self.input_shape = (self.num_samples,)
        self.skipped: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return (
            f"AudioPredictor(path={self.path!r}, sample_rate={self.sample_rate}, "
            f"num_samples={self.num_samples}, classes={len(self.class_names)})"
        )

    def predict(self, waveforms: Any, batch_size: int = 32) -> np.ndarray:
        """Probabilities `(n, num_classes)` for waveforms `(n, num_samples)` (or
        one `(num_samples,)`), float32 mono in [-1, 1] at `sample_rate`.

        Raises:
            ValueError: wrong dtype, rank or length.
        """
        array = np.asarray(waveforms)
        if array.dtype.kind not in "fiu":
            raise ValueError(
                "waveforms must be a numeric array. "
                f"Received: waveforms.dtype={array.dtype}"
            )
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.num_samples:
            raise ValueError(
                f"waveforms must be (n, {self.num_samples}) mono clips at "
                f"{self.sample_rate} Hz. Pad/crop them (kerastransfer.audio.io."
                "fit_length) or use predict_files(). "
                f"Received: shape={np.shape(waveforms)}"
            )
        return self._run_batches(array.astype("float32", copy=False), batch_size)

    def predict_files(
        self,
        paths_or_folder: Any,
        top_k: int = 5,
        batch_size: int = 32,
        channels: Any = "mix",
    ) -> list[dict[str, Any]]:
        """Decodes audio files (soundfile; resampled, mono, centre-cropped) and
        predicts them; unreadable or empty files are skipped (`self.skipped`).

        Returns:
            One dict per readable file: `{"path", "top_k": [(class, score),
            ...], "probabilities"}`.
        """
        results, self.skipped = predict_audio_files(
            lambda clips: self.predict(clips, batch_size=batch_size),
            paths_or_folder,
            sample_rate=self.sample_rate,
            num_samples=self.num_samples,
            class_names=self.class_names,
            top_k=top_k,
            batch_size=batch_size,
            channels=channels,
        )
        return results
