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

one entry per image, boxes by descending score in THAT image's own pixels.
Images are letterboxed to the model's input as `load_detection_data` does for
training (`kerastransfer.runtime.letterbox.letterbox_array`: aspect ratio kept,
gray 114 padding): an upload's size is read from its header, it is decoded
straight to its letterboxed size (the service's bounded decoding), padded,
and the boxes are mapped back (`unletterbox_boxes`) and clipped to the image.
JSON instances may have any height and width (one size per request). A DICOM
upload is decoded at the input size (`image_size` says which pixels).

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


class _Letterboxer:
    """Wraps the service's `Decoder`: each upload's own size is read from its
    header, the image decoded (bounded memory, as the service does) straight
    to its letterboxed size, then padded to the model's input; its
    `(scale, pad_x, pad_y)` and size are recorded to map the boxes back."""

    def __init__(self, decoder: Any, image_shape):
        self.decoder = decoder
        self.height, self.width, self.channels = (int(s) for s in image_shape)
        self.sizes: list[tuple[int, int]] = []
        self.letterboxes: list[tuple[float, float, float]] = []

    def decode(self, data: bytes, size) -> np.ndarray:
        from kerastransfer.runtime.letterbox import letterbox_array, letterbox_geometry

        own = _header_size(data)
        if own is None:  # e.g. DICOM: decoded at the input size, no letterbox
            image = self.decoder.decode(data, (self.height, self.width,
                                               self.channels))
            self.sizes.append((self.height, self.width))
            self.letterboxes.append((1.0, 0.0, 0.0))
            return image
        h, w = own
        scale, new_h, new_w, _, _ = letterbox_geometry(own, (self.height, self.width))
        inner = (new_h, new_w, self.channels)
        image, letterbox = letterbox_array(self.decoder.decode(data, inner),
                                           (self.height, self.width), scale=scale)
        self.sizes.append(own)
        self.letterboxes.append(letterbox)
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
    from kerastransfer.runtime.letterbox import letterbox_array, unletterbox_boxes

    height, width, channels = (int(s) for s in predictor.input_shape)
    if content_type == "application/json":
        raw, names, _, _ = image_request(req, content_type, (None, None, channels),
                                         limits, decoder, 1, False)
        boxed = [letterbox_array(image, (height, width)) for image in raw]
        images = np.stack([image for image, _ in boxed])
        letterboxes = [letterbox for _, letterbox in boxed]
        sizes = [tuple(raw.shape[1:3])] * len(raw)
    else:
        letterboxer = _Letterboxer(decoder, predictor.input_shape)
        images, names, _, _ = image_request(req, content_type,
                                            (height, width, channels), limits,
                                            letterboxer, 1, False)
        sizes, letterboxes = letterboxer.sizes, letterboxer.letterboxes
    predictions = predictor.predict(images, score_threshold=score,
                                    iou_threshold=iou, max_detections=count)
    for prediction, (h, w), letterbox in zip(predictions, sizes, letterboxes,
                                             strict=True):
        # The images above are at the model's size, so `predict` does not
        # letterbox them again: the mapping back is done here, once.
        prediction["boxes"] = unletterbox_boxes(prediction["boxes"], letterbox,
                                                (h, w))
    return {"predictions": [
        _entry(prediction, name, size, predictor.class_names)
        for prediction, name, size in zip(predictions, names, sizes, strict=True)]}
