"""The training record `train` writes next to the model, and the image sample
`export` validates on.

`kerastransfer train ... --out model.keras` writes `model.train.json` (atomically)
next to the model: the training folder (absolute path), the options that shape
the data (image size, validation split, seed), the class names, and the metrics
of the saved model on the validation split. `kerastransfer export model.keras`
reads it to find real images to compare Keras and ONNX on when no
`--validation-dir` is given: a trained softmax maps random noise to saturated
0/1 probabilities, where Keras and ONNX agree to ~1e-35 whatever the export
did; on real images the difference is ~1e-6.

No TensorFlow here: images are decoded with Pillow (`kerastransfer.runtime`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from kerastransfer.cli._common import json_default, logger

RECORD_SUFFIX = ".train.json"
VALIDATION_SAMPLE = 16  # images `export` compares Keras and ONNX on (as many as
# `export_onnx` validates on)


def record_path(model_path: str | os.PathLike) -> str:
    """`model.keras` -> `model.train.json` (same folder)."""
    return os.path.splitext(os.fspath(model_path))[0] + RECORD_SUFFIX


def write_record(model_path: str | os.PathLike, record: dict[str, Any]) -> str:
    """Writes `record` as the model's training record, atomically.

    Args:
        model_path: the saved `.keras` file.
        record: JSON-serializable facts about the training run.

    Returns:
        The record's path.
    """
    from kerastransfer.io import atomic_write_text

    path = record_path(model_path)
    atomic_write_text(path, json.dumps(record, indent=2, default=json_default) + "\n")
    return path


def read_record(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The model's training record, or `None` when there is none (or it is
    unreadable, which is logged)."""
    path = record_path(model_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        logger.warning("Ignoring the unreadable training record %s (%s).", path, error)
        return None
    return record if isinstance(record, dict) else None


def sample_image_files(folder: str, limit: int = VALIDATION_SAMPLE) -> list[str]:
    """Up to `limit` image files of `folder`, spread over its subfolders.

    Files are listed recursively in sorted order and taken round-robin across
    their parent folders (one class after the other), so a class-folder sample
    covers every class. Deterministic.

    Args:
        folder: a folder of images, or of class subfolders of images.
        limit: the most files returned. Defaults to `16`.

    Returns:
        File paths.
    """
    from kerastransfer.runtime import list_image_files

    groups: dict[str, list[str]] = {}
    for path in list_image_files(folder):
        groups.setdefault(os.path.dirname(path), []).append(path)
    queues = [groups[key] for key in sorted(groups)]
    sample: list[str] = []
    index = 0
    while len(sample) < limit and any(index < len(q) for q in queues):
        for queue in queues:
            if index < len(queue) and len(sample) < limit:
                sample.append(queue[index])
        index += 1
    return sample


def load_image_sample(folder: str, image_shape, limit: int = VALIDATION_SAMPLE):
    """Decodes `sample_image_files(folder, limit)` at the model's input size.

    Args:
        folder: a folder of images (or of class subfolders).
        image_shape: `(height, width, channels)`.
        limit: the most images. Defaults to `16`.

    Returns:
        float32 `(n, height, width, 3)` RGB images in [0, 255] (unreadable files
        are skipped and logged).

    Raises:
        DataError: the folder holds no readable image.
    """
    from kerastransfer.errors import DataError
    from kerastransfer.runtime import decode_images

    files = sample_image_files(folder, limit)
    images, failed = decode_images(files, image_shape[:2])
    if failed:
        logger.warning("Skipped %d unreadable validation file(s): %s", len(failed),
                       ", ".join(p for p, _ in failed[:5]))
    if len(images) == 0:
        raise DataError(
            "The validation folder holds no readable image. Pass a folder of "
            f"JPEG/PNG images (or of class subfolders). Received: folder={folder!r}"
        )
    return images
