"""Each backbone family's input normalization in numpy, and its constants.

This is the one copy of the normalization constants: the Keras layer
`kerastransfer.preprocessing.ImagePreprocessing` imports them from here, so the
graph exported with its preprocessing and the numpy path the runtime takes for a
model exported without it (`include_preprocessing=False`) cannot drift apart.
No TensorFlow, no Keras.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PREPROCESSING_MODES", "CAFFE_BGR_MEAN", "TORCH_MEAN", "TORCH_STD",
           "preprocess_images"]

# mode -> what it does to an RGB image in [0, 255]
PREPROCESSING_MODES = {
    "caffe": "RGB->BGR, minus the ImageNet BGR mean (VGG, ResNet v1)",
    "tf": "scale to [-1, 1] (MobileNet v1/v2, ResNet v2, Inception, Xception, NASNet)",
    "torch": "scale to [0, 1], minus ImageNet mean, divided by std (DenseNet)",
    "unit": "scale to [0, 1]",
    "none": "identity: the backbone preprocesses inside (EfficientNet, MobileNetV3, "
    "ConvNeXt)",
}

# The ImageNet statistics of `keras.applications.imagenet_utils.preprocess_input`.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # B, G, R, subtracted after RGB->BGR
TORCH_MEAN = (0.485, 0.456, 0.406)  # R, G, B of images scaled to [0, 1]
TORCH_STD = (0.229, 0.224, 0.225)


def preprocess_images(images: np.ndarray, mode: str) -> np.ndarray:
    """Applies a backbone family's normalization in numpy (as `ImagePreprocessing`).

    Used when a model was exported with `include_preprocessing=False`.

    Args:
        images: float32 RGB images in [0, 255], channels last.
        mode: one of `PREPROCESSING_MODES`: `"caffe"`, `"tf"`, `"torch"`,
            `"unit"` or `"none"`.

    Returns:
        The normalized float32 images.

    Raises:
        ValueError: an unknown mode.
    """
    x = np.asarray(images).astype("float32", copy=False)
    if mode == "none":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        mean = np.asarray(TORCH_MEAN, dtype="float32")
        std = np.asarray(TORCH_STD, dtype="float32")
        return (x / 255.0 - mean) / std
    if mode == "caffe":
        return x[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, dtype="float32")
    raise ValueError(
        "Unknown preprocessing mode in the model metadata. Re-export the model "
        f"with this kerastransfer version. Received: mode={mode!r}"
    )
