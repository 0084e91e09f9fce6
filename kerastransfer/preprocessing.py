"""The image preprocessing of each backbone family, as a serializable Keras layer.

Keras Applications ship `preprocess_input` functions, but a model that calls them
through a `Lambda` layer cannot be reloaded with `safe_mode=True`. `ImagePreprocessing`
does the same arithmetic with `keras.ops`, so it saves, reloads and exports to ONNX
like any other layer. Every `TransferModel` takes images as users have them
(RGB, float values in [0, 255]) and starts with this layer.
"""

from __future__ import annotations

import keras
from keras import ops

# The one copy of the constants is TensorFlow-free, for the runtime too.
from kerastransfer.runtime.preprocess import CAFFE_BGR_MEAN as _CAFFE_BGR_MEAN
from kerastransfer.runtime.preprocess import PREPROCESSING_MODES, resolve_window
from kerastransfer.runtime.preprocess import TORCH_MEAN as _TORCH_MEAN
from kerastransfer.runtime.preprocess import TORCH_STD as _TORCH_STD

__all__ = ["ImagePreprocessing", "PREPROCESSING_MODES"]


@keras.saving.register_keras_serializable(package="kerastransfer")
class ImagePreprocessing(keras.layers.Layer):
    """Applies a backbone family's input normalization to RGB images in [0, 255].

    Matches `keras.applications.<family>.preprocess_input` for the family's mode.

    Args:
        mode: one of `"caffe"`, `"tf"`, `"torch"`, `"unit"`, `"none"`. Defaults to
            `"none"`.
        window: an intensity window applied first: a preset name (`"lung"`,
            `"brain"`, `"bone"`, `"soft_tissue"`, ...) or `(center, width)` in the
            images' units; `[center - width/2, center + width/2]` maps to
            [0, 255], clipped (`kerastransfer.runtime.preprocess.apply_window`).
            Defaults to `None`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> layer = ImagePreprocessing("tf")
    >>> np.asarray(layer(np.full((1, 2, 2, 3), 255.0)))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, mode: str = "none", window=None, **kwargs):
        super().__init__(**kwargs)
        self.window = resolve_window(window)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                "Unknown preprocessing mode. Use one of "
                f"{sorted(PREPROCESSING_MODES)}. Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.window is not None:
            center, width = self.window
            x = ops.clip((x - (center - width / 2.0)) / width, 0.0, 1.0) * 255.0
        if self.mode == "none":
            return x
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        # caffe: channels reversed to BGR, then the BGR mean subtracted.
        x = ops.flip(x, axis=-1)
        return x - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        window = None if self.window is None else list(self.window)
        return {**super().get_config(), "mode": self.mode, "window": window}
