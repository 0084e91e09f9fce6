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
from training_helpers import run_without_tensorflow

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


def _png_header_only(width, height):
    """A PNG whose header claims width x height pixels (and no pixel data)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"")
            + chunk(b"IEND", b""))


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
        ("instance value 1e30", "POST", "/predict",
         json.dumps({"instances": np.zeros((SIZE, SIZE, 3)).tolist()}).encode()
         .replace(b"0.0", b"1e30", 1), "application/json", 400),
        ("instance value -500", "POST", "/predict",
         json.dumps({"instances": np.zeros((SIZE, SIZE, 3)).tolist()}).encode()
         .replace(b"0.0", b"-500", 1), "application/json", 400),
        ("bad top_k", "POST", "/predict?top_k=0", _png(8, 8), "image/png", 400),
        ("non-numeric top_k", "POST", "/predict?top_k=abc", _png(8, 8), "image/png",
         400),
        ("body over the limit", "POST", "/predict", b"\0" * (600 * 1024),
         "image/png", 413),
        # Over 4x the limit: waitress used to answer this one in plain text.
        ("body far over the limit", "POST", "/predict", b"\0" * (3 * 1024 * 1024),
         "image/png", 413),
        ("image over Pillow's bomb limit", "POST", "/predict", _png_header_only(
            20_000, 20_000), "image/png", 413),
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
    # The service's own messages, never a library's.
    assert "decompression bomb" not in error["message"]
    if case[0] in ("body far over the limit", "body over the limit"):
        assert error["message"] == (
            f"Request body too large: {len(body)} bytes; the limit is 524288 bytes")
    if case[0] == "image over Pillow's bomb limit":
        assert error["message"].startswith("Image too large: more than ")
        assert "Resize it before sending" in error["message"]
    if case[0].startswith("instance value"):
        assert "[0, 255]" in error["message"]
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
    run_without_tensorflow("import export.service as s\n"
                           f"app = s.create_app(s.OnnxPredictor({model_path!r}))")


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


def _start(model_path, stderr_path, *args):
    """The service in a subprocess, its stderr in a file (read after stopping)."""
    import time

    stderr = open(stderr_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "export.service", model_path, "--port", "0",
         "--log-level", "WARNING", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    stderr.close()
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and not line.startswith("Serving"):
        line = process.stdout.readline()
        if process.poll() is not None:
            break
    assert line.startswith("Serving"), open(stderr_path).read()[-2000:]
    return process, line.strip().rsplit(" ", 1)[-1]


def _peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _big_png():
    """5000x5000 RGB, about 88 KB of PNG: 25 megapixels, at the default limit."""
    pixels = np.zeros((5000, 5000, 3), "uint8")
    pixels[::7, :, 0] = 200
    pixels[:, ::11, 1] = 90
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_concurrent_large_images_keep_memory_bounded(model_path, tmp_path, capsys):
    """8 clients upload a 25-megapixel PNG at once: decodes are capped by a pixel
    budget, so the service's peak RSS stays far below 8 full decodes (it was
    938 MB when every request thread decoded at once)."""
    from concurrent.futures import ThreadPoolExecutor

    data = _big_png()
    assert len(data) < 100_000
    process, url = _start(model_path, tmp_path / "stderr.txt", "--threads", "8")
    try:
        before = _peak_rss_mb(process.pid)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _request(
                url, "POST", "/predict", data, {"Content-Type": "image/png"}),
                range(8)))
        peak = _peak_rss_mb(process.pid)
    finally:
        service_load.stop_service(process)
    with capsys.disabled():
        print(f"\nservice peak RSS: {before:.0f} MB idle, {peak:.0f} MB after 8 "
              "concurrent 5000x5000 PNG uploads")
    assert [status for status, _, _ in answers] == [200] * 8, answers[0][2]
    assert peak < 400, peak


def test_queue_warnings_do_not_flood_the_log(model_path, tmp_path):
    """32 clients on 2 threads: waitress's per-request "Task queue depth"
    warnings become at most one line per minute."""
    log = tmp_path / "stderr.txt"
    process, url = _start(model_path, log, "--threads", "2")
    try:
        result = service_load.run_load(url, _png(SIZE, SIZE, seed=7), clients=32,
                                       requests=5)
    finally:
        service_load.stop_service(process)
    assert result["errors"] == 0 and result["completed"] == 160
    lines = [line for line in log.read_text().splitlines() if "queue" in line.lower()]
    assert len(lines) <= 1, lines[:5]
    assert not any("Task queue depth" in line for line in lines)


def test_large_jpeg_decodes_at_draft_size():
    """A 4000x3000 JPEG for a 40 px model decodes at 1/8 size (500x375 pixels
    held, not 12 megapixels) and gives nearly the full decode's pixels."""
    from export.decoding import DecodeBudget, decode_upload

    pixels = np.zeros((3000, 4000, 3), "uint8")
    pixels[:, :2000] = (200, 30, 30)
    pixels[1500:, :, 2] = 250
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    budget = DecodeBudget(10**9)
    decoded = decode_upload(buffer.getvalue(), (SIZE, SIZE), 25_000_000, budget)
    assert budget.peak == 500 * 375 and budget.in_use == 0
    full = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
                      .resize((SIZE, SIZE), Image.BILINEAR), dtype="float32")
    assert decoded.shape == (SIZE, SIZE, 3)
    assert float(np.mean(np.abs(decoded - full))) < 3.0


def test_decode_budget_serializes_large_decodes():
    import threading
    import time

    from export.decoding import DecodeBudget

    budget = DecodeBudget(100)
    inside = []

    def work(pixels):
        with budget.hold(pixels):
            inside.append(budget.in_use)
            time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(60,)) for _ in range(4)]
    threads += [threading.Thread(target=work, args=(500,))]  # over budget: alone
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert budget.peak <= 500 and max(v for v in inside if v != 500) <= 100
    assert sorted(inside).count(500) == 1 and budget.in_use == 0
