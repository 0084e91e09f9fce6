"""Decoding uploaded images for the edge service with bounded memory.

The pixel count is read from the image header before any pixel is decoded,
JPEGs decode at a reduced draft size (`kerastransfer/runtime/files.py`, shared
with `OnnxPredictor.predict_files`), the pixels decoded at once are capped by a
`DecodeBudget`, and decoding runs on a small fixed pool of threads (`Decoder`):
glibc gives every thread that allocates large buffers its own malloc arena and
keeps it, so decoding on each request thread makes memory grow with the number
of request threads.

DICOM uploads (recognised by the "DICM" magic at byte 128, not by a name or
type: a raw `application/dicom`, `application/octet-stream` or `image/*` body,
or a multipart file), TIFF and 16-bit PNG are read by the runtime's medical reader
(`kerastransfer/runtime/medical.py`, the one `kerastransfer.data.read_image` and
`predict_files` use): DICOM in modality units (CT in Hounsfield units), 16-bit
values kept. The model then applies its stored intensity window, as it does for
files (inside the ONNX graph, or in `OnnxPredictor.predict` when exported
without preprocessing). The pixel count of a DICOM file is read from its header
before its pixels are decoded.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import falcon
import numpy as np

from export.errors import bad_request, too_large
from kerastransfer.runtime.files import ImageTooLargeError, decode_image, open_image
from kerastransfer.runtime.medical import (
    dicom_pixel_count,
    is_dicom_bytes,
    load_bytes_for_model,
    needs_numpy_decode_bytes,
    to_channels,
)

__all__ = ["Decoder", "DecodeBudget", "decode_upload"]


class DecodeBudget:
    """Caps the pixels decoded at once across threads (a counting semaphore
    weighted by pixels).

    Args:
        pixels: the budget. A request larger than the whole budget waits until
            nothing else is decoding, then runs alone.
    """

    def __init__(self, pixels: int):
        self.pixels = int(pixels)
        self.in_use = 0
        self.peak = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(
                lambda: self.in_use == 0 or self.in_use + pixels <= self.pixels)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= pixels
                self._condition.notify_all()


def decode_upload(data: bytes, size: Sequence[int], max_pixels: int,
                  budget: DecodeBudget | None = None) -> np.ndarray:
    """Decodes uploaded image bytes to float32 `size` (height, width[, channels]).

    The same steps as `OnnxPredictor.predict_files` (`runtime/files.py`): the
    header is read and its pixel count checked first, JPEGs decode at a draft
    size, then the model's channels (RGB, or luminance for a 1-channel model)
    and a bilinear resize, values in [0, 255]. DICOM, TIFF and 16-bit PNG
    files keep their units (`kerastransfer.runtime.medical`).

    Args:
        data: the uploaded file's bytes.
        size: `(height, width)` (RGB), or the model's `(height, width,
            channels)`.
        max_pixels: the largest image accepted (width x height x frames).
        budget: caps the pixels decoded at once. Defaults to `None`.

    Raises:
        falcon.HTTPContentTooLarge: more pixels than `max_pixels`, or than
            Pillow's decompression-bomb limit.
        falcon.HTTPUnsupportedMediaType: a DICOM file when pydicom is not
            installed on the server.
        falcon.HTTPBadRequest: data that is no (complete) image, a DICOM file
            without pixel data, in an undecodable transfer syntax or with
            several frames, or channels the model cannot take.
    """
    channels = int(size[2]) if len(size) > 2 and size[2] else 3
    size = (int(size[0]), int(size[1]))
    if is_dicom_bytes(data):
        return _decode_dicom(data, size, channels, max_pixels, budget)
    try:
        image = open_image(io.BytesIO(data), size, max_pixels)
    except ImageTooLargeError as error:
        raise too_large(str(error)) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types
        raise bad_request(
            f"Could not decode the image ({type(error).__name__}). Send a JPEG, "
            "PNG, BMP, GIF, TIFF or DICOM file") from None
    width, height = image.size  # after the JPEG draft: what will be decoded
    try:
        with budget.hold(width * height) if budget else contextlib.nullcontext():
            if needs_numpy_decode_bytes(data):  # TIFF, 16-bit PNG: keep the values
                return load_bytes_for_model(data, size, channels)
            return to_channels(decode_image(image, size), channels, "<upload>")
    except ValueError as error:  # channels the model cannot take
        raise bad_request(str(error)) from None
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data
        raise bad_request(
            f"Could not decode the image ({type(error).__name__}). Send a complete "
            "JPEG, PNG, BMP, GIF, TIFF or DICOM file") from None
    finally:
        image.close()


def _decode_dicom(data: bytes, size, channels: int, max_pixels: int,
                  budget: DecodeBudget | None) -> np.ndarray:
    """A DICOM upload: header pixel count checked, then `load_bytes_for_model`."""
    try:
        pixels = dicom_pixel_count(io.BytesIO(data))
    except ImportError:
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description="This service cannot read DICOM files: pydicom is not "
                        "installed on the server. Install the medical extra there "
                        "(pip install 'kerastransfer[medical]'), or send the image "
                        "as PNG/TIFF. Received: a DICOM file") from None
    except Exception as error:  # noqa: BLE001 - pydicom raises many types
        raise bad_request(f"Could not read the DICOM header ({type(error).__name__}: "
                          f"{str(error)[:200]}). Send a complete DICOM file") from None
    if pixels > max_pixels:
        raise too_large(f"Image too large: {pixels} pixels; the limit is {max_pixels} "
                        f"pixels. Resize it before sending. Received: pixels={pixels}")
    try:
        with budget.hold(pixels) if budget else contextlib.nullcontext():
            return load_bytes_for_model(data, size, channels)
    except ValueError as error:  # no pixel data, transfer syntax, frames, channels
        raise bad_request(str(error)) from None
    except Exception as error:  # noqa: BLE001 - truncated or corrupt pixel data
        raise bad_request(
            f"Could not decode the DICOM pixel data ({type(error).__name__}). Send "
            "a complete DICOM file") from None


class Decoder:
    """Decodes uploads on `threads` worker threads within a pixel budget.

    Args:
        max_pixels: the largest image accepted (width x height).
        budget_pixels: the most pixels decoded at once.
        threads: decode worker threads. Defaults to `2`.
    """

    def __init__(self, max_pixels: int, budget_pixels: int, threads: int = 2):
        if threads < 1:
            raise ValueError(f"threads must be >= 1. Received: threads={threads}")
        self.max_pixels = int(max_pixels)
        self.budget = DecodeBudget(budget_pixels)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    def decode(self, data: bytes, size: Sequence[int]) -> np.ndarray:
        """`decode_upload` on a worker thread; the caller waits for the result."""
        return self._pool.submit(decode_upload, data, size, self.max_pixels,
                                 self.budget).result()
