"""The edge service (export/service.py): a real server on a free loopback port,
real HTTP requests, predictions compared with OnnxPredictor's."""

import http.client
import importlib.util
import io
import json
import os
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from export.tiny_model import build_tiny_onnx
from kerastransfer.runtime import OnnxPredictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["cat", "dog", "bird"]
SIZE = 40


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "service_load", os.path.join(ROOT, "benchmarks", "service_load.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


service_load = _load_benchmark()


def _png(width, height, seed=0, fmt="PNG"):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), "uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _request(url, method, path, body=None, headers=None):
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.getheader("Content-Type"), raw
    finally:
        connection.close()


def _multipart(files, fields=()):
    boundary = "kerastransfer-test-boundary"
    chunks = []
    for name, value in fields:
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; "
                      f'name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n".encode()
            + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("service") / "tiny.onnx")
    return build_tiny_onnx(path, class_names=CLASSES, image_size=SIZE, seed=3)


@pytest.fixture(scope="module")
def service(model_path):
    # Small limits so the limit tests send small bodies.
    process, url = service_load.start_service(model_path, extra_args=[
        "--max-body-mb", "0.5", "--max-image-pixels", "250000", "--max-batch", "4",
    ])
    yield url
    service_load.stop_service(process)
    assert process.returncode is not None


@pytest.fixture(scope="module")
def predictor(model_path):
    return OnnxPredictor(model_path)


def test_health_and_metadata(service):
    status, content_type, body = _request(service, "GET", "/health")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body)["status"] == "ok"
    status, _, body = _request(service, "GET", "/metadata")
    metadata = json.loads(body)
    assert status == 200
    assert metadata["class_names"] == CLASSES
    assert metadata["input_shape"] == [None, SIZE, SIZE, 3]
    assert metadata["providers"] == ["CPUExecutionProvider"]
    assert metadata["limits"]["max_body_bytes"] == 512 * 1024
    assert metadata["limits"]["max_batch"] == 4
    assert metadata["metadata"]["task"] == "multiclass"


def test_raw_upload_matches_predictor(service, predictor, tmp_path):
    data = _png(57, 31, seed=1)  # not the model's size: the service resizes
    path = tmp_path / "a.png"
    path.write_bytes(data)
    expected = predictor.predict_files([str(path)], top_k=3)[0]
    status, _, body = _request(service, "POST", "/predict?top_k=3&probabilities=true",
                               data, {"Content-Type": "image/png"})
    assert status == 200, body
    [entry] = json.loads(body)["predictions"]
    np.testing.assert_allclose(entry["probabilities"], expected["probabilities"],
                               rtol=0, atol=1e-7)
    assert [(t["class_name"], t["probability"]) for t in entry["top_k"]] == [
        (name, pytest.approx(p, abs=1e-7)) for name, p in expected["top_k"]]
    assert [t["index"] for t in entry["top_k"]] == [
        CLASSES.index(name) for name, _ in expected["top_k"]]


def test_octet_stream_jpeg_and_top_k_default(service, predictor, tmp_path):
    data = _png(40, 40, seed=2, fmt="JPEG")
    path = tmp_path / "b.jpg"
    path.write_bytes(data)
    expected = predictor.predict_files([str(path)], top_k=3)[0]
    status, _, body = _request(service, "POST", "/predict", data,
                               {"Content-Type": "application/octet-stream"})
    assert status == 200
    [entry] = json.loads(body)["predictions"]
    assert len(entry["top_k"]) == 3  # default 5, capped at the number of classes
    assert "probabilities" not in entry
    assert entry["top_k"][0]["class_name"] == expected["top_k"][0][0]
    assert entry["top_k"][0]["probability"] == pytest.approx(
        expected["top_k"][0][1], abs=1e-7)


def test_multipart_many_files_match_predictor(service, predictor, tmp_path):
    images = [(f"img{i}.png", _png(30 + 7 * i, 45, seed=10 + i)) for i in range(3)]
    paths = []
    for name, data in images:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    expected = predictor.predict_files(paths, top_k=2)
    body, content_type = _multipart(images, fields=[("note", "ignored field")])
    status, _, raw = _request(service, "POST", "/predict?top_k=2&probabilities=1",
                              body, {"Content-Type": content_type})
    assert status == 200, raw
    predictions = json.loads(raw)["predictions"]
    assert [p["filename"] for p in predictions] == [n for n, _ in images]
    for entry, want in zip(predictions, expected, strict=True):
        np.testing.assert_allclose(entry["probabilities"], want["probabilities"],
                                   atol=1e-7)
        assert [t["class_name"] for t in entry["top_k"]] == [n for n, _ in
                                                             want["top_k"]]


def test_json_instances_match_predict(service, predictor):
    rng = np.random.default_rng(5)
    batch = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).round(2).astype("float32")
    expected = predictor.predict(batch)
    payload = json.dumps({"instances": batch.tolist(), "top_k": 1,
                          "probabilities": True}).encode()
    status, _, raw = _request(service, "POST", "/predict", payload,
                              {"Content-Type": "application/json"})
    assert status == 200, raw
    predictions = json.loads(raw)["predictions"]
    assert len(predictions) == 2
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected,
                               atol=1e-6)
    assert [p["top_k"][0]["index"] for p in predictions] == list(
        np.argmax(expected, axis=1))
    # One image without the batch axis.
    payload = json.dumps({"instances": batch[0].tolist()}).encode()
    status, _, raw = _request(service, "POST", "/predict", payload,
                              {"Content-Type": "application/json"})
    assert status == 200
    assert len(json.loads(raw)["predictions"]) == 1


def _bad_requests():
    big_image = _png(600, 600, seed=0)  # 360,000 pixels > the 250,000 limit
    multipart_none, mp_type = _multipart([], fields=[("a", "b")])
    too_many, mp_type2 = _multipart([(f"{i}.png", _png(8, 8)) for i in range(5)])
    return [
        ("not an image", "POST", "/predict", b"hello", "image/png", 400),
        ("truncated png", "POST", "/predict", _png(40, 40)[:300], "image/png", 400),
        ("empty body", "POST", "/predict", b"", "image/png", 400),
        ("wrong media type", "POST", "/predict", b"abc", "text/plain", 415),
        ("malformed json", "POST", "/predict", b"{nope", "application/json", 400),
        ("json without instances", "POST", "/predict", b'{"x": 1}',
         "application/json", 400),
        ("ragged instances", "POST", "/predict", b'{"instances": [[1, 2], [3]]}',
         "application/json", 400),
        ("wrong instance shape", "POST", "/predict",
         json.dumps({"instances": np.zeros((1, 8, 8, 3)).tolist()}).encode(),
         "application/json", 400),
        ("nan instance", "POST", "/predict",
         json.dumps({"instances": np.zeros((SIZE, SIZE, 3)).tolist()}).encode()
         .replace(b"0.0", b"NaN", 1), "application/json", 400),
        ("bad top_k", "POST", "/predict?top_k=0", _png(8, 8), "image/png", 400),
        ("non-numeric top_k", "POST", "/predict?top_k=abc", _png(8, 8), "image/png",
         400),
        ("body over the limit", "POST", "/predict", b"\0" * (600 * 1024),
         "image/png", 413),
        ("image over the pixel limit", "POST", "/predict", big_image, "image/png",
         413),
        ("multipart without files", "POST", "/predict", multipart_none, mp_type, 400),
        ("too many files", "POST", "/predict", too_many, mp_type2, 413),
        ("malformed multipart", "POST", "/predict", b"garbage",
         "multipart/form-data; boundary=xyz", 400),
        ("unknown path", "GET", "/nope", None, None, 404),
        ("wrong method", "GET", "/predict", None, None, 405),
    ]


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda c: c[0])
def test_bad_requests_get_json_4xx(service, case):
    _, method, path, body, content_type, expected = case
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_type, raw = _request(service, method, path, body, headers)
    assert status == expected, raw
    error = json.loads(raw)["error"]
    assert error["status"] == expected
    assert isinstance(error["message"], str) and error["message"]
    assert response_type.startswith("application/json")
    # The service is still up and answering after every bad request.
    assert _request(service, "GET", "/health")[0] == 200


def test_concurrent_load_has_no_errors(service, capsys):
    result = service_load.run_load(service, _png(SIZE, SIZE, seed=7), clients=8,
                                   requests=50)
    with capsys.disabled():
        print(f"\nservice load: {result['completed']} requests, {result['errors']} "
              f"errors, {result['throughput_rps']:.1f} req/s, p50 "
              f"{result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms, p99 "
              f"{result['p99_ms']:.2f} ms")
    assert result["errors"] == 0, result["error_samples"]
    assert result["completed"] == 400
    status, _, body = _request(service, "GET", "/health")
    assert json.loads(body)["requests"] >= 400


def test_load_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        service_load.run_load("http://10.0.0.1:80", b"", clients=1, requests=1)


def test_service_imports_no_tensorflow(model_path):
    code = ("import sys; import export.service as s; "
            f"app = s.create_app(s.OnnxPredictor({model_path!r})); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_service_start_errors(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("x")
    out = subprocess.run([sys.executable, "-m", "export.service", str(text)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and ".onnx" in out.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    out = subprocess.run([sys.executable, "-m", "export.service", str(broken),
                          "--port", "0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert "cannot start the service" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_real_exported_model_served(tmp_path, capsys):
    """A TransferModel exported by export_onnx: the service answers exactly what
    OnnxPredictor answers, and what the Keras model computes."""
    import kerastransfer as kt
    from kerastransfer.export import export_onnx

    model = kt.TransferModel("mobilenet_v3_small", weights=None,
                             input_shape=(64, 64, 3), class_names=["a", "b", "c"])
    path = str(tmp_path / "real.onnx")
    report = export_onnx(model, path)
    assert report.validated
    predictor = OnnxPredictor(path)
    process, url = service_load.start_service(path)
    try:
        data = _png(80, 70, seed=4)
        (tmp_path / "x.png").write_bytes(data)
        expected = predictor.predict_files([str(tmp_path / "x.png")], top_k=3)[0]
        status, _, raw = _request(url, "POST", "/predict?probabilities=true", data,
                                  {"Content-Type": "image/png"})
        assert status == 200, raw
        [entry] = json.loads(raw)["predictions"]
        np.testing.assert_allclose(entry["probabilities"], expected["probabilities"],
                                   atol=1e-7)
        batch = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).round()
        status, _, raw = _request(
            url, "POST", "/predict?probabilities=true",
            json.dumps({"instances": batch.tolist()}).encode(),
            {"Content-Type": "application/json"})
        served = np.array([p["probabilities"] for p in json.loads(raw)["predictions"]])
        keras_out = np.asarray(model(batch.astype("float32"), training=False))
        np.testing.assert_allclose(served, keras_out, atol=1e-4)
        result = service_load.run_load(url, _png(64, 64, seed=9), clients=8,
                                       requests=50)
        with capsys.disabled():
            print(f"\nservice load (MobileNetV3Small 64 px): {result['completed']} "
                  f"requests, {result['errors']} errors, "
                  f"{result['throughput_rps']:.1f} req/s, p50 {result['p50_ms']:.2f}"
                  f" ms, p95 {result['p95_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
        assert result["errors"] == 0, result["error_samples"]
        assert result["completed"] == 400
    finally:
        service_load.stop_service(process)
