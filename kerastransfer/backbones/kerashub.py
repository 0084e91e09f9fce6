"""KerasHub text encoders: the `kerashub:` preset prefix, config-built backbones,
their transformer blocks, and tokenizing strings for them.

A text backbone is a KerasHub `Backbone` (BERT, DistilBERT, ELECTRA, RoBERTa,
DeBERTaV3, ...) and its `TextClassifierPreprocessor` (tokenizer + packer). It
comes either from a preset (`"kerashub:bert_tiny_en_uncased"`, downloaded and
cached by KerasHub when the network is there) or from a `Backbone` instance the
user built, with its preprocessor passed alongside.

Token ids, segment ids and the padding mask of `n` texts travel through the
training core as ONE int32 array of shape `(n, 3, sequence_length)` (rows:
token ids, segment ids, padding mask; see `pack_tokens`), so the phased loop,
feature caching and resumable data order work on it unchanged.

Transformer blocks: KerasHub names its encoder layers `transformer_layer_<i>`
(BERT, DistilBERT, RoBERTa, ELECTRA, XLM-R) or `disentangled_attention_
encoder_layer_<i>` (DeBERTaV3); `TRANSFORMER_BLOCKS` groups the backbone's
layers into the embeddings (the stem) and one block per encoder layer (a
pooler on top joins the last block).

keras_hub is imported inside functions (an optional dependency: the `text`
extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerastransfer.backbones.spec import BlockRule
from kerastransfer.errors import DataError, UnknownBackboneError, WeightsError

__all__ = ["PREFIX", "TRANSFORMER_BLOCKS", "TextBackbone", "resolve_text_backbone",
           "load_preset", "check_texts", "pack_tokens", "tokenize",
           "is_kerashub_backbone", "TOKEN_ROWS"]

PREFIX = "kerashub:"
TOKEN_ROWS = ("token_ids", "segment_ids", "padding_mask")
TRANSFORMER_BLOCKS = BlockRule(
    patterns=(r"^(transformer_layer_\d+)$",
              r"^(disentangled_attention_encoder_layer_\d+)$",
              r"^(.*encoder_layer_\d+)$"),
    attach="previous", stem="embeddings")


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:  # pragma: no cover - the text extra is missing
        raise ImportError(
            "Text models need KerasHub. Install it with "
            "`pip install kerastransfer[text]`. Received: no module 'keras_hub'"
        ) from error
    return keras_hub


@dataclass
class TextBackbone:
    """A resolved text encoder: the KerasHub backbone, its preprocessor, name."""

    model: Any
    preprocessor: Any
    name: str
    pretrained: bool
    sequence_length: int


def is_kerashub_backbone(model: Any) -> bool:
    """Whether `model` is a KerasHub `Backbone` instance."""
    try:
        keras_hub = _keras_hub()
    except ImportError:
        return False
    return isinstance(model, keras_hub.models.Backbone)


def load_preset(name: str) -> tuple[Any, Any]:
    """Loads a KerasHub preset's backbone and text-classifier preprocessor.

    Args:
        name: the preset, with or without the `kerashub:` prefix.

    Returns:
        `(backbone, preprocessor)`.

    Raises:
        UnknownBackboneError: no KerasHub preset has this name (with the
            closest names).
        WeightsError: the preset could not be downloaded (offline).
    """
    from kerastransfer.errors import closest_names

    keras_hub = _keras_hub()
    preset = name[len(PREFIX):] if name.startswith(PREFIX) else name
    known = set(keras_hub.models.TextClassifierPreprocessor.presets)
    is_path = "://" in preset or "/" in preset or os.path.isdir(preset)
    if not is_path and preset not in known:
        close = closest_names(preset, sorted(known))
        hint = f" Close names: {', '.join(PREFIX + c for c in close)}." if close else ""
        raise UnknownBackboneError(
            f"Unknown KerasHub text preset.{hint} See "
            "keras_hub.models.TextClassifierPreprocessor.presets for the list. "
            f"Received: backbone={name!r}"
        )
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset)
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(preset)
    except (OSError, ConnectionError) as error:
        raise WeightsError(
            f"Could not download the KerasHub preset {preset!r} "
            f"({type(error).__name__}). Connect to the network once (KerasHub "
            "caches presets under "
            "~/.cache/kagglehub), pass a local preset folder as "
            "'kerashub:/path/to/preset', or pass a keras_hub Backbone instance with "
            f"preprocessor=. Received: backbone={name!r}"
        ) from error
    return backbone, preprocessor


def resolve_text_backbone(backbone: Any, preprocessor: Any = None, *,
                          sequence_length: int | None = 128,
                          weights: Any = "pretrained") -> TextBackbone:
    """Turns a `kerashub:` preset name or a KerasHub `Backbone` into a
    `TextBackbone`, its preprocessor set to `sequence_length`.

    Args:
        backbone: `"kerashub:<preset>"` or a `keras_hub.models.Backbone`.
        preprocessor: a `keras_hub.models.TextClassifierPreprocessor` (needed
            with a `Backbone` instance; a preset brings its own).
        sequence_length: tokens per text (longer texts are truncated). Defaults
            to `128`.
        weights: `"pretrained"` keeps the preset's (or the instance's) weights
            and trains in phases; `None` re-initializes a preset's architecture,
            and marks an instance as untrained (one phase, all trainable).
            Defaults to `"pretrained"`.

    Returns:
        A `TextBackbone`.

    Raises:
        TypeError: `backbone` or `preprocessor` is of the wrong type.
        ValueError: `sequence_length` is not a positive int or exceeds the
            encoder's maximum.
    """
    keras_hub = _keras_hub()
    pretrained = True
    if isinstance(backbone, str):
        if not backbone.startswith(PREFIX):
            raise UnknownBackboneError(
                f"A text backbone name starts with {PREFIX!r} (a KerasHub preset), "
                "e.g. 'kerashub:bert_tiny_en_uncased'. Received: "
                f"backbone={backbone!r}"
            )
        name = backbone
        model, preset_preprocessor = load_preset(backbone)
        preprocessor = preprocessor or preset_preprocessor
        if weights is None:
            model = type(model).from_config(model.get_config())
            pretrained = False
    elif isinstance(backbone, keras_hub.models.Backbone):
        name, model = backbone.name, backbone
        pretrained = weights is not None  # None: an untrained encoder
        if preprocessor is None:
            raise TypeError(
                "A KerasHub Backbone instance needs its tokenizer: pass preprocessor="
                "keras_hub.models.<Family>TextClassifierPreprocessor(tokenizer, "
                "sequence_length=...). Received: preprocessor=None"
            )
    else:
        raise TypeError(
            "backbone must be a 'kerashub:<preset>' name or a keras_hub.models."
            f"Backbone. Received: backbone={backbone!r}"
        )
    if not isinstance(preprocessor, keras_hub.models.TextClassifierPreprocessor):
        raise TypeError(
            "preprocessor must be a keras_hub.models.TextClassifierPreprocessor "
            "(e.g. BertTextClassifierPreprocessor). "
            f"Received: preprocessor={preprocessor!r}"
        )
    if sequence_length is None:
        sequence_length = preprocessor.sequence_length
    if (not isinstance(sequence_length, int) or isinstance(sequence_length, bool)
            or sequence_length < 3):
        raise ValueError(
            "sequence_length must be an int >= 3 (two special tokens and one "
            f"word). Received: sequence_length={sequence_length!r}"
        )
    maximum = getattr(model, "max_sequence_length", None)
    if maximum is not None and sequence_length > maximum:
        raise ValueError(
            f"sequence_length is above the encoder's maximum of {maximum} tokens "
            "(its position embeddings end there). Pass sequence_length<="
            f"{maximum}. Received: sequence_length={sequence_length}"
        )
    preprocessor.sequence_length = sequence_length
    return TextBackbone(model=model, preprocessor=preprocessor, name=name,
                        pretrained=pretrained, sequence_length=sequence_length)


def check_texts(texts: Any, name: str = "x") -> list[str]:
    """Returns `texts` as a list of str, or raises one clear error.

    Args:
        texts: a str list/tuple, a 1-D numpy array of str/bytes or a pandas
            Series.
        name: the argument's name for messages. Defaults to `"x"`.

    Raises:
        DataError: not text (numbers, images), an empty string, or no texts.
    """
    if isinstance(texts, str):
        raise DataError(
            f"{name} must be a list of texts, not one string. Wrap it: [text]. "
            f"Received: {name}={texts[:40]!r}"
        )
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        array = np.asarray(texts)
        if array.ndim != 1:
            raise DataError(
                f"{name} must be a 1-D list of texts; a text model cannot take "
                "images or other arrays. Pass strings. Received: "
                f"{name}.shape={array.shape}, dtype={array.dtype}"
            )
        texts = array.tolist()
    try:
        texts = list(texts)
    except TypeError as error:
        raise DataError(f"{name} must be a list of texts. Received: "
                        f"{name}={texts!r}") from error
    if not texts:
        raise DataError(f"{name} holds no texts. Pass at least one. Received: "
                        f"{name}=[]")
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise DataError(
                f"Every text must be a string. Convert or drop row {i}. "
                f"Received: {name}[{i}]={text!r} ({type(text).__name__})"
            )
        if not text.strip():
            raise DataError(
                f"Text {i} is empty: it has no words to classify. Drop it or fill "
                f"it in. Received: {name}[{i}]={text!r}"
            )
        out.append(text)
    return out


def pack_tokens(token_ids, segment_ids, padding_mask) -> np.ndarray:
    """Stacks the three token arrays `(n, L)` into one int32 `(n, 3, L)` array."""
    return np.stack([np.asarray(token_ids, np.int32), np.asarray(segment_ids, np.int32),
                     np.asarray(padding_mask).astype(np.int32)], axis=1)


def tokenize(preprocessor: Any, texts: Any, *, batch_size: int = 1024,
             name: str = "x") -> np.ndarray:
    """Tokenizes texts with a KerasHub preprocessor into the packed array.

    Args:
        preprocessor: a `TextClassifierPreprocessor`.
        texts: the texts (checked by `check_texts`).
        batch_size: texts tokenized per call. Defaults to `1024`.
        name: the argument's name for messages. Defaults to `"x"`.

    Returns:
        int32 `(n, 3, sequence_length)`: token ids, segment ids, padding mask.
    """
    import tensorflow as tf

    texts = check_texts(texts, name)
    parts = []
    for start in range(0, len(texts), batch_size):
        out = preprocessor(tf.constant(texts[start:start + batch_size]))
        segment = out.get("segment_ids", tf.zeros_like(out["token_ids"]))
        parts.append(pack_tokens(out["token_ids"].numpy(), segment.numpy(),
                                 out["padding_mask"].numpy()))
    return np.concatenate(parts)
