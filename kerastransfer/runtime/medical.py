"""Reading medical and high-bit-depth images: DICOM, NIfTI, 16-bit PNG and TIFF.

`read_image(path, window=None)` returns float32 `(height, width, channels)` in the
file's own units: DICOM modality values after RescaleSlope/RescaleIntercept (CT in
Hounsfield units), NIfTI voxel values after the header's scaling, 16-bit PNG and
TIFF values in [0, 65535] (not cut to 8 bits). `window=` maps them to [0, 255]
(`kerastransfer.runtime.preprocess.apply_window`; presets in `WINDOW_PRESETS`).

DICOM rules (pydicom; `pip install kerastransfer[medical]`):

* no PixelData -> `ValueError`;
* `MONOCHROME1` (bright = low value) is inverted in stored-value space
  (`max_stored - value`, before the modality rescale), so bright is high as in
  `MONOCHROME2`;
* multi-frame files are refused unless `frame=` picks one (or use
  `read_dicom_frames` to split them explicitly);
* compressed transfer syntaxes decode when pydicom has a decoder for them (RLE
  built in; JPEG, JPEG-LS and JPEG 2000 with the pylibjpeg plugins of the
  `medical` extra); otherwise a `ValueError` names the syntax.

NIfTI volumes (nibabel) are read as 2-D slices along `axis`; a 4-D volume's last
axis becomes the channels (e.g. MRI sequences). Pure Python/numpy: no TensorFlow,
so the runtime's file prediction can use it; the training pipelines call it
through `tf.numpy_function` (`kerastransfer/data/pipeline.py`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kerastransfer.runtime.preprocess import (
    WINDOW_PRESETS,
    apply_window,
    resolve_window,
)

__all__ = ["read_image", "read_dicom_frames", "read_volume_slices", "is_medical_file",
           "is_dicom_bytes", "dicom_pixel_count", "needs_numpy_decode",
           "needs_numpy_decode_bytes", "load_bytes_for_model", "to_channels",
           "resize_image", "load_for_model",
           "MEDICAL_EXTENSIONS", "NUMPY_DECODED_EXTENSIONS", "WINDOW_PRESETS",
           "resolve_window", "apply_window"]

DICOM_EXTENSIONS = (".dcm", ".dicom")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
MEDICAL_EXTENSIONS = DICOM_EXTENSIONS + NIFTI_EXTENSIONS
# Decoded by `read_image` (numpy) rather than `tf.io.decode_image` in training,
# and rather than Pillow's 8-bit RGB conversion at prediction time; 16-bit PNGs
# too (`needs_numpy_decode` reads their header).
NUMPY_DECODED_EXTENSIONS = MEDICAL_EXTENSIONS + (".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_medical_file(path: Any) -> bool:
    """True for a DICOM or NIfTI file name."""
    return str(path).lower().endswith(MEDICAL_EXTENSIONS)


def is_dicom_bytes(data: bytes) -> bool:
    """True for the bytes of a DICOM Part 10 file: a 128-byte preamble, then
    the magic `b"DICM"` (what uploads without a file name are recognised by)."""
    return len(data) >= 132 and bytes(data[128:132]) == b"DICM"


def dicom_pixel_count(source: Any) -> int:
    """Rows x Columns x frames of a DICOM file, from its header only (no pixel
    is decoded), so callers can bound memory before `read_dicom_frames`.

    Args:
        source: a DICOM path or binary file object (rewound afterwards).

    Returns:
        The pixel count (0 when the header has no Rows/Columns).

    Raises:
        ImportError: pydicom is not installed (names the extra to install).
        pydicom.errors.InvalidDicomError: not a DICOM file.
    """
    pydicom = _require("pydicom")
    position = source.tell() if hasattr(source, "tell") else None
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    if position is not None:
        source.seek(position)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * frames


def needs_numpy_decode(path: Any) -> bool:
    """True for files `read_image` must decode to keep their values: DICOM,
    NIfTI, TIFF, and PNGs with 16 bits per sample (bit depth from the header)."""
    name = os.fspath(path).lower() if isinstance(path, (str, os.PathLike)) else ""
    if name.endswith(NUMPY_DECODED_EXTENSIONS):
        return True
    if name.endswith(".png"):
        try:
            with open(path, "rb") as file:
                header = file.read(25)
        except OSError:
            return False
        return header[:8] == _PNG_SIGNATURE and header[24:25] == b"\x10"
    return False


def needs_numpy_decode_bytes(data: bytes) -> bool:
    """`needs_numpy_decode` for file contents (uploads have no trusted name):
    DICOM (the "DICM" magic), TIFF (`II*\\0` / `MM\\0*`) and 16-bit PNG."""
    head = bytes(data[:25])
    return (is_dicom_bytes(data) or head[:4] in (b"II*\0", b"MM\0*")
            or head[:8] == _PNG_SIGNATURE and head[24:25] == b"\x10")


def load_bytes_for_model(data: bytes, size=None,
                         channels: int | None = None) -> np.ndarray:
    """`load_for_model` for the contents of a DICOM, TIFF or 16-bit PNG file.

    The same reader as `read_image` (DICOM modality rescale and MONOCHROME1
    inversion; TIFF and 16-bit PNG values not cut to 8 bits), so an upload
    gives the model what the same file gives `OnnxPredictor.predict_files`.

    Args:
        data: the file's bytes.
        size: `(height, width)`, or `None` (the file's size). Defaults to `None`.
        channels: the model's channels, or `None`. Defaults to `None`.

    Returns:
        float32 `(height, width, channels)` in the file's units.

    Raises:
        ImportError: a DICOM file and no pydicom (names the extra to install).
        ValueError: a multi-frame DICOM file (send one frame), no pixel data,
            an undecodable transfer syntax, or channels that do not convert.
    """
    import io

    if is_dicom_bytes(data):
        frames = read_dicom_frames(io.BytesIO(data))
        if len(frames) > 1:
            raise ValueError(
                f"The DICOM file has {len(frames)} frames; send one frame per file "
                "(split it with kerastransfer.data.medical.read_dicom_frames). "
                f"Received: frames={len(frames)}")
        image = frames[0]
    else:
        image = _read_pillow(io.BytesIO(data))
    image = to_channels(image, channels, "<uploaded file>")
    return image if size is None else resize_image(image, size)


def to_channels(image: np.ndarray, channels: int | None,
                path: Any = None) -> np.ndarray:
    """Gives an `(h, w, c)` image the `channels` a model takes.

    One channel is repeated for a 3-channel model; RGB(A) becomes luminance
    for a 1-channel model (ITU-R 601 weights, as `tf.image.rgb_to_grayscale`);
    an alpha channel is dropped for a 3-channel model. Anything else must match.

    Args:
        image: `(h, w, c)` float32.
        channels: the model's channels, or `None` (unchanged).
        path: the file, for the error message. Defaults to `None`.

    Returns:
        `(h, w, channels)` float32.

    Raises:
        ValueError: the channels cannot be converted.
    """
    have = image.shape[-1]
    if channels is None or have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have in (3, 4) and channels == 1:
        weights = np.asarray([0.2989, 0.5870, 0.1140], dtype="float32")
        return (image[..., :3] @ weights)[..., None].astype("float32")
    if have == 4 and channels == 3:
        return image[..., :3]
    raise ValueError(
        f"The image has {have} channel(s) but the model takes {channels}. Give the "
        "model images with as many channels (e.g. a 4-D NIfTI or a multi-page "
        f"TIFF), or build it with input_shape=(h, w, {have}). Received: path={path!r}")


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of float32 `(h, w, c)` to `(height, width)`, per channel
    in float (Pillow mode "F"): values are not cut to 8 bits."""
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image.astype("float32", copy=False)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), "F")
                         .resize((width, height), Image.BILINEAR))
              for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1).astype("float32")


def load_for_model(path: Any, size=None, channels: int | None = None) -> np.ndarray:
    """Reads a file with `read_image` in its own units, with the model's channels
    (`to_channels`) and, when `size` is given, resized (`resize_image`).

    Args:
        path: the file.
        size: `(height, width)`, or `None` (the file's size). Defaults to `None`.
        channels: the model's channels, or `None`. Defaults to `None`.

    Returns:
        float32 `(height, width, channels)`.
    """
    image = to_channels(read_image(path), channels, path)
    return image if size is None else resize_image(image, size)


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"Reading this file needs {module}. Install the medical extra: pip "
            f"install 'kerastransfer[medical]'. Received: missing module {module!r}"
        ) from error


def read_image(path: str | os.PathLike, *, window: Any = None, frame: int | None = None,
               axis: int = 2, slice_index: int | None = None) -> np.ndarray:
    """Reads an image file in its original units.

    Args:
        path: a DICOM (`.dcm`), NIfTI (`.nii`, `.nii.gz`) or image file (PNG,
            TIFF, JPEG, ...).
        window: an intensity window mapping the values to [0, 255]: a preset
            (`"lung"`, `"brain"`, `"bone"`, `"soft_tissue"`, ...) or
            `(center, width)`. Defaults to `None` (original units).
        frame: the frame of a multi-frame DICOM file. Defaults to `None` (a
            multi-frame file is refused).
        axis: the NIfTI axis the slice is taken along. Defaults to `2`.
        slice_index: the NIfTI slice. Defaults to `None` (the middle slice).

    Returns:
        float32 `(height, width, channels)`.

    Raises:
        ValueError: a file that cannot be read as one image (no pixel data, an
            undecodable transfer syntax, multi-frame without `frame`, a bad
            window), with what to do.
        FileNotFoundError: `path` does not exist.
    """
    path = os.fspath(path)
    window = resolve_window(window)  # bad windows fail before any file is read
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such image file. Check the path. Received: "
                                f"path={path!r}")
    lower = path.lower()
    if lower.endswith(DICOM_EXTENSIONS):
        frames = read_dicom_frames(path)
        if len(frames) > 1 and frame is None:
            raise ValueError(
                f"The DICOM file has {len(frames)} frames. Pass frame=<index> or "
                "split it with read_dicom_frames(path). Received: "
                f"path={path!r}, frame=None")
        image = frames[0 if frame is None else frame]
    elif lower.endswith(NIFTI_EXTENSIONS):
        slices = read_volume_slices(path, axis=axis)
        index = len(slices) // 2 if slice_index is None else slice_index
        image = slices[index]
    else:
        image = _read_pillow(path)
    return apply_window(image, window) if window is not None else image


def read_dicom_frames(path: Any) -> np.ndarray:
    """Reads every frame of a DICOM file, modality rescale applied.

    Args:
        path: a DICOM file, or a binary file object holding one (e.g.
            `io.BytesIO(upload)`, as the edge service reads uploads).

    Returns:
        float32 `(frames, height, width, channels)`.

    Raises:
        ValueError: no pixel data, or a transfer syntax with no decoder here.
    """
    pydicom = _require("pydicom")
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
    ds = pydicom.dcmread(path)
    if hasattr(path, "read"):  # a file object: name it in messages
        path = getattr(path, "name", "<DICOM bytes>")
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ValueError(
            "The DICOM file has no pixel data (e.g. a structured report or a "
            f"presentation state). Pass an image file. Received: path={path!r}")
    syntax = ds.file_meta.get("TransferSyntaxUID", None)
    try:
        raw = ds.pixel_array
    except Exception as error:  # noqa: BLE001 -- pydicom raises several types
        name = getattr(syntax, "name", str(syntax))
        raise ValueError(
            f"Cannot decode the DICOM pixel data in transfer syntax {name} "
            f"({syntax}): {str(error).splitlines()[0][:200]}. Install the decoders "
            "of the medical extra (pip install 'kerastransfer[medical]') or convert "
            f"the file (e.g. dcmdjpeg/gdcmconv --raw). Received: path={path!r}"
        ) from error
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    raw = np.asarray(raw)
    if frames == 1:
        raw = raw[None]
    if samples == 1:
        raw = raw[..., None]
    if ds.get("PhotometricInterpretation", "") == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16))
        if int(ds.get("PixelRepresentation", 0)) == 0:
            raw = (2 ** bits - 1) - raw.astype("int64")
        else:
            raw = -1 - raw.astype("int64")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if samples == 1:
        return (raw.astype("float64") * slope + intercept).astype("float32")
    return raw.astype("float32")


def read_volume_slices(path: str | os.PathLike, *, axis: int = 2) -> np.ndarray:
    """Reads a NIfTI volume as 2-D slices along `axis` (header scaling applied).

    Args:
        path: a `.nii` or `.nii.gz` file.
        axis: 0, 1 or 2. Defaults to `2` (axial slices for RAS-oriented volumes).

    Returns:
        float32 `(slices, height, width, channels)`; a 4-D volume's fourth axis
        is the channels.

    Raises:
        ValueError: a volume that is not 3-D or 4-D, or a bad axis.
    """
    nib = _require("nibabel")
    volume = np.asarray(nib.load(os.fspath(path)).get_fdata(dtype=np.float32))
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise ValueError("A NIfTI file must hold a 3-D volume (or 4-D with channels "
                         f"last). Received: shape={volume.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2. Received: axis={axis!r}")
    return np.moveaxis(volume, axis, 0).astype("float32", copy=False)


def _read_pillow(path: Any) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L"):
            array = np.asarray(image)
            if array.dtype.kind == "u" and array.dtype.itemsize == 2 or \
                    image.mode.startswith("I;16"):
                array = array.astype("uint16")
            return array.astype("float32")[..., None]
        if image.mode in ("RGB", "RGBA", "LA", "P", "CMYK", "YCbCr", "1"):
            return np.asarray(image.convert("RGB"), dtype="float32")
        return np.asarray(image.convert("RGB"), dtype="float32")
