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
           "WINDOW_PRESETS", "resolve_window", "apply_window", "preprocess_images"]

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


# Intensity windows (center, width) in Hounsfield units: the usual radiology
# display windows for CT (e.g. Radiopaedia's "Windowing (CT)" article).
WINDOW_PRESETS = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "bone": (400.0, 1800.0),
    "liver": (60.0, 150.0),
}


def resolve_window(window) -> tuple[float, float] | None:
    """Returns `(center, width)` for a preset name or a pair, or None.

    Args:
        window: `None`, a `WINDOW_PRESETS` name (`"lung"`, `"brain"`, `"bone"`,
            `"soft_tissue"`, ...) or `(center, width)` in the image's units.

    Returns:
        `(center, width)` as floats, or `None`.

    Raises:
        ValueError: an unknown preset, or a width <= 0 or not finite.
    """
    if window is None:
        return None
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ValueError(
                f"Unknown window preset. Use one of {sorted(WINDOW_PRESETS)} or a "
                f"(center, width) pair. Received: window={window!r}")
        return WINDOW_PRESETS[window]
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            "window must be a preset name or a (center, width) pair of numbers. "
            f"Received: window={window!r}") from None
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise ValueError(
            "The window width must be a finite number > 0 (and the center finite). "
            f"Pass e.g. window=(40, 400). Received: window={window!r}")
    return center, width


def apply_window(images: np.ndarray, window) -> np.ndarray:
    """Maps intensities through a window to [0, 255] (as `ImagePreprocessing`).

    `[center - width / 2, center + width / 2]` maps linearly to [0, 255]; values
    outside are clipped.

    Args:
        images: float images in their original units (e.g. Hounsfield units).
        window: see `resolve_window`.

    Returns:
        float32 images in [0, 255] (unchanged when `window` is None).
    """
    x = np.asarray(images).astype("float32", copy=False)
    window = resolve_window(window)
    if window is None:
        return x
    center, width = window
    low = np.float32(center - width / 2.0)
    return np.clip((x - low) / np.float32(width), 0.0, 1.0) * np.float32(255.0)


def preprocess_images(images: np.ndarray, mode: str, window=None) -> np.ndarray:
    """Applies a backbone family's normalization in numpy (as `ImagePreprocessing`).

    Used when a model was exported with `include_preprocessing=False`.

    Args:
        images: float32 RGB images in [0, 255], channels last.
        mode: one of `PREPROCESSING_MODES`: `"caffe"`, `"tf"`, `"torch"`,
            `"unit"` or `"none"`.
        window: an intensity window applied first (`apply_window`). Defaults to
            `None`.

    Returns:
        The normalized float32 images.

    Raises:
        ValueError: an unknown mode.
    """
    x = apply_window(images, window)
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
