"""Bounded concurrent load on the edge service: throughput and latency percentiles.

Starts `python -m export.service MODEL --port 0` on 127.0.0.1 (or uses --url),
then runs CLIENTS threads that each send REQUESTS `POST /predict` requests (one
PNG image per request, raw upload) over their own keep-alive `http.client`
connection, and prints what it measured in this one run:

    completed, errors, wall time, throughput (requests/s), latency p50/p95/p99 ms.

Only loopback addresses are allowed as targets. Every loop is bounded.

    python benchmarks/service_load.py                      # tiny random model
    python benchmarks/service_load.py --model model.onnx --clients 8 --requests 50
    python benchmarks/service_load.py --url http://127.0.0.1:8080 --json
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_service(model: str, *, threads: int = 4, timeout: float = 60.0,
                  extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """Starts the service on a free loopback port; returns (process, base URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "export.service", model, "--host", "127.0.0.1",
         "--port", "0", "--threads", str(threads), "--log-level", "WARNING",
         *extra_args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("Serving") or process.poll() is not None:
            break
    if not line.startswith("Serving"):
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"The service did not start: {line!r} {err[-2000:]}")
    url = line.strip().rsplit(" ", 1)[-1]
    return process, url


def stop_service(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def png_bytes(size: int, seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), "uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def run_load(url: str, payload: bytes, *, clients: int = 8, requests: int = 50,
             content_type: str = "image/png", timeout: float = 30.0) -> dict:
    """Sends `clients` x `requests` POST /predict requests; returns the numbers.

    Raises:
        ValueError: `url` is not a loopback address.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"Load tests target loopback only. Received: url={url!r}")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                                timeout=timeout)
        barrier.wait()
        for _ in range(requests):
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict?top_k=1", body=payload,
                                   headers={"Content-Type": content_type})
                response = connection.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200 or b"predictions" not in body:
                    with lock:
                        errors.append(f"HTTP {response.status}: {body[:200]!r}")
                    continue
                latencies[index].append(elapsed)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                                        timeout=timeout)
        connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout * requests)
    wall = time.perf_counter() - started
    ms = np.asarray([v for per in latencies for v in per]) * 1000.0
    completed = int(ms.size)
    return {
        "clients": clients,
        "requests_per_client": requests,
        "completed": completed,
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": wall,
        "throughput_rps": completed / wall if wall > 0 else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if completed else None,
        "p95_ms": float(np.percentile(ms, 95)) if completed else None,
        "p99_ms": float(np.percentile(ms, 99)) if completed else None,
        "max_ms": float(ms.max()) if completed else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="the .onnx file to serve (default: a tiny random model)")
    parser.add_argument("--url", default=None,
                        help="use a running service instead (loopback only)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50,
                        help="requests per client")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the PNG sent (default: the model's)")
    parser.add_argument("--threads", type=int, default=4, help="service threads")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)

    process = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url is None:
            model = args.model
            if model is None:
                from export.tiny_model import build_tiny_onnx

                model = build_tiny_onnx(os.path.join(tmp, "tiny.onnx"))
            process, url = start_service(model, threads=args.threads)
        else:
            url = args.url.rstrip("/")
        try:
            connection = http.client.HTTPConnection(
                urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port,
                timeout=30)
            connection.request("GET", "/metadata")
            metadata = json.loads(connection.getresponse().read())
            connection.close()
            size = args.image_size or metadata["input_shape"][1] or 224
            result = run_load(url, png_bytes(size), clients=args.clients,
                              requests=args.requests)
        finally:
            if process is not None:
                stop_service(process)
    result["model_input_shape"] = metadata["input_shape"]
    result["providers"] = metadata["providers"]
    result["service_threads"] = args.threads if args.url is None else None
    result["cpu_count"] = os.cpu_count()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['completed']}/{args.clients * args.requests} requests, "
              f"{result['errors']} errors, {args.clients} clients, "
              f"input {metadata['input_shape']}, {metadata['providers'][0]}")
        if result["completed"]:
            print(f"throughput {result['throughput_rps']:.1f} req/s over "
                  f"{result['wall_s']:.2f} s; latency ms p50 {result['p50_ms']:.2f} "
                  f"p95 {result['p95_ms']:.2f} p99 {result['p99_ms']:.2f} "
                  f"max {result['max_ms']:.2f}")
        for sample in result["error_samples"]:
            print("error:", sample)
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
