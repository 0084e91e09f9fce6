"""`kerastransfer benchmark`: latency and throughput of an ONNX model on
onnxruntime (no TensorFlow)."""

from __future__ import annotations

import time

import click

from kerastransfer.cli._common import echo_json, model_kind, stderr_progress


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=1,
              show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed calls.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed calls first.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def benchmark(model_path, batch_size, runs, warmup, seed, as_json):
    """Measure an ONNX MODEL's latency (p50/p90/p99) and throughput.

    Times `OnnxPredictor.predict` on random images of the model's input size,
    on the providers onnxruntime picks (CUDA first when onnxruntime-gpu has a
    GPU).

    \b
    Examples:
      kerastransfer benchmark model.onnx
      kerastransfer benchmark model.onnx --batch-size 8 --runs 200 --json
    """
    import numpy as np

    model_kind(model_path, "'MODEL'", (".onnx",))
    from kerastransfer.cli.tasks import task_benchmark_inputs
    from kerastransfer.runtime import OnnxPredictor

    sample = task_benchmark_inputs(model_path, batch_size, seed)
    described = None  # what the input is, when not a float32 image batch
    if sample is not None:  # a task hook's inputs (waveforms, texts: cli/<task>.py)
        predictor, images, described = sample
        shape = [batch_size, *predictor.input_shape]
    else:
        predictor = OnnxPredictor(model_path)
        shape = [batch_size, *(d if isinstance(d, int) and d > 0 else 224
                               for d in predictor.input_shape)]
        images = np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")
    for _ in range(warmup):
        predictor.predict(images)
    latencies = []
    with stderr_progress(range(runs), label="Benchmarking") as bar:
        for _ in bar:
            start = time.perf_counter()
            predictor.predict(images)
            latencies.append(time.perf_counter() - start)
    ms = np.asarray(latencies) * 1000.0
    result = {
        "model": model_path,
        "providers": list(predictor.providers),
        "batch_size": batch_size,
        "input_shape": shape,
        "runs": runs,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_images_per_s": float(batch_size * runs / (ms.sum() / 1000.0)),
    }
    if as_json:
        echo_json(result)
        return
    click.echo(f"Provider: {', '.join(result['providers'])}")
    click.echo(f"Input: {described or f'{shape} float32'}, {runs} runs after "
               f"{warmup} warm-up")
    click.echo(f"Latency ms: p50 {result['p50_ms']:.2f}  p90 {result['p90_ms']:.2f}"
               f"  p99 {result['p99_ms']:.2f}  mean {result['mean_ms']:.2f}")
    click.echo(f"Throughput: {result['throughput_images_per_s']:.1f} images/s")
