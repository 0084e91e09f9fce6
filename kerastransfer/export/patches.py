"""The only private Keras API of the export: two tracing patches for tf2onnx.

Written for Keras 3.15 (TensorFlow backend). Two things in
`keras.src.backend.tensorflow.nn` produce graphs onnxruntime refuses (ConvNeXt
hits both), and Keras has no public switch for either:

- `conv` runs grouped convolutions inside `tf.function(jit_compile=True)`,
  which tf2onnx leaves as an unconverted `StatefulPartitionedCall`;
- `gelu(approximate=False)` is lowered by TensorFlow to `Erfc`, which tf2onnx
  cannot convert.

While tracing for export only, `export_patches()` swaps in a grouped
convolution without the XLA wrapper (plain `tf.nn.convolution`, which tf2onnx
maps to an ONNX `Conv` with `group`) and an exact GELU written with `erf`
(`0.5 * x * (1 + erf(x / sqrt(2)))`, mathematically the same). Both are
restored when the context exits, so training and inference in Keras are
unchanged.

The patches are applied only when `check_keras()` finds the functions with the
signatures they were written for (Keras 3.x); otherwise the export runs
unpatched with a warning (most backbones need no patch). `tests/test_export.py`
fails loudly when a Keras upgrade changes the patched functions.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import threading
from collections.abc import Iterator

__all__ = ["KERAS_VERSION_WRITTEN_FOR", "PATCHED", "check_keras", "export_patches"]

logger = logging.getLogger(__name__)

KERAS_VERSION_WRITTEN_FOR = "3.15"
# function name in keras.src.backend.tensorflow.nn -> its parameters in 3.15
PATCHED = {
    "conv": ("inputs", "kernel", "strides", "padding", "data_format",
             "dilation_rate"),
    "gelu": ("x", "approximate"),
    "_convert_data_format": ("data_format", "ndim"),  # used by the new conv
}
_PATCH_LOCK = threading.Lock()


def check_keras() -> list[str]:
    """What prevents the patches on the installed Keras (empty: none).

    Returns:
        Human-readable problems: a Keras major version other than 3, or a
        patched function missing or with other parameters than in Keras 3.15.
    """
    import keras

    problems = []
    if keras.__version__.split(".")[0] != "3":
        problems.append(f"Keras {keras.__version__} is not Keras 3")
        return problems
    try:
        from keras.src.backend.tensorflow import nn as tf_nn
    except ImportError as error:
        return [f"keras.src.backend.tensorflow.nn cannot be imported ({error})"]
    for name, params in PATCHED.items():
        function = getattr(tf_nn, name, None)
        if function is None:
            problems.append(f"keras.src.backend.tensorflow.nn.{name} is missing")
            continue
        found = tuple(inspect.signature(function).parameters)
        if found != params:
            problems.append(
                f"keras.src.backend.tensorflow.nn.{name} takes {found}, not {params}")
    return problems


@contextlib.contextmanager
def export_patches() -> Iterator[None]:
    """Makes Keras's TensorFlow backend trace ONNX-convertible ops; restores after.

    Replaces `keras.src.backend.tensorflow.nn.conv` (grouped convolutions without
    `tf.function(jit_compile=True)`) and `...nn.gelu` (exact GELU through `erf`)
    when `check_keras()` finds no problem; otherwise changes nothing and logs a
    warning.
    """
    problems = check_keras()
    if problems:
        logger.warning(
            "ONNX export patches (written for Keras %s) not applied: %s. Grouped "
            "convolutions and exact GELU (ConvNeXt) may not convert.",
            KERAS_VERSION_WRITTEN_FOR, "; ".join(problems))
        yield
        return
    import tensorflow as tf
    from keras.src import backend
    from keras.src.backend.tensorflow import nn as tf_nn

    original_conv = tf_nn.conv
    original_gelu = tf_nn.gelu

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None,
             dilation_rate=1):
        data_format = backend.standardize_data_format(data_format)
        channel_axis = -1 if data_format == "channels_last" else 1
        channels = inputs.shape[channel_axis]
        if channels == kernel.shape[-2] or len(inputs.shape) == 5:
            return original_conv(inputs, kernel, strides, padding, data_format,
                                 dilation_rate)
        # Grouped convolution: the same call as Keras's `_conv`, without XLA.
        return tf.nn.convolution(
            inputs, kernel, strides, padding.upper(),
            data_format=tf_nn._convert_data_format(data_format, len(inputs.shape)),
            dilations=dilation_rate,
        )

    def gelu(x, approximate=True):
        if approximate:
            return original_gelu(x, approximate=True)
        x = tf.convert_to_tensor(x)
        half = tf.cast(0.5, x.dtype)
        return half * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))

    with _PATCH_LOCK:
        tf_nn.conv, tf_nn.gelu = conv, gelu
        try:
            yield
        finally:
            tf_nn.conv, tf_nn.gelu = original_conv, original_gelu
