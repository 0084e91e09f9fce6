"""`python -m kerastransfer.demo` (`make demo`): the whole product, offline.

What it shows, on real handwritten digits with no download:

1. Transfer vs scratch. Source: 10,000 real MNIST digits shipped in the package;
   `digits_cnn` was pretrained on them by `python -m kerastransfer.demo.pretrain`
   (weights shipped too). Target: scikit-learn's `load_digits`, other writers
   scanned at 8x8 (a domain shift), with only k labelled images per class,
   scored on the same 800 held-out images. The same `TransferModel` protocol
   runs from the pretrained backbone (head on the frozen backbone, then
   fine-tuning) and from random weights (one phase, everything trainable, the
   same number of optimizer steps); it reports test accuracy and the first
   epoch reaching the target accuracy.
2. The product path on the k=10 pretrained model: a training report (learning
   curves with the phase boundary, confusion matrix), `.keras` save, ONNX export
   validated against Keras, prediction with the TensorFlow-free
   `OnnxPredictor`, and its speed next to Keras.

`--weights imagenet` runs part 1 with an ImageNet MobileNetV3Small instead
(needs the network once; Keras caches the weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_ACCURACY = 0.8
HEAD_STEPS, FINE_TUNE_STEPS = 200, 50  # the step budgets of the protocol
HEAD_LR, FINE_TUNE_LR, SCRATCH_LR = 1e-2, 1e-4, 1e-3
VALIDATE_EVERY = 5  # epochs; "epochs to target" is known to this granularity


def _echo(text: str = "") -> None:
    import click

    click.echo(text)


def register_demo_backbones(weights: str) -> tuple[str, tuple[int, int, int]]:
    """Registers the demo's backbone; returns its name and input shape."""
    import kerastransfer as kt
    from kerastransfer.demo import digits_cnn

    if weights == "imagenet":
        return "mobilenet_v3_small", (32, 32, 3)
    kt.register_backbone(
        "digits_cnn", lambda shape, w: digits_cnn(tuple(shape), w),
        preprocessing="unit", default_size=28, min_size=28, feature_dim=64,
        channels=1, blocks=kt.BlockRule((r"^(block\d)_",)), family="demo",
        overwrite=True,
    )
    return "digits_cnn", (28, 28, 1)


def _to_model_input(images, shape):
    """[0, 1] grayscale 28x28 -> what the backbone takes, as RGB-style [0, 255]."""
    import numpy as np

    x = images * 255.0
    if shape[-1] == 3:
        import tensorflow as tf

        x = tf.image.resize(np.repeat(x, 3, axis=-1), shape[:2]).numpy()
    return x.astype("float32")


def run_arm(arm: str, k: int, seed: int, backbone: str, shape, pretrained_weights):
    """Trains one arm on k labels per class; returns (model, history, summary)."""
    import keras

    import kerastransfer as kt
    from kerastransfer.demo import target_split

    split = target_split(k, seed=seed)
    x, y = _to_model_input(split["x_train"], shape), split["y_train"]
    x_test, y_test = _to_model_input(split["x_test"], shape), split["y_test"]
    batch_size = min(32, len(x))
    steps_per_epoch = math.ceil(len(x) / batch_size)
    head_epochs = math.ceil(HEAD_STEPS / steps_per_epoch)
    fine_tune_epochs = math.ceil(FINE_TUNE_STEPS / steps_per_epoch)
    keras.utils.set_random_seed(seed)
    pretrained = arm == "pretrained"
    model = kt.TransferModel(backbone, num_classes=10, input_shape=shape,
                             weights=pretrained_weights if pretrained else None,
                             class_names=[str(d) for d in range(10)], dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(HEAD_LR if pretrained
                                                  else SCRATCH_LR))
    start = time.perf_counter()
    history = model.fit(
        x, y, epochs=head_epochs, fine_tune_epochs=fine_tune_epochs,
        fine_tune_lr=FINE_TUNE_LR, cache_features=True, batch_size=batch_size,
        validation_data=(x_test, y_test), validation_freq=VALIDATE_EVERY, verbose=0,
    )
    seconds = time.perf_counter() - start
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    reached = None
    for epoch, value in enumerate(history.history.get("val_accuracy", [])):
        if value is not None and value >= TARGET_ACCURACY:
            reached = epoch + 1
            break
    summary = {"arm": arm, "k": k, "seed": seed, "test_accuracy": accuracy,
               "epochs_to_target": reached, "epochs": len(history.epoch),
               "seconds": seconds}
    return model, history, (x_test, y_test), summary


def _keras_vs_onnx_speed(model, predictor, image, repeats: int = 50) -> dict:
    """Batch-1 latency of onnxruntime, a tf.function call and model.predict,
    interleaved in one run (this machine is noisy: compare ratios)."""
    import statistics

    import tensorflow as tf

    call = tf.function(lambda t: model(t, training=False))
    tensor = tf.constant(image)
    call(tensor)
    predictor.predict(image)
    model.predict(image, verbose=0)
    times = {"onnxruntime": [], "tf.function": [], "predict": []}
    for i in range(repeats):
        for name, fn in (("onnxruntime", lambda: predictor.predict(image)),
                         ("tf.function", lambda: call(tensor).numpy()),
                         ("predict", lambda: model.predict(image, verbose=0))):
            if name == "predict" and i % 5:  # predict is slow: sample it less
                continue
            begin = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - begin)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"median_ms": {k: v * 1e3 for k, v in medians.items()},
            "onnx_over_tf_function": medians["onnxruntime"] / medians["tf.function"],
            "onnx_over_predict": medians["onnxruntime"] / medians["predict"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kerastransfer.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo_output",
                        help="folder for the report, model files and summary.json")
    parser.add_argument("--weights", default="mnist", choices=["mnist", "imagenet"],
                        help="the pretrained backbone: the shipped MNIST digits_cnn "
                        "(offline) or an ImageNet MobileNetV3Small (network)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 3, 10],
                        help="labelled images per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Each arm builds a new model, so TensorFlow warns about retracing: expected.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    os.makedirs(args.output, exist_ok=True)

    import numpy as np

    from kerastransfer.errors import KerasTransferError

    started = time.perf_counter()
    backbone, shape = register_demo_backbones(args.weights)
    _echo(f"kerastransfer demo: {backbone} pretrained on "
          f"{'ImageNet' if args.weights == 'imagenet' else '10,000 real MNIST digits'}"
          f" -> scikit-learn digits (other writers), 800 held-out test images.")
    _echo(f"Protocol: pretrained = head {HEAD_STEPS} steps on the frozen backbone "
          f"(lr {HEAD_LR}) + {FINE_TUNE_STEPS} fine-tuning steps (lr {FINE_TUNE_LR}, "
          f"BatchNorm frozen); scratch = same model from random weights, "
          f"{HEAD_STEPS + FINE_TUNE_STEPS} steps (lr {SCRATCH_LR}).\n")
    rows, showcase = [], None
    try:
        for k in args.budgets:
            for seed in args.seeds:
                for arm in ("pretrained", "scratch"):
                    model, history, test, summary = run_arm(
                        arm, k, seed, backbone, shape, args.weights)
                    rows.append(summary)
                    _echo(f"  k={k:<3} seed={seed} {arm:<10} test accuracy "
                          f"{summary['test_accuracy']:.3f}  epochs to "
                          f"{TARGET_ACCURACY:.0%}: {summary['epochs_to_target'] or '-'}"
                          f"  ({summary['seconds']:.0f} s)")
                    if arm == "pretrained" and (showcase is None or k >= showcase[3]):
                        showcase = (model, history, test, k)
    except KerasTransferError as error:
        _echo(f"Error: {error}")
        raise SystemExit(1) from error

    _echo("\nTransfer vs scratch (mean over seeds):")
    _echo(f"  {'labels/class':>12}  {'pretrained':>10}  {'scratch':>8}  "
          f"{'gain':>6}  epochs to {TARGET_ACCURACY:.0%} (pretrained / scratch)")
    table = []
    for k in args.budgets:
        by_arm = {arm: [r for r in rows if r["k"] == k and r["arm"] == arm]
                  for arm in ("pretrained", "scratch")}
        mean = {arm: float(np.mean([r["test_accuracy"] for r in v]))
                for arm, v in by_arm.items()}

        def epochs(results):
            hits = [r["epochs_to_target"] for r in results if r["epochs_to_target"]]
            return f"{np.mean(hits):.0f} ({len(hits)}/{len(results)})" if hits else \
                f"never (0/{len(results)})"

        table.append({"k": k, **{f"{a}_accuracy": m for a, m in mean.items()}})
        _echo(f"  {k:>12}  {mean['pretrained']:>10.3f}  {mean['scratch']:>8.3f}  "
              f"{mean['pretrained'] - mean['scratch']:>+6.3f}  "
              f"{epochs(by_arm['pretrained'])} / {epochs(by_arm['scratch'])}")

    # --- The product path on the showcase model ---------------------------------
    from kerastransfer.export import export_onnx
    from kerastransfer.report import write_report
    from kerastransfer.runtime import OnnxPredictor

    model, history, (x_test, y_test), k = showcase
    report_dir = os.path.join(args.output, "report")
    files = write_report(model, history, (x_test, y_test), report_dir)
    keras_path = os.path.join(args.output, "model.keras")
    model.save(keras_path)
    onnx_path = os.path.join(args.output, "model.onnx")
    export = export_onnx(model, onnx_path, atol=1e-4, validation_data=x_test[:64])
    predictor = OnnxPredictor(onnx_path)
    onnx_probs = predictor.predict(x_test)
    keras_probs = model.predict(x_test, verbose=0)
    speed = _keras_vs_onnx_speed(model, predictor, x_test[:1])
    summary = {
        "backbone": backbone, "weights": args.weights, "rows": rows, "table": table,
        "showcase_k": k,
        "onnx": {"path": onnx_path, "validated_max_abs_diff": export.max_abs_diff,
                 "test_max_abs_diff": float(np.abs(onnx_probs - keras_probs).max()),
                 "top1_agreement": float(np.mean(onnx_probs.argmax(1)
                                                 == keras_probs.argmax(1))),
                 "onnx_test_accuracy": float(np.mean(onnx_probs.argmax(1) == y_test)),
                 "providers": predictor.providers},
        "speed_batch1": speed, "report": files, "model": keras_path,
        "seconds": time.perf_counter() - started,
    }
    _echo(f"\nShowcase: the k={k} pretrained model (phases: "
          f"{', '.join(p['name'] for p in history.phases)}).")
    _echo(f"  report: {report_dir}/ (learning curves with the phase boundary, "
          "confusion matrix, per-class precision/recall/F1)")
    _echo(f"  ONNX:   {onnx_path} validated against Keras (max |diff| "
          f"{export.max_abs_diff:.1e}); onnxruntime test accuracy "
          f"{summary['onnx']['onnx_test_accuracy']:.3f}, top-1 agreement with Keras "
          f"{summary['onnx']['top1_agreement']:.3f}")
    ms = speed["median_ms"]
    _echo(f"  speed (batch 1, median, one run): onnxruntime {ms['onnxruntime']:.2f} ms"
          f", tf.function {ms['tf.function']:.2f} ms, model.predict "
          f"{ms['predict']:.1f} ms -> onnxruntime/tf.function "
          f"{speed['onnx_over_tf_function']:.2f}x, onnxruntime/predict "
          f"{speed['onnx_over_predict']:.3f}x")
    from kerastransfer.io import atomic_write_text

    atomic_write_text(os.path.join(args.output, "summary.json"),
                      json.dumps(summary, indent=2, default=str))
    _echo(f"\nDone in {summary['seconds']:.0f} s. Summary: "
          f"{os.path.join(args.output, 'summary.json')}")
    return summary


if __name__ == "__main__":
    main()
