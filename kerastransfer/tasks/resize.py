"""`BilinearResize`: a feature-map resize that behaves the same in Keras and ONNX.

The dense tasks (segmentation decoders, the detection FPN) resize feature maps
with `BilinearResize`, not `keras.layers.Resizing`, for two measured reasons
(docs/design.md, fact 23):

* `Resizing.call(data, training=True)`: a functional model called without
  `training=` (`model(x)`) takes that default into its call context, so every
  BatchNorm after the first resize ran in training mode (batch statistics):
  `model(x)` and `model.predict(x)` differed by up to 0.8 in probability;
* tf2onnx converts a resize of static shapes to an ONNX `Resize` given
  `scales = out / in` in float32; when the ratio is not whole (valid-padding
  encoders: Xception's 3 -> 8) onnxruntime computes `floor(in * scale)` one
  pixel short and refuses the graph.

`BilinearResize` computes TensorFlow's half-pixel bilinear resize (the same
indices, weights and `a + (b - a) * t` arithmetic as `tf.image.resize`) with
`take` along each axis, which converts to ONNX `Gather`/`Sub`/`Mul`/`Add` of
exact sizes.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["BilinearResize"]


def _bilinear_weights(in_size: int, out_size: int):
    """TensorFlow's half-pixel bilinear source indices and weights, in float32.

    As `resize_bilinear_op.cc` computes them: `x = (i + 0.5) * in / out - 0.5`,
    lower `max(floor(x), 0)`, upper `min(ceil(x), in - 1)`, weight
    `x - floor(x)`.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale \
        - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype("int32")
    upper = np.minimum(np.ceil(x), in_size - 1).astype("int32")
    return lower, upper, (x - floor).astype("float32")


@keras.saving.register_keras_serializable(package="kerastransfer")
class BilinearResize(keras.layers.Layer):
    """Bilinear resize of NHWC maps to `(height, width)` (half-pixel centers).

    Numerically `keras.ops.image.resize(x, (height, width))` (TensorFlow's
    kernel, no antialiasing), written with `take` so that it exports to ONNX
    with exact output sizes and has no `training` argument (see the module
    docstring).

    Args:
        height: output height.
        width: output width.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> y = BilinearResize(8, 8)(np.ones((1, 3, 3, 2), "float32"))
    >>> tuple(y.shape)
    (1, 8, 8, 2)
    """

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def build(self, input_shape):
        # The sizes the model was built with: a dataset whose elements have no
        # static height/width (augmentation pipelines) traces `call` with
        # `None` there, and the gather indices need the real sizes.
        self._built_hw = tuple(input_shape[1:3])
        super().build(input_shape)

    def call(self, inputs):
        x = inputs
        built = getattr(self, "_built_hw", (None, None))
        sizes = [x.shape[1] or built[0], x.shape[2] or built[1]]
        if None in sizes:  # a model of any input size: the same kernel, dynamic
            return keras.ops.image.resize(x, (self.height, self.width),
                                          interpolation="bilinear")
        for axis, out_size in ((2, self.width), (1, self.height)):
            in_size = int(sizes[axis - 1])
            if in_size == out_size:
                continue
            lower, upper, weight = _bilinear_weights(in_size, out_size)
            shape = [1, 1, 1, 1]
            shape[axis] = out_size
            weight = keras.ops.cast(weight.reshape(shape), x.dtype)
            low = keras.ops.take(x, lower, axis=axis)
            high = keras.ops.take(x, upper, axis=axis)
            x = low + (high - low) * weight
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
