"""Small synthetic image folders for smoke runs and tests (no download needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["write_image_folder"]


def write_image_folder(
    root: str | os.PathLike,
    classes: Sequence[str] = ("green", "red"),
    *,
    per_class: int = 10,
    size: int = 40,
    seed: int = 0,
) -> str:
    """Writes one subfolder of PNG images per class; the class shows in the colour.

    Args:
        root: the folder to fill (created if missing).
        classes: class (subfolder) names. Defaults to `("green", "red")`.
        per_class: images per class. Defaults to `10`.
        size: image height and width in pixels. Defaults to `40`.
        seed: seed of the pixel noise. Defaults to `0`.

    Returns:
        `root`, as a string.

    Example:

    >>> import tempfile
    >>> folder = write_image_folder(tempfile.mkdtemp(), per_class=2, size=8)
    >>> sorted(os.listdir(folder))
    ['green', 'red']
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = os.fspath(root)
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            pixels = np.zeros((size, size, 3))
            pixels[..., index % 3] = 210.0
            pixels += 25.0 * (index // 3)
            pixels += rng.normal(0, 20, pixels.shape)
            Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
                os.path.join(folder, f"{i}.png"))
    return root
