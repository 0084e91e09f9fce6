"""First-convolution adaptation: pretrained RGB backbones for C != 3 input channels.

A backbone pretrained on RGB images keeps its pretrained weights when it is given
grayscale (C = 1) or multi-channel (C > 3, e.g. MRI sequences, microscopy stains)
input: only the first convolution's kernel changes, it is not re-initialized.

What the adapted model computes (`adapt_input_channels`):

* Everything between the image and the first convolution -- the family's
  normalization (`ImagePreprocessing`, and `Rescaling`/`Normalization` layers
  inside the Keras model) and zero padding -- is a per-channel affine map
  `x_c -> a_c * x_c + b_c` followed by padding. It is *measured* on the RGB
  backbone (constant images), not read from the family's code, and checked on a
  random image; a backbone whose first layers are not of this form is refused.
* The normalization is folded into the kernel: the adapted input is the raw
  image (same units as the RGB model's input, [0, 255]), its kernel slice for
  raw channel c is `a_c * K_c`, and the offsets `b_c` go through an extra
  constant input channel of ones, zero-padded like the image, so the result is
  exact also at the padded borders.
* C = 1: the kernel slices are summed, so the adapted model on a grayscale image
  `g` equals the RGB model on `g` repeated three times (numerically: relative
  difference of the features about 1e-6, `tests/test_adapt.py`).
* C >= 2: channel i takes the RGB slice (and normalization) of channel `i % 3`,
  scaled by `3 / C`, as timm's `adapt_input_conv` does.
* A backbone with N != 3 native channels (a user's grayscale `keras.Model`) is
  measured and adapted the same way with N in place of 3: N = 1 -> C gives each
  channel the gray slice divided by C, so the gray image repeated C times gives
  the gray model's output (relative difference about 1e-7,
  `tests/test_adapt.py`).

Feature pyramids: the adapted model shares the RGB model's layers in a new
graph, where a layer's `.output` (its first call, in the RGB graph) is not
connected to the new input, and `model.layers` indices shift. The adaptation
records each shared layer's output in the new graph; `layer_output` (used by
`pyramid_model`) reads a level, named by layer or by index into the RGB model's
layers, from that record.

The adapted backbone is rebuilt with `keras.models.clone_model`, sharing every
layer after the first convolution (the block names the unfreezing rules use are
unchanged).
"""

from __future__ import annotations

import weakref

import numpy as np

from kerastransfer.errors import InputShapeError

__all__ = ["adapt_input_channels", "adapted_kernel", "layer_output",  # noqa: F822
           "AppendOnes"]  # built lazily, see __getattr__

_CONV_TYPES = ("Conv2D",)


def _append_ones_class():
    import keras

    @keras.saving.register_keras_serializable(package="kerastransfer")
    class AppendOnes(keras.layers.Layer):
        """Appends a constant channel of ones (carries the folded offsets)."""

        def call(self, inputs):
            ones = keras.ops.ones_like(inputs[..., :1])
            return keras.ops.concatenate([inputs, ones], axis=-1)

        def compute_output_shape(self, input_shape):
            channels = input_shape[-1]
            return (*input_shape[:-1], None if channels is None else channels + 1)

    return AppendOnes


_APPEND_ONES = None


def __getattr__(name):  # AppendOnes is built lazily: no keras import at import time
    global _APPEND_ONES
    if name == "AppendOnes":
        if _APPEND_ONES is None:
            _APPEND_ONES = _append_ones_class()
        return _APPEND_ONES
    raise AttributeError(name)


def _is_conv(layer) -> bool:
    return type(layer).__name__ in _CONV_TYPES


def _first_conv(backbone):
    """The first convolution and the top-level layer holding it (itself, or a
    nested `Sequential` stem whose first layer it is, as in ConvNeXt)."""
    for layer in backbone.layers:
        if _is_conv(layer):
            return layer, layer
        inner = getattr(layer, "layers", None)
        if isinstance(inner, list) and inner:
            first = [sub for sub in inner if type(sub).__name__ != "InputLayer"]
            if first and _is_conv(first[0]):
                return first[0], layer
            break
        if layer.weights and type(layer).__name__ not in ("Normalization",):
            break
    raise InputShapeError(
        "Cannot adapt the input channels: the backbone's first layer with weights "
        "is not a Conv2D. Use a backbone whose stem is a convolution, or give it "
        f"3-channel images. Received: backbone={backbone.name!r}"
    )


def measure_stem(backbone, preprocessing: str = "none"):
    """Measures the per-channel affine map and padding before the first convolution.

    Args:
        backbone: a functional `keras.Model` mapping images (3 or N channels)
            to features.
        preprocessing: the `ImagePreprocessing` mode applied before the backbone.
            Defaults to `"none"`.

    Returns:
        `(conv, holder, perm, scale, offset, pad)`: the first `Conv2D` layer and
        the top-level layer holding it (see `_first_conv`); for each raw
        channel c the convolution-input channel `perm[c]` it feeds, with
        `scale[c]` and `offset[c]`; and `pad = ((top, bottom), (left, right))`.

    Raises:
        ValueError: the layers before the first convolution are not a per-channel
            affine map (with padding).
    """
    import keras

    from kerastransfer.preprocessing import ImagePreprocessing

    conv, holder = _first_conv(backbone)
    native = backbone.input_shape[-1]
    if not isinstance(native, int) or native < 1:
        raise InputShapeError(
            "Cannot adapt the input channels: the backbone's input has no fixed "
            "channel count. Build it with keras.Input((height, width, channels)). "
            f"Received: backbone.input_shape={backbone.input_shape}")
    if native != 3 and preprocessing in ("caffe", "torch"):
        raise InputShapeError(
            f"Cannot adapt the input channels: preprocessing {preprocessing!r} "
            f"has per-channel RGB constants, but the backbone takes {native} "
            "channel(s). Pass preprocessing='none' (or 'unit'/'tf') and put "
            "its normalization inside the backbone. "
            f"Received: preprocessing={preprocessing!r}")
    pre = keras.Model(backbone.inputs, holder.input)
    norm = ImagePreprocessing(preprocessing)
    height, width = (s or 32 for s in backbone.input_shape[1:3])

    def run(x):
        return np.asarray(pre(norm(x[None].astype("float32"))), dtype="float64")[0]

    base = run(np.zeros((height, width, native)))
    value = 100.0
    probes = []
    for c in range(native):
        x = np.zeros((height, width, native))
        x[..., c] = value
        probes.append((run(x) - base) / value)
    moved = np.abs(np.sum(probes, axis=0)).max(axis=-1) > 0
    rows, cols = np.nonzero(moved)
    if rows.size == 0 or (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) != (
            height, width):
        raise InputShapeError(_not_affine(backbone, "the input does not reach the "
                                     "convolution pixel for pixel"))
    top, left = int(rows.min()), int(cols.min())
    pad = ((top, base.shape[0] - height - top), (left, base.shape[1] - width - left))
    centre = [p[top + height // 2, left + width // 2] for p in probes]
    matrix = np.stack(centre, axis=1)  # conv channel j <- raw channel c
    perm = np.argmax(np.abs(matrix), axis=0)
    scale = matrix[perm, range(native)]
    if sorted(perm.tolist()) != list(range(native)) or np.any(
            np.abs(matrix).sum(axis=0) - np.abs(scale) > 1e-6 * np.abs(scale).max()):
        raise InputShapeError(_not_affine(backbone, "channels are mixed"))
    offset_map = base[top:top + height, left:left + width]
    offset = offset_map[height // 2, width // 2][perm]
    # Check the affine model on a random image (catches non-linear stems).
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (height, width, native))
    expected = np.zeros_like(base)
    inner = expected[top:top + height, left:left + width]
    for c in range(native):
        inner[..., perm[c]] = scale[c] * x[..., c] + offset[c]
    got = run(x)
    atol = 1e-4 * (np.abs(expected).max() + 1)
    if not np.allclose(got, expected, rtol=1e-4, atol=atol):
        raise InputShapeError(
            _not_affine(backbone, "the map is not affine per channel"))
    return conv, holder, perm, scale, offset, pad


def _not_affine(backbone, why):
    return ("Cannot adapt the input channels: the layers before the first "
            f"convolution are not a per-channel scale and offset ({why}). Give the "
            f"backbone 3-channel images. Received: backbone={backbone.name!r}")


def adapted_kernel(kernel, channels: int, perm, scale, offset) -> np.ndarray:
    """The first convolution's kernel for `channels` raw input channels + ones.

    With N = the backbone's native channels (3 for RGB): C = 1 sums the N
    slices (gray repeated N times gives the native output); otherwise channel i
    takes native channel `i % N`'s slice scaled by `N / C` (timm's
    `adapt_input_conv`). For N = 1 this is the gray slice divided by C, so the
    gray image repeated C times gives the native output.

    Args:
        kernel: the native kernel `(kh, kw, N, filters)` acting on normalized
            input.
        channels: C, the new number of input channels.
        perm, scale, offset: from `measure_stem` (N entries each).

    Returns:
        A `(kh, kw, channels + 1, filters)` kernel; the last slice multiplies the
        constant ones channel (the folded normalization offsets).

    Raises:
        InputShapeError: `perm`, `scale` and `offset` do not have one entry per
            input channel of `kernel`.

    Example:

    >>> import numpy as np
    >>> k = adapted_kernel(np.ones((1, 1, 1, 2)), 3, [0], [1.0], [0.0])
    >>> k.shape, round(float(k[0, 0, 0, 0]), 4)
    ((1, 1, 4, 2), 0.3333)
    """
    kernel = np.asarray(kernel, dtype="float64")
    native = kernel.shape[2]
    if not len(perm) == len(scale) == len(offset) == native:
        raise InputShapeError(
            f"The kernel has {native} input channel(s), but the measured stem "
            f"has {len(perm)}: perm, scale and offset need one entry per kernel "
            "input channel (measure them with measure_stem on the same "
            f"backbone). Received: kernel.shape={kernel.shape}, perm={list(perm)}")
    raw = [scale[c] * kernel[:, :, perm[c]] for c in range(native)]  # per raw channel
    bias = [offset[c] * kernel[:, :, perm[c]] for c in range(native)]
    if channels == 1:
        slices, ones = [sum(raw)], sum(bias)
    else:
        factor = native / channels
        slices = [factor * raw[i % native] for i in range(channels)]
        ones = factor * sum(bias[i % native] for i in range(channels))
    return np.stack([*slices, ones], axis=2).astype("float32")


def adapt_input_channels(backbone, channels: int, preprocessing: str = "none"):
    """Returns `backbone` taking `channels`-channel raw images, weights kept.

    Args:
        backbone: a functional `keras.Model`, RGB or with any other fixed
            channel count N (its weights are reused, shared).
        channels: C >= 1, the new number of input channels.
        preprocessing: the `ImagePreprocessing` mode the RGB model expects in
            front of it; it is folded into the new first convolution, so the
            returned model takes raw images (same units as the RGB input).
            Defaults to `"none"`.

    Returns:
        A `keras.Model` with input `(h, w, channels)`.

    Raises:
        ValueError: `channels` < 1, or the backbone's stem cannot be adapted.
    """
    import keras

    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError("channels must be a positive int. "
                         f"Received: channels={channels!r}")
    conv, holder, perm, scale, offset, pad = measure_stem(backbone, preprocessing)
    config = conv.get_config()
    config["name"] = f"{conv.name}_c{channels}"
    config["dtype"] = conv.dtype_policy
    new_conv = type(conv).from_config(config)
    new_pad = keras.layers.ZeroPadding2D(pad, name=f"{conv.name}_c{channels}_pad")
    ones = __getattr__("AppendOnes")(name=f"{conv.name}_c{channels}_ones")
    before = set()
    for layer in backbone.layers:
        if layer is holder:
            break
        before.add(id(layer))
    rest = [] if holder is conv else [
        sub for sub in holder.layers
        if sub is not conv and type(sub).__name__ != "InputLayer"]

    # Each shared layer's output *in the adapted graph*: `layer.output` is its
    # first call's, in the RGB graph, so a feature pyramid cut by layer name
    # from the adapted model would not be connected to its input.
    outputs = {}

    def call_function(layer, *args, **kwargs):
        if id(layer) in before:
            return args[0]
        if layer is holder:
            x = outputs[id(conv)] = new_conv(new_pad(ones(args[0])))
            for sub in rest:  # the rest of a nested stem, inlined
                x = sub(x)
            outputs[id(holder)] = x
            return x
        outputs[id(layer)] = layer(*args, **kwargs)
        return outputs[id(layer)]

    shape = (*backbone.input_shape[1:3], channels)
    inputs = keras.Input(shape=shape, name=backbone.inputs[0].name.split(":")[0])
    adapted = keras.models.clone_model(
        backbone, input_tensors=inputs, clone_function=lambda layer: layer,
        call_function=call_function)
    weights = [adapted_kernel(conv.kernel.numpy(), channels, perm, scale, offset)]
    if conv.use_bias:
        weights.append(conv.bias.numpy())
    new_conv.set_weights(weights)
    _SOURCES[adapted] = (tuple(backbone.layers), outputs)
    return adapted


# adapted model -> (the RGB model's layers, {id(layer): output in the adapted
# graph}). Weak keys: the record goes with the model.
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_output(model, ref):
    """The output, in `model`'s own graph, of a layer named by the RGB backbone.

    A pyramid is recorded against the RGB backbone (`KERAS_PYRAMIDS`: layer
    names, or indices into its `layers`). In a model returned by
    `adapt_input_channels` the indices shift (normalization layers dropped,
    the new stem added) and a shared layer's `.output` is the RGB graph's, so
    both are looked up in what `adapt_input_channels` recorded.

    Args:
        model: a functional `keras.Model`, adapted or not.
        ref: a layer name, or an index into the RGB backbone's `layers`.

    Returns:
        A symbolic tensor of `model`'s graph.

    Raises:
        InputShapeError: `ref` is a layer before the first convolution of an
            adapted model (folded into it, so it has no output there).
        ValueError: no layer has the name `ref`.
    """
    record = _SOURCES.get(model)
    if record is None:
        layer = model.layers[ref] if isinstance(ref, int) else model.get_layer(ref)
        return layer.output
    layers, outputs = record
    if isinstance(ref, int):
        layer = layers[ref]
    else:
        found = [layer for layer in layers if layer.name == ref]
        if not found:
            raise ValueError(
                f"No such layer: {ref}. Existing layers are: "
                f"{[layer.name for layer in layers]}. Received: ref={ref!r}")
        layer = found[0]
    if id(layer) not in outputs:
        raise InputShapeError(
            f"Layer {layer.name!r} comes before the first convolution, which "
            "absorbed it when the input channels were adapted, so the adapted "
            "backbone has no output for it. Read a deeper layer, or give the "
            f"backbone 3-channel images. Received: ref={ref!r}")
    return outputs[id(layer)]
