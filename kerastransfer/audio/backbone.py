"""Audio backbones: the built-in spectrogram CNN and TF-Hub waveform models.

* `spectrogram_cnn` (registry name, source `"kerastransfer"`): a small VGG-style
  CNN for log-mel spectrograms `(frames, mel_bins, 1)`: four blocks of two
  3x3 Conv-BatchNorm-ReLU layers (16, 32, 64, 128 filters), each but the last
  followed by 2x2 max pooling; ~290k parameters; its blocks `block1`..`block4`
  are its unfreezing blocks. `weights=None` initializes it; a weights file
  (e.g. the demo's pretrained keyword backbone) loads into it.
* TF-Hub audio SavedModels that take waveforms (YAMNet-style: float32
  `(batch, samples)` in, frame embeddings `(batch, frames, dim)` or clip
  embeddings `(batch, dim)` out) are wrapped by `hub_waveform_backbone` through
  the TF-Hub path (`kerastransfer/backbones/tfhub/`); the task pools frame
  embeddings over time.
"""

from __future__ import annotations

from typing import Any

from kerastransfer.backbones.spec import BackboneSpec, BlockRule

__all__ = [
    "SPECTROGRAM_CNN",
    "spectrogram_cnn_spec",
    "build_spectrogram_cnn",
    "hub_waveform_backbone",
]

SPECTROGRAM_CNN = "spectrogram_cnn"
_FILTERS = (16, 32, 64, 128)


def build_spectrogram_cnn(input_shape: tuple, pretrained: bool = False) -> Any:
    """Builds the spectrogram CNN (fresh weights; see the module docstring).

    Args:
        input_shape: `(frames, mel_bins, 1)`.
        pretrained: must be `False` (the built-in network has no bundled
            weights; pass a weights file as `weights=` instead).

    Returns:
        A `keras.Model` from spectrograms to a `(h, w, 128)` feature map.
    """
    import keras

    if pretrained:
        from kerastransfer.errors import WeightsError

        raise WeightsError(
            f"{SPECTROGRAM_CNN!r} has no bundled pretrained weights. Pass "
            "weights=None to train from scratch, or a weights file (e.g. the "
            "audio demo's pretrained keyword backbone). Received: weights='imagenet'"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="spectrogram")
    x = inputs
    for block, filters in enumerate(_FILTERS, start=1):
        for conv in (1, 2):
            prefix = f"block{block}_conv{conv}"
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=prefix
            )(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
        if block < len(_FILTERS):
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name=SPECTROGRAM_CNN)


def spectrogram_cnn_spec() -> BackboneSpec:
    """The registry entry of the built-in spectrogram CNN."""
    return BackboneSpec.create(
        SPECTROGRAM_CNN,
        build=build_spectrogram_cnn,
        family="audio_cnn",
        source="kerastransfer",
        aliases=("SpectrogramCNN",),
        preprocessing="none",
        preprocessing_inside=True,
        default_size=64,
        min_size=8,
        feature_dim=_FILTERS[-1],
        channels=1,
        blocks=BlockRule(patterns=(r"^(block\d+)_",)),
    )


def hub_waveform_backbone(handle: str, num_samples: int) -> Any:
    """Wraps a TF-Hub SavedModel that takes waveforms as a Keras backbone.

    Args:
        handle: a SavedModel directory, `file://` path or URL (as for
            `"tfhub:<handle>"` image backbones).
        num_samples: samples per clip.

    Returns:
        A `keras.Model` `(batch, num_samples)` -> frame embeddings
        `(batch, frames, dim)` or clip embeddings `(batch, dim)`.

    Raises:
        HubModelError: the model does not take float32 waveforms
            `(batch, samples)` or does not return rank-2/3 embeddings.
    """
    import keras

    from kerastransfer.backbones.tfhub.layer import HubBackbone
    from kerastransfer.backbones.tfhub.resolve import load_hub_object
    from kerastransfer.backbones.tfhub.signature import read_metadata
    from kerastransfer.errors import HubModelError

    obj = load_hub_object(handle)
    meta = read_metadata(obj, handle, None, None)
    output_rank = None if meta.output_shape is None else len(meta.output_shape)
    if (
        meta.input_dtype != "float32"
        or not meta.accepts((num_samples,))
        or output_rank not in (2, 3)
    ):
        raise HubModelError(
            "An audio TF-Hub backbone must take float32 waveforms (batch, samples) "
            "and return frame embeddings (batch, frames, dim) or clip embeddings "
            "(batch, dim). Use a waveform model (YAMNet-style), or an image "
            "backbone on the log-mel front end. Received: input shapes "
            f"{[list(s) for s in meta.input_shapes]}, dtype {meta.input_dtype}, "
            f"output shape {meta.output_shape} for handle={handle!r}"
        )
    layer = HubBackbone(
        handle,
        trainable=True,
        input_shape=(num_samples,),
        loaded_object=obj,
        name="hub_backbone",
    )
    inputs = keras.Input(shape=(num_samples,), name="hub_input")
    return keras.Model(inputs, layer(inputs), name="tfhub_waveform_backbone")
