"""A tiny ONNX image classifier with kerastransfer metadata, built with onnx.helper.

For smoke-testing a deployment (the service, `kerastransfer predict/info/benchmark`)
without TensorFlow or a trained model: NHWC float32 RGB in [0, 255] -> scale to
[0, 1] -> transpose to NCHW -> 3x3 convolution -> ReLU -> global average pool ->
dense -> softmax. Its metadata is encoded by `kerastransfer.runtime.base`
(`encode_metadata`, the encoder `export_onnx` uses), so `OnnxPredictor` reads it
like a real export. Its predictions mean nothing.

    python -m export.tiny_model tiny.onnx --size 48 --classes cat,dog,bird
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

__all__ = ["build_tiny_onnx"]


def build_tiny_onnx(
    path: str,
    *,
    class_names: Sequence[str] = ("cat", "dog", "bird"),
    image_size: int = 48,
    channels: int = 8,
    seed: int = 0,
) -> str:
    """Writes a tiny random classifier to `path` (atomically) and returns `path`.

    Args:
        path: the `.onnx` file to write.
        class_names: the output classes. Defaults to `("cat", "dog", "bird")`.
        image_size: input height and width. Defaults to `48`.
        channels: convolution filters. Defaults to `8`.
        seed: seed of the random weights. Defaults to `0`.

    Returns:
        `path`.

    Example:

    >>> build_tiny_onnx("/tmp/tiny.onnx", class_names=["a", "b"])  # doctest: +SKIP
    '/tmp/tiny.onnx'
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from kerastransfer.io import atomic_write_bytes
    from kerastransfer.runtime.base import encode_metadata

    num_classes = len(class_names)
    if num_classes < 2:
        raise ValueError(
            f"A classifier needs at least 2 classes. Received: class_names="
            f"{list(class_names)}"
        )
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 0.5, (channels, 3, 3, 3)).astype("float32")
    bias = rng.normal(0, 0.1, (channels,)).astype("float32")
    dense = rng.normal(0, 1.0, (channels, num_classes)).astype("float32")
    dense_bias = rng.normal(0, 0.1, (num_classes,)).astype("float32")
    initializers = [
        numpy_helper.from_array(np.array(1 / 255, dtype="float32"), "scale"),
        numpy_helper.from_array(kernel, "kernel"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(dense, "dense"),
        numpy_helper.from_array(dense_bias, "dense_bias"),
    ]
    nodes = [
        helper.make_node("Mul", ["image", "scale"], ["scaled"]),
        helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel", "bias"], ["conv"],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "dense"], ["matmul"]),
        helper.make_node("Add", ["matmul", "dense_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["predictions"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info(
            "image", TensorProto.FLOAT, ["batch", image_size, image_size, 3])],
        [helper.make_tensor_value_info(
            "predictions", TensorProto.FLOAT, ["batch", num_classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="kerastransfer.tiny_model")
    model.ir_version = 8
    metadata = encode_metadata({
        "format_version": "1",
        "class_names": list(class_names),
        "num_classes": num_classes,
        "task": "multiclass",
        "output": "predictions",
        "backbone": "tiny_random_cnn",
        "input_name": "image",
        "input_shape": [None, image_size, image_size, 3],
        "input_layout": "NHWC",
        "input_dtype": "float32",
        "color_order": "RGB",
        "value_range": [0, 255],
        "include_preprocessing": True,
    })
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.tiny_model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .onnx file to write")
    parser.add_argument("--size", type=int, default=48, help="input size (48)")
    parser.add_argument("--classes", default="cat,dog,bird",
                        help="comma-separated class names (cat,dog,bird)")
    args = parser.parse_args(argv)
    build_tiny_onnx(args.out, class_names=args.classes.split(","),
                    image_size=args.size)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
