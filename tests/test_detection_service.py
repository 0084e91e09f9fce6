"""The edge service with a detection model (export/detection_response.py).

Images are letterboxed as in training (load_detection_data). The model is a
hand-built ONNX graph (onnx.helper, no TensorFlow) whose raw
head output is a constant: the detections it must answer are derived by hand
from FCOS's score `sqrt(sigmoid(class) * sigmoid(centerness))` and per-class
NMS, so every number below is checked exactly, in each upload's own pixels.
The requests go through falcon's WSGI test client (the real app, no socket;
tests/test_service.py covers the server itself)."""

import io
import json
import math

import numpy as np
import pytest
from falcon import testing
from PIL import Image

from export.service import Limits, create_app
from kerastransfer.runtime import DetectionPredictor, OnnxPredictor

SIZE = 32
CLASSES = ["cat", "dog"]
# Rows: class logits (cat, dog), box x1 y1 x2 y2 in input pixels, centerness.
RAW = np.asarray([
    [5.0, -12.0, 4, 4, 12, 20, 5.0],     # cat, score sigmoid(5)
    [2.0, -12.0, 5, 4, 12, 20, 5.0],     # cat, IoU 0.875 with row 0
    [-12.0, 0.0, 16, 16, 32, 24, 5.0],   # dog
    [-12.0, -6.0, 0, 0, 8, 8, 5.0],      # dog, score 0.0495
], dtype="float32")


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _score(logit):
    return math.sqrt(_sigmoid(logit) * _sigmoid(5.0))


def build_constant_detector(path):
    """An ONNX 'detector' (NHWC image -> (n, 4, 7) = RAW for every image)
    with the metadata of an exported DetectionModel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from kerastransfer.runtime.base import encode_metadata

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3],
                         keepdims=1),                                  # (n,1,1,1)
        helper.make_node("Reshape", ["mean", "shape3"], ["mean3"]),    # (n,1,1)
        helper.make_node("Mul", ["mean3", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "raw"], ["predictions"]),    # (n,4,7)
    ]
    graph = helper.make_graph(
        nodes, "constant_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT,
                                       ["batch", 4, 7])],
        [numpy_helper.from_array(RAW[None], "raw"),
         numpy_helper.from_array(np.asarray([-1, 1, 1], "int64"), "shape3"),
         numpy_helper.from_array(np.asarray(0.0, "float32"), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = encode_metadata({
        "format_version": "1", "kind": "detection", "task": "detection",
        "class_names": CLASSES, "num_classes": 2, "output": "predictions",
        "input_name": "image", "input_shape": [None, SIZE, SIZE, 3],
        "include_preprocessing": True, "head": "fcos"})
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _png(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), "uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_constant_detector(str(tmp_path_factory.mktemp("det") / "det.onnx"))


@pytest.fixture(scope="module")
def client(model_path):
    predictor = OnnxPredictor(model_path)
    assert isinstance(predictor, DetectionPredictor)
    return testing.TestClient(create_app(predictor, Limits(max_batch=3)))


def test_raw_upload_boxes_are_in_the_images_own_pixels(client):
    # A square upload: scale 1/2, no padding.
    result = client.simulate_post("/predict", body=_png(64, 64),
                                  headers={"Content-Type": "image/png"})
    assert result.status_code == 200, result.text
    (entry,) = result.json["predictions"]
    assert entry["image_size"] == [64, 64]
    # Row 1 is suppressed by row 0 (same class, IoU 0.875 > 0.5); row 3 is
    # below the default score threshold 0.05.
    assert entry["classes"] == [0, 1] and entry["class_names"] == ["cat", "dog"]
    np.testing.assert_allclose(entry["boxes"], [[8, 8, 24, 40], [32, 32, 64, 48]])
    np.testing.assert_allclose(entry["scores"], [_score(5.0), _score(0.0)],
                               rtol=1e-6)
    # 64 wide x 32 high, letterboxed as in training: scale 1/2, 8 rows of
    # padding above: y = (y' - 8) * 2, clipped to the image.
    result = client.simulate_post("/predict", body=_png(64, 32),
                                  headers={"Content-Type": "image/png"})
    (entry,) = result.json["predictions"]
    assert entry["image_size"] == [32, 64]
    np.testing.assert_allclose(entry["boxes"], [[8, 0, 24, 24], [32, 16, 64, 32]])


def test_thresholds_are_query_parameters(client):
    body = _png(32, 32)
    result = client.simulate_post(
        "/predict", body=body, headers={"Content-Type": "image/png"},
        params={"score_threshold": "0.01", "iou_threshold": "0.9"})
    entry = result.json["predictions"][0]
    assert entry["classes"] == [0, 0, 1, 1]
    np.testing.assert_allclose(
        entry["scores"], [_score(5.0), _score(2.0), _score(0.0), _score(-6.0)],
        rtol=1e-6)
    np.testing.assert_allclose(entry["boxes"][1], [5, 4, 12, 20])
    result = client.simulate_post(
        "/predict", body=body, headers={"Content-Type": "image/png"},
        params={"score_threshold": "0.8", "max_detections": "1"})
    assert result.json["predictions"][0]["classes"] == [0]
    for params, name in (({"score_threshold": "1.5"}, "score_threshold"),
                         ({"iou_threshold": "abc"}, "iou_threshold"),
                         ({"max_detections": "0"}, "max_detections")):
        result = client.simulate_post("/predict", body=body, params=params,
                                      headers={"Content-Type": "image/png"})
        assert result.status_code == 400
        assert result.json["error"]["status"] == 400
        assert name in result.json["error"]["message"]


def test_multipart_and_json_instances_are_letterboxed(client):
    files = [("a.png", _png(40, 20, 1)), ("b.png", _png(32, 64, 2))]
    boundary = "detection-test"
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n".encode() + data
        + b"\r\n" for name, data in files) + f"--{boundary}--\r\n".encode()
    result = client.simulate_post(
        "/predict", body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert result.status_code == 200, result.text
    predictions = result.json["predictions"]
    assert [p["filename"] for p in predictions] == ["a.png", "b.png"]
    assert [p["image_size"] for p in predictions] == [[20, 40], [64, 32]]
    # a: 40x20, scale 0.8, 8 rows of padding; b: 32x64, scale 1/2, 8 columns.
    np.testing.assert_allclose(predictions[0]["boxes"], [[5, 0, 15, 15],
                                                         [20, 10, 40, 20]])
    np.testing.assert_allclose(predictions[1]["boxes"], [[0, 8, 8, 40],
                                                         [16, 32, 32, 48]])
    # JSON instances of another size than the model's: boxes in their pixels.
    instances = np.zeros((2, 16, 48, 3)).tolist()
    result = client.simulate_post("/predict", body=json.dumps({"instances": instances}),
                                  headers={"Content-Type": "application/json"})
    assert result.status_code == 200, result.text
    entries = result.json["predictions"]
    assert len(entries) == 2 and entries[0]["image_size"] == [16, 48]
    # Scale 2/3, 11 rows of picture and 10 of padding above.
    np.testing.assert_allclose(entries[1]["boxes"], [[6, 0, 18, 15], [24, 9, 48, 16]],
                               atol=1e-5)


def test_bad_requests_get_json_errors(client):
    cases = [
        (b"not an image", "image/png", 400, "decode"),
        (b"{", "application/json", 400, "Malformed JSON"),
        (json.dumps({"instances": [[[300, 0, 0]]]}).encode(), "application/json",
         400, "[0, 255]"),
        (b"x", "text/plain", 415, "Content-Type"),
    ]
    for body, content_type, status, words in cases:
        result = client.simulate_post("/predict", body=body,
                                      headers={"Content-Type": content_type})
        assert result.status_code == status, (content_type, result.text)
        assert result.json["error"]["status"] == status
        assert words in result.json["error"]["message"], result.json
    many = json.dumps({"instances": np.zeros((4, 8, 8, 3)).tolist()})
    result = client.simulate_post("/predict", body=many,
                                  headers={"Content-Type": "application/json"})
    assert result.status_code == 413
    assert "Send 1 to 3" in result.json["error"]["message"]
