"""An HTTP inference service over `kerastransfer.runtime.OnnxPredictor`.

No TensorFlow: Falcon (WSGI framework) served by Waitress (a pure-Python,
multi-threaded production WSGI server), onnxruntime, numpy and Pillow. The model
is loaded once at start-up and shared by every request thread
(`onnxruntime.InferenceSession.run` is thread-safe).

Endpoints:
    GET  /health    -> {"status": "ok"}
    GET  /metadata  -> the model's classes, input spec, providers, limits
    POST /predict   -> {"predictions": [{"top_k": [{"class_name", "index",
                       "probability"}...]}...]}; the body is one raw image
                       (Content-Type image/* or application/octet-stream), a
                       multipart/form-data upload of one or more image files, or
                       JSON {"instances": [[[[r, g, b], ...]]]} (RGB values in
                       [0, 255], shape (N, H, W, 3) or (H, W, 3)). Query
                       parameters: top_k (default 5), probabilities=true to add
                       the full probability vector. An audio model (see
                       docs/audio.md) takes one audio/* (WAV, FLAC, OGG) body
                       or multipart audio files instead (export/audio_request.py).
                       A text model (see docs/text.md) takes JSON {"texts":
                       ["...", ...]} (export/text_request.py). A detection
                       model answers boxes in each image's own pixels
                       (export/detection_response.py, docs/detection.md).

Every bad request gets a JSON error {"error": {"status": ..., "message": ...}}
with a 4xx status (falcon's own HTTP errors, through one JSON error serializer);
an unexpected failure inside a request answers 500 and the service keeps
running.

Memory stays bounded under concurrent large images: the pixel count is read
from the image header before any pixel is decoded, JPEGs decode at a reduced
draft size (`kerastransfer/runtime/files.py`), and the pixels being decoded at
once, across all request threads, are capped (`Limits.max_decode_pixels`): a
thread whose image does not fit waits for others to finish. Decoding shares its
code with `OnnxPredictor.predict_files`, so both answer the same for one file.

Run (from the repository root):

    python -m export.service model.onnx --host 0.0.0.0 --port 8080
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import falcon
import numpy as np

from export.audio_request import audio_request
from export.decoding import Decoder
from export.detection_response import detection_response
from export.errors import bad_request, serialize_error, too_large, unexpected_error
from export.image_request import image_request
from export.queue_log import quiet_queue_warnings
from export.text_request import text_request
from kerastransfer.runtime import OnnxPredictor
from kerastransfer.runtime.files import rank_classes

__all__ = ["Limits", "create_app", "make_server", "quiet_queue_warnings", "main"]

logger = logging.getLogger("kerastransfer.service")


@dataclass(frozen=True)
class Limits:
    """What one request may send, and what the service decodes at once.

    Attributes:
        max_body_bytes: largest request body. Defaults to 10 MiB.
        max_image_pixels: largest image (width x height, read from its header
            before decoding). Defaults to 25 megapixels.
        max_batch: most images (files or JSON instances) in one request.
            Defaults to `32`.
        max_top_k: largest `top_k`. Defaults to `100`.
        max_decode_pixels: most pixels decoded at once across all request
            threads (Pillow holds 4 bytes per RGB pixel: 25 megapixels is about
            100 MB). An image larger than this still decodes, alone. Defaults to
            `None` (`max_image_pixels`).
        max_text_chars: longest text a text model accepts (characters).
            Defaults to `20000`.
        decode_threads: threads that decode images for every request thread.
            Few on purpose: glibc gives each thread that allocates large
            buffers its own malloc arena and keeps it, so with one decode per
            request thread the service's memory grows with `--threads` (measured
            752 MB after 8 concurrent 25-megapixel PNGs on 8 request threads,
            173 MB with one decode thread). Defaults to `2`.
    """

    max_body_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    max_batch: int = 32
    max_top_k: int = 100
    max_decode_pixels: int | None = None
    decode_threads: int = 2
    max_text_chars: int = 20_000


# waitress's own body limit: above it waitress answers a plain-text 413 from the
# Content-Length header alone. Below it waitress reads the body (spooled to a
# temporary file beyond 512 KiB, so memory stays flat) and the service answers
# its JSON 413. 1 GiB is waitress's default.
WAITRESS_MAX_BODY = 1024 ** 3


class _Model:
    """The predictor with its input size; shared by every request thread."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.image_shape = tuple(predictor.input_shape)  # (height, width, channels)
        self.class_names = list(predictor.class_names)
        self.requests = 0
        self.lock = threading.Lock()


class Health:
    def __init__(self, model: _Model, started: float):
        self.model = model
        self.started = started

    def on_get(self, req, resp):
        resp.media = {"status": "ok", "uptime_s": round(time.time() - self.started, 3),
                      "requests": self.model.requests}


class Metadata:
    def __init__(self, model: _Model, limits: Limits):
        self.model = model
        self.limits = limits

    def on_get(self, req, resp):
        predictor = self.model.predictor
        resp.media = {
            "class_names": self.model.class_names,
            "input_shape": [None, *self.model.image_shape],
            "input": 'JSON {"texts": ["...", ...]}'
                     if getattr(predictor, "kind", None) == "text" else
                     "RGB images; raw upload, multipart files, or JSON instances "
                     "with values in [0, 255]",
            "providers": list(predictor.providers),
            "metadata": _jsonable(dict(predictor.metadata)),
            "limits": asdict(self.limits),
        }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Predict:
    def __init__(self, model: _Model, limits: Limits, decoder: Decoder):
        self.model = model
        self.limits = limits
        self.decoder = decoder

    def on_post(self, req, resp):
        top_k = req.get_param_as_int("top_k", min_value=1,
                                     max_value=self.limits.max_top_k, default=5)
        with_probabilities = req.get_param_as_bool("probabilities", default=False)
        length = req.content_length
        if length is None:
            raise falcon.HTTPLengthRequired(
                title="Length required", description="Send a Content-Length header")
        if length > self.limits.max_body_bytes:
            raise too_large(f"Request body too large: {length} bytes; the limit "
                             f"is {self.limits.max_body_bytes} bytes")
        if length == 0:
            raise bad_request("Empty request body; send an image")
        content_type = (req.content_type or "").split(";")[0].strip().lower()
        names: list[str | None]
        if getattr(self.model.predictor, "kind", None) == "detection":
            resp.media = detection_response(req, content_type, self.model.predictor,
                                            self.limits, self.decoder)
            with self.model.lock:
                self.model.requests += 1
            return
        if getattr(self.model.predictor, "num_samples", None):  # an audio model
            images, names = audio_request(req, content_type, self.model.predictor,
                                          self.limits)
        elif getattr(self.model.predictor, "kind", None) == "text":  # a text model
            images, names, top_k, with_probabilities = text_request(
                req, content_type, self.limits, top_k, with_probabilities)
        else:
            images, names, top_k, with_probabilities = image_request(
                req, content_type, self.model.image_shape, self.limits,
                self.decoder, top_k, with_probabilities)
        probabilities = np.asarray(self.model.predictor.predict(images))
        with self.model.lock:
            self.model.requests += 1
        if getattr(self.model.predictor, "kind", None) == "segmentation":
            # One mask per image at the model's input size (docs/segmentation.md).
            from kerastransfer.runtime.segmentation import mask_entry

            form = req.get_param("mask", default="png")
            if form not in ("png", "indices"):
                raise bad_request("mask must be 'png' (base64 PNG, value = class) "
                                  f"or 'indices'. Received: mask={form!r}")
            resp.media = {"predictions": [
                {**({"name": name} if name else {}),
                 **mask_entry(row, self.model.class_names, form)}
                for row, name in zip(probabilities, names, strict=True)]}
            return
        top_k = min(top_k, len(self.model.class_names))
        resp.media = {"predictions": [
            self._entry(row, name, top_k, with_probabilities)
            for row, name in zip(probabilities, names, strict=True)
        ]}

    def _entry(self, row: np.ndarray, name: str | None, top_k: int,
               with_probabilities: bool) -> dict:
        entry: dict[str, Any] = {}
        if name is not None:
            entry["filename"] = name
        entry["top_k"] = [  # the ranking of OnnxPredictor.predict_files
            {"class_name": class_name, "index": index, "probability": score}
            for index, class_name, score in rank_classes(
                row, self.model.class_names, top_k)
        ]
        if with_probabilities:
            entry["probabilities"] = [float(v) for v in row]
        return entry


def create_app(predictor: Any, limits: Limits | None = None) -> falcon.App:
    """Builds the WSGI application around an already loaded predictor.

    Args:
        predictor: an `OnnxPredictor` (anything with `predict`, `class_names`,
            `input_shape`, `metadata` and `providers`).
        limits: request limits. Defaults to `Limits()`.

    Returns:
        A `falcon.App` (a WSGI callable).
    """
    limits = limits or Limits()
    model = _Model(predictor)
    decoder = Decoder(limits.max_image_pixels,
                      limits.max_decode_pixels or limits.max_image_pixels,
                      limits.decode_threads)
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, unexpected_error)
    app.add_route("/health", Health(model, time.time()))
    app.add_route("/metadata", Metadata(model, limits))
    app.add_route("/predict", Predict(model, limits, decoder))
    return app


def make_server(model_path: str, *, host: str = "127.0.0.1", port: int = 8080,
                threads: int = 4, limits: Limits | None = None,
                providers: Sequence[str] | None = None):
    """Loads the model once and returns a Waitress server (call `.run()`).

    Args:
        model_path: the `.onnx` file.
        host: the address to listen on. Defaults to `"127.0.0.1"`.
        port: the port; `0` picks a free one (read `server.effective_port`).
            Defaults to `8080`.
        threads: request threads sharing the one model. Defaults to `4`.
        limits: request limits. Defaults to `Limits()`.
        providers: onnxruntime execution providers. Defaults to `None`
            (CUDA first when onnxruntime-gpu sees a GPU, else CPU).

    Returns:
        A `waitress` server.
    """
    from waitress import create_server

    limits = limits or Limits()
    from kerastransfer.runtime.audio import AudioPredictor, is_audio_model
    from kerastransfer.runtime.text import TextPredictor, is_text_model

    predictor_class = (AudioPredictor if is_audio_model(model_path) else
                       TextPredictor if is_text_model(model_path) else OnnxPredictor)
    predictor = predictor_class(model_path, providers=providers)
    app = create_app(predictor, limits)
    quiet_queue_warnings()
    return create_server(
        app, host=host, port=port, threads=threads,
        max_request_body_size=max(WAITRESS_MAX_BODY, 2 * limits.max_body_bytes),
        channel_timeout=60, ident="kerastransfer-service",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m export.service MODEL.onnx [--port 8080] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m export.service",
        description="Serve an ONNX model exported by kerastransfer over HTTP.",
    )
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 for all interfaces; "
                             "default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port (0 picks a free one; default 8080)")
    parser.add_argument("--threads", type=int, default=4,
                        help="request threads (default 4)")
    parser.add_argument("--max-body-mb", type=float, default=10.0,
                        help="largest request body in MiB (default 10)")
    parser.add_argument("--max-image-pixels", type=int, default=25_000_000,
                        help="largest image, width x height (default 25000000)")
    parser.add_argument("--max-batch", type=int, default=32,
                        help="most images per request (default 32)")
    parser.add_argument("--decode-threads", type=int, default=2,
                        help="threads decoding uploaded images for all requests "
                             "(default 2; memory grows with each)")
    parser.add_argument("--provider", action="append", default=None,
                        help="onnxruntime provider, e.g. CUDAExecutionProvider "
                             "(repeatable; default: best available)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.model.lower().endswith(".onnx"):
        parser.error(f"MODEL must be a .onnx file. Received: {args.model!r}")
    for name in ("threads", "max_batch", "max_image_pixels", "decode_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_body_mb <= 0 or not math.isfinite(args.max_body_mb):
        parser.error("--max-body-mb must be > 0")
    limits = Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                    max_image_pixels=args.max_image_pixels,
                    max_batch=args.max_batch, decode_threads=args.decode_threads)
    try:
        server = make_server(args.model, host=args.host, port=args.port,
                             threads=args.threads, limits=limits,
                             providers=args.provider)
    except Exception as error:  # noqa: BLE001 -- one clear line, then exit 1
        print(f"Error: cannot start the service: {error}", file=sys.stderr)
        return 1
    # The first line on stdout names the address (tests and scripts read it).
    print(f"Serving {args.model} on http://{args.host}:{server.effective_port}",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
