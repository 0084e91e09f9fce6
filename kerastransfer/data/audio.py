"""Audio data: folders, lists and arrays of clips -> `AudioData` (`tf.data`).

Files are decoded up front by `kerastransfer.audio.io` (soundfile + soxr: mono
downmix, resampling to `sample_rate`), so corrupt, non-audio and empty files
are found before training starts and reported in `AudioData.skipped` (and a
warning). Each clip is kept at up to twice the model's length: training batches
take a random crop of it (and `augmentation`, numpy, in the input pipeline
only); validation clips are centre-cropped (or zero-padded) once.

An `AudioData` is an `ImageData` (same fields), so `fit()` uses its
validation split like an image folder's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.audio.io import (
    AUDIO_EXTENSIONS,
    clip_samples,
    fit_length,
    read_audio,
)
from kerastransfer.data.audio_augment import AudioAugmentation
from kerastransfer.data.checks import check_batch_size, check_validation_split
from kerastransfer.data.images import ImageData
from kerastransfer.data.split import class_counts, split_indices
from kerastransfer.errors import DataError

__all__ = [
    "AudioData",
    "AudioAugmentation",
    "load_audio_folder",
    "load_audio_list",
    "audio_from_arrays",
    "decode_clips",
    "list_class_clips",
]

logger = logging.getLogger(__name__)


class AudioData(ImageData):
    """Training (and validation) waveform pipelines: `(waveforms, labels)`
    batches, float32 `(batch, samples)` in [-1, 1], int32 labels. Same fields
    as `ImageData` plus `sample_rate` and `num_samples`."""

    sample_rate: int = 16000
    num_samples: int = 16000


def _check_args(sample_rate, duration, batch_size, validation_split, seed,
                augmentation) -> dict:
    """The loaders' argument checks, before any file is read: returns `_build`'s
    settings (`num_samples` among them)."""
    num_samples = max(2, clip_samples(sample_rate, duration))
    check_batch_size(batch_size)
    check_validation_split(validation_split)
    augmentation = AudioAugmentation() if augmentation is True else augmentation or None
    return {"sample_rate": sample_rate, "num_samples": num_samples,
            "batch_size": batch_size, "validation_split": validation_split,
            "seed": seed, "augmentation": augmentation}


def decode_clips(
    paths: Sequence[str], sample_rate: int, max_samples: int, *, channels: Any = "mix"
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Decodes every file; returns `(clips, kept_indices, skipped)`."""
    clips, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            clip = read_audio(path, sample_rate, channels=channels)
        except (DataError, OSError) as error:
            skipped.append((str(path), str(error)))
            continue
        clips.append(fit_length(clip, max_samples) if len(clip) > max_samples else clip)
        kept.append(i)
    if skipped:
        logger.warning(
            "Skipped %d unreadable or empty audio file(s), e.g. %s: %s",
            len(skipped),
            skipped[0][0],
            skipped[0][1],
        )
    return clips, kept, skipped


def _dataset(
    clips, labels, num_samples, *, batch_size, train, seed, augmentation, sample_rate
):
    import tensorflow as tf

    labels = np.asarray(labels, dtype="int32")
    if not train:
        array = (
            np.stack([fit_length(c, num_samples) for c in clips])
            if clips
            else np.zeros((0, num_samples), "float32")
        )
        return tf.data.Dataset.from_tensor_slices((array, labels)).batch(batch_size)
    epoch = [0]

    def generate():
        rng = np.random.default_rng([seed, epoch[0]])
        epoch[0] += 1
        for i in rng.permutation(len(clips)):
            clip = fit_length(clips[i], num_samples, crop="random", rng=rng)
            if augmentation is not None:
                clip = augmentation(clip, rng, sample_rate)
            yield clip, labels[i]

    signature = (tf.TensorSpec((num_samples,), tf.float32), tf.TensorSpec((), tf.int32))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(clips)))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _build(
    clips,
    labels,
    class_names,
    skipped,
    *,
    sample_rate,
    num_samples,
    batch_size,
    validation_split,
    seed,
    augmentation,
) -> AudioData:
    if not clips:
        raise DataError(
            "No readable audio clip was found. Check the files (WAV, FLAC, OGG). "
            f"Received: {len(skipped)} unreadable file(s)"
        )
    labels = np.asarray(labels, dtype="int32")
    train_idx, val_idx = split_indices(labels, validation_split, seed)
    common = dict(
        batch_size=batch_size,
        seed=seed,
        augmentation=augmentation,
        sample_rate=sample_rate,
    )
    train = _dataset(
        [clips[i] for i in train_idx],
        labels[train_idx],
        num_samples,
        train=True,
        **common,
    )
    validation = None
    if len(val_idx):
        validation = _dataset(
            [clips[i] for i in val_idx],
            labels[val_idx],
            num_samples,
            train=False,
            **common,
        )
    data = AudioData(
        train=train,
        validation=validation,
        class_names=list(class_names),
        skipped=list(skipped),
        num_train=int(len(train_idx)),
        num_validation=int(len(val_idx)),
        class_counts=class_counts(labels[train_idx], list(class_names)),
        train_labels=labels[train_idx],
    )
    data.sample_rate, data.num_samples = sample_rate, num_samples
    return data


def list_class_clips(
    path: str,
) -> tuple[list[str], list[str], list[int], list[tuple[str, str]]]:
    """`(class_names, paths, labels, skipped)` of `path/<class name>/` audio
    files (searched recursively, sorted); other files are `skipped` with the
    reason. Shared by `load_audio_folder` and the CLI's evaluation."""
    class_names = sorted(
        d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
    )
    paths, labels, skipped = [], [], []
    for label, name in enumerate(class_names):
        for root, _, files in sorted(os.walk(os.path.join(path, name))):
            for file in sorted(files):
                full = os.path.join(root, file)
                if file.lower().endswith(AUDIO_EXTENSIONS):
                    paths.append(full)
                    labels.append(label)
                elif not file.startswith("."):
                    skipped.append((full, "not an audio file extension "
                                    f"({', '.join(AUDIO_EXTENSIONS)})"))
    return class_names, paths, labels, skipped


def load_audio_folder(
    path: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    duration: float = 1.0,
    validation_split: float = 0.2,
    seed: int = 1337,
    batch_size: int = 32,
    channels: Any = "mix",
    augmentation: AudioAugmentation | bool | None = None,
) -> AudioData:
    """Loads `path/<class name>/<clip>.{wav,flac,ogg}` as labelled clips.

    Args:
        path: the folder; its subfolders (sorted) are the classes.
        sample_rate: rate the clips are resampled to (soxr). Defaults to `16000`.
        duration: clip length in seconds (the model's). Defaults to `1.0`.
        validation_split: share held out, stratified. Defaults to `0.2`.
        seed: seed of the split, the random crops and the augmentation.
            Defaults to `1337`.
        batch_size: clips per batch. Defaults to `32`.
        channels: `"mix"` (average a file's channels) or a channel index (a
            file without it is skipped and reported). Defaults to `"mix"`.
        augmentation: an `AudioAugmentation`, `True` (its defaults) or `None`.
            Training batches only. Defaults to `None`.

    Returns:
        An `AudioData`.

    Raises:
        DataError: no class folder, or no readable clip.
        ValueError: bad arguments (checked before any file is read).
    """
    settings = _check_args(sample_rate, duration, batch_size, validation_split, seed,
                           augmentation)
    num_samples = settings["num_samples"]
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"No folder at this path. Received: path={path!r}")
    class_names, paths, labels, skipped = list_class_clips(path)
    if not class_names:
        raise DataError(
            "The folder has no class subfolders. Put each class's clips in "
            f"path/<class name>/. Received: path={path!r}"
        )
    clips, kept, bad = decode_clips(
        paths, sample_rate, 2 * num_samples, channels=channels
    )
    return _build(
        clips,
        [labels[i] for i in kept],
        class_names,
        skipped + bad,
        **settings,
    )


def load_audio_list(
    source,
    *,
    path_column: str = "path",
    label_column: str = "label",
    root: str | None = None,
    class_names: Sequence[str] | None = None,
    sample_rate: int = 16000,
    duration: float = 1.0,
    validation_split: float = 0.0,
    seed: int = 1337,
    batch_size: int = 32,
    channels: Any = "mix",
    augmentation: AudioAugmentation | bool | None = None,
) -> AudioData:
    """Loads clips listed in a CSV file, a list of dicts or a DataFrame (columns
    as for `kerastransfer.load_image_list`); other arguments as for
    `load_audio_folder`."""
    from kerastransfer.data.records import read_image_list

    settings = _check_args(sample_rate, duration, batch_size, validation_split, seed,
                           augmentation)
    num_samples = settings["num_samples"]
    paths, labels, names, _ = read_image_list(
        source,
        path_column=path_column,
        label_column=label_column,
        root=root,
        class_names=class_names,
    )
    clips, kept, bad = decode_clips(
        paths, sample_rate, 2 * num_samples, channels=channels
    )
    return _build(
        clips,
        [int(labels[i]) for i in kept],
        names,
        bad,
        **settings,
    )


def audio_from_arrays(
    waveforms,
    labels,
    *,
    class_names: Sequence[str] | None = None,
    sample_rate: int = 16000,
    duration: float | None = None,
    validation_split: float = 0.0,
    seed: int = 1337,
    batch_size: int = 32,
    augmentation: AudioAugmentation | bool | None = None,
) -> AudioData:
    """Wraps waveforms `(n, samples)` (mono, [-1, 1], at `sample_rate`) and
    integer labels; `duration` defaults to the arrays' length."""
    array = np.asarray(waveforms)
    if array.dtype.kind not in "fiu" or array.ndim != 2 or len(array) == 0:
        raise DataError(
            "waveforms must be a non-empty numeric array (n, samples) of mono clips. "
            f"Received: shape={array.shape}, dtype={array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise DataError(
            "waveforms contain NaN or infinite values. Received: "
            f"{int(np.sum(~np.isfinite(array)))} non-finite samples"
        )
    labels = np.asarray(labels).astype("int64")
    if class_names is None:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(
            f"Labels must be in [0, {len(class_names)}). Received: labels in "
            f"[{labels.min()}, {labels.max()}]"
        )
    seconds = array.shape[1] / sample_rate if duration is None else duration
    settings = _check_args(sample_rate, seconds, batch_size, validation_split, seed,
                           augmentation)
    clips = list(array.astype("float32"))
    return _build(
        clips,
        labels,
        list(class_names),
        [],
        **settings,
    )
