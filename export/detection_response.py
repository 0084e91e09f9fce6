"""The edge service's answer for an exported `DetectionModel`.

`export/service.py` hands a request to `detection_response` when the loaded
model's metadata says `kind = "detection"` (`DetectionPredictor`). The bodies
are the image bodies of `export/image_request.py` (one raw image, multipart
files, or JSON `{"instances": ...}`); the answer is

    {"predictions": [{"filename": "a.jpg",          (multipart uploads)
                      "image_size": [height, width],
                      "boxes": [[x1, y1, x2, y2], ...],
                      "scores": [...], "classes": [...],
                      "class_names": [...]}, ...]}

one entry per image, boxes by descending score in THAT image's own pixels:
an upload is decoded at the model's input size (the service's bounded
decoding), its original size is read from its header, and the boxes are
scaled back, as `DetectionPredictor.predict` does for an image of another
size (the model sees the image stretched to its input, bilinear). JSON
instances may have any height and width (one size per request). A DICOM
upload is answered in the model's input pixels (`image_size` says which).

Query parameters (falcon answers a bad value with a JSON 400):
`score_threshold` (0-1, default 0.05), `iou_threshold` (0-1, default 0.5),
`max_detections` (1-1000, default 100): the decoding runs per request in
numpy (`kerastransfer.runtime.detection`), so they need no re-export.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from export.image_request import image_request

__all__ = ["detection_response", "MAX_DETECTIONS"]

MAX_DETECTIONS = 1000


class _SizeRecorder:
    """Wraps the service's `Decoder`: decodes as it does (model size, bounded
    memory) and records each upload's own `(height, width)` from its header."""

    def __init__(self, decoder: Any):
        self.decoder = decoder
        self.sizes: list[tuple[int, int]] = []

    def decode(self, data: bytes, size) -> np.ndarray:
        image = self.decoder.decode(data, size)  # the service's errors first
        self.sizes.append(_header_size(data) or tuple(image.shape[:2]))
        return image


def _header_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except Exception:  # noqa: BLE001 - e.g. DICOM: answered in model pixels
        return None
    return int(height), int(width)


def _entry(prediction: dict, name: str | None, image_size, class_names) -> dict:
    labels = [int(v) for v in prediction["labels"]]
    entry: dict[str, Any] = {"filename": name} if name is not None else {}
    entry.update({
        "image_size": [int(image_size[0]), int(image_size[1])],
        "boxes": [[round(float(v), 2) for v in box] for box in prediction["boxes"]],
        "scores": [float(v) for v in prediction["scores"]],
        "classes": labels,
        "class_names": [str(class_names[k]) for k in labels],
    })
    return entry


def detection_response(req: Any, content_type: str, predictor: Any, limits: Any,
                       decoder: Any) -> dict:
    """Detections of the request's images, as the JSON body to answer.

    Args:
        req: the falcon request.
        content_type: its media type, lower case, without parameters.
        predictor: a `DetectionPredictor`.
        limits: the service's `Limits`.
        decoder: the service's `Decoder`.

    Returns:
        `{"predictions": [...]}`, one entry per image (see the module
        docstring).

    Raises:
        falcon.HTTPError: a bad body (as `image_request`) or a query
            parameter out of range.
    """
    score = req.get_param_as_float("score_threshold", min_value=0.0, max_value=1.0,
                                   default=0.05)
    iou = req.get_param_as_float("iou_threshold", min_value=0.0, max_value=1.0,
                                 default=0.5)
    count = req.get_param_as_int("max_detections", min_value=1,
                                 max_value=MAX_DETECTIONS, default=100)
    height, width, channels = (int(s) for s in predictor.input_shape)
    if content_type == "application/json":
        # Instances of any size: the predictor resizes them and maps the
        # boxes back to their own pixels.
        images, names, _, _ = image_request(req, content_type, (None, None, channels),
                                            limits, decoder, 1, False)
        sizes = [tuple(images.shape[1:3])] * len(images)
        predictions = predictor.predict(images, score_threshold=score,
                                        iou_threshold=iou, max_detections=count)
    else:
        recorder = _SizeRecorder(decoder)
        images, names, _, _ = image_request(req, content_type,
                                            (height, width, channels), limits,
                                            recorder, 1, False)
        sizes = recorder.sizes
        predictions = predictor.predict(images, score_threshold=score,
                                        iou_threshold=iou, max_detections=count)
        for prediction, (h, w) in zip(predictions, sizes, strict=True):
            prediction["boxes"] = prediction["boxes"] * np.asarray(
                [w / width, h / height] * 2, dtype="float32")
    return {"predictions": [
        _entry(prediction, name, size, predictor.class_names)
        for prediction, name, size in zip(predictions, names, sizes, strict=True)]}
