"""Characters rendered from the fonts of Debian font packages (pretraining breadth).

The demo's backbone is pretrained on more classes than the ten MNIST digits:
letters (52 classes, upper and lower case), symbols (`SYMBOLS`) and digits
(added to the ten digit classes) rendered with Pillow from every face of the
font packages in `FONT_PACKAGES`, each glyph scaled into MNIST's 20x20 box,
centred by its centre of mass in a 28x28 field (MNIST's own framing), white
on black, then resized to the demo's 32x32 like the source. Nothing is
downloaded: the fonts come from Debian packages, installed with

    apt-get install -y fonts-dejavu-core fonts-dejavu-extra fonts-liberation \
        fonts-freefont-ttf fonts-urw-base35 fonts-texgyre

(`scripts/install_demo_fonts.sh`). Only pretraining needs them: the demo uses
the shipped weights.
"""

from __future__ import annotations

import logging
import pathlib
import string

import numpy as np

logger = logging.getLogger(__name__)

FONT_PACKAGES = {
    # package: (folder, file patterns); math and dingbat faces are left out.
    "fonts-dejavu-core / fonts-dejavu-extra": (
        "/usr/share/fonts/truetype/dejavu", ("DejaVu[!M]*.ttf",)),
    "fonts-liberation": ("/usr/share/fonts/truetype/liberation", ("*.ttf",)),
    "fonts-freefont-ttf": ("/usr/share/fonts/truetype/freefont", ("*.ttf",)),
    "fonts-urw-base35": (
        "/usr/share/fonts/opentype/urw-base35",
        ("C059-*.otf", "Nimbus*.otf", "P052-*.otf", "URW*.otf", "Z003-*.otf")),
    "fonts-texgyre": ("/usr/share/texmf/fonts/opentype/public/tex-gyre",
                      ("texgyre*.otf",)),
}
INSTALL_HINT = ("apt-get install -y fonts-dejavu-core fonts-dejavu-extra "
                "fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-texgyre")
LETTERS = string.ascii_uppercase + string.ascii_lowercase
SYMBOLS = "+-*/=<>?!#$%&@()[]{}"
"""Symbol classes (20): unambiguous at 20x20 in every face used."""


def font_files(packages=None) -> list[pathlib.Path]:
    """The font files used, in a fixed (sorted) order.

    Args:
        packages: names from `FONT_PACKAGES` to use. Defaults to all of them.

    Returns:
        A sorted list of font paths.

    Raises:
        FileNotFoundError: if a package's fonts are not installed (the message
            names the `apt-get install` that brings them).
    """
    files = []
    for name in packages or FONT_PACKAGES:
        folder, patterns = FONT_PACKAGES[name]
        found = sorted({p for pattern in patterns
                        for p in pathlib.Path(folder).glob(pattern)})
        if not found:
            raise FileNotFoundError(
                f"The fonts of the Debian package(s) {name} are missing. Install "
                f"them with `{INSTALL_HINT}` (scripts/install_demo_fonts.sh). "
                f"Received: folder={folder}")
        files.extend(found)
    return sorted(files)


def glyph_classes() -> list[str]:
    """Class names of the rendered glyphs after the 10 digits: letters, symbols."""
    return list(LETTERS) + list(SYMBOLS)


def _render(font, char: str, box: int = 20) -> np.ndarray | None:
    """One glyph in a 28x28 field: scaled into a box x box square, centred by
    its centre of mass; None if the face has no visible glyph for `char`."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((16, 8), char, font=font, fill=255)
    bbox = canvas.getbbox()
    if bbox is None:
        return None
    glyph = canvas.crop(bbox)
    scale = box / max(glyph.size)
    size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
    glyph = np.asarray(glyph.resize(size, Image.LANCZOS), dtype=np.float32) / 255.0
    field = np.zeros((28, 28), np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    field[top:top + size[1], left:left + size[0]] = glyph
    total = field.sum()
    if total <= 0:
        return None
    rows, cols = np.indices(field.shape)
    shift_r = int(round(13.5 - (rows * field).sum() / total))
    shift_c = int(round(13.5 - (cols * field).sum() / total))
    field = np.roll(field, (shift_r, shift_c), axis=(0, 1))
    return np.clip(field, 0.0, 1.0)


def render_glyphs(files=None, point_size: int = 48):
    """Render the digits, letters and symbols of every font face.

    Args:
        files: font files to render. Defaults to `font_files()`.
        point_size: rendering size before scaling into the 20x20 box.
            Defaults to `48`.

    Returns:
        A tuple `(images, labels, fonts)`: `images` float32
        `(n, 32, 32, 1)` in [0, 1], `labels` int64 (0-9 the digits, then
        10 + the index in `glyph_classes()`), and the face index of each
        image into `files`.

    Raises:
        FileNotFoundError: see `font_files`.
    """
    from PIL import ImageFont

    from kerastransfer.demo.digits import to_image_size

    files = font_files() if files is None else list(files)
    chars = list(string.digits) + glyph_classes()
    images, labels, faces = [], [], []
    for face, path in enumerate(files):
        font = ImageFont.truetype(str(path), point_size)
        for label, char in enumerate(chars):
            image = _render(font, char)
            if image is not None:
                images.append(image)
                labels.append(label)
                faces.append(face)
    logger.info("rendered %d glyphs of %d classes from %d font faces",
                len(images), len(chars), len(files))
    return (to_image_size(np.stack(images)), np.asarray(labels, np.int64),
            np.asarray(faces, np.int64))
