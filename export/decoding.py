"""Decoding uploaded images for the edge service with bounded memory.

The pixel count is read from the image header before any pixel is decoded,
JPEGs decode at a reduced draft size (`kerastransfer/runtime/files.py`, shared
with `OnnxPredictor.predict_files`), the pixels decoded at once are capped by a
`DecodeBudget`, and decoding runs on a small fixed pool of threads (`Decoder`):
glibc gives every thread that allocates large buffers its own malloc arena and
keeps it, so decoding on each request thread makes memory grow with the number
of request threads.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from export.errors import bad_request, too_large
from kerastransfer.runtime.files import ImageTooLargeError, decode_image, open_image

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
    """Decodes uploaded image bytes to float32 RGB `size` (height, width).

    The same steps as `OnnxPredictor.predict_files` (`runtime/files.py`): the
    header is read and its pixel count checked first, JPEGs decode at a draft
    size, then RGB and a bilinear resize, values in [0, 255].

    Raises:
        falcon.HTTPPayloadTooLarge: more pixels than `max_pixels`, or than
            Pillow's decompression-bomb limit.
        falcon.HTTPBadRequest: data that is no (complete) image.
    """
    try:
        image = open_image(io.BytesIO(data), size, max_pixels)
    except ImageTooLargeError as error:
        raise too_large(str(error)) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types
        raise bad_request(
            f"Could not decode the image ({type(error).__name__}). Send a JPEG, "
            "PNG, BMP or GIF file") from None
    width, height = image.size  # after the JPEG draft: what will be decoded
    try:
        with budget.hold(width * height) if budget else contextlib.nullcontext():
            return decode_image(image, size)
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data
        raise bad_request(
            f"Could not decode the image ({type(error).__name__}). Send a complete "
            "JPEG, PNG, BMP or GIF file") from None
    finally:
        image.close()


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
