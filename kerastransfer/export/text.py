"""ONNX export of a `TextClassifier`: encoder + head on int token inputs, the
tokenizer written next to it, parity with Keras on real tokenized sentences.

`export_onnx` runs its one flow (`export/onnx.py`) with `TextExport`, the text
`TaskExport` (`export/task_export.py`) a `TextClassifier` returns from
`onnx_exporter()`. The graph takes `token_ids`, `segment_ids` and
`padding_mask` (int32, `(batch, length)`, both axes dynamic: a sentence needs
only its own length); `kerastransfer.runtime.TextPredictor` runs it with the
`model.tokenizer.json` written here (see `kerastransfer/runtime/text.py`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError, ExportValidationError
from kerastransfer.export.task_export import TaskExport, common_metadata, run_session

__all__ = ["TextExport", "export_text_onnx", "token_model", "tokenizer_json_for"]

logger = logging.getLogger("kerastransfer.export")

_DEFAULT_SENTENCES = [
    "A quiet, careful film about memory.",
    "Worst purchase ever!!! It broke after two days...",
    "Das Café öffnet um 8 Uhr.",
    "unknownwordzzz and more unknownwordzzz",
    "short",
    " ".join(["a long text that goes on"] * 40),
]


def token_model(model: Any):
    """A Keras model with the three int32 token inputs, sharing `model`'s
    layers (the Keras side of the exported graph)."""
    import keras

    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in names}
    packed = keras.ops.stack([inputs[n] for n in names], axis=1)
    return keras.Model(inputs, model(packed), name=f"{model.name}_tokens")


def tokenizer_json_for(model: Any) -> str:
    """The `tokenizers` JSON of the model's KerasHub WordPiece tokenizer.

    Raises:
        ExportError: the tokenizer is not WordPiece (BPE/SentencePiece families
            such as RoBERTa or DeBERTaV3 are not supported yet).
    """
    import keras_hub

    from kerastransfer.runtime.text import wordpiece_tokenizer_json

    tokenizer = model.preprocessor.tokenizer
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise ExportError(
            "Only WordPiece tokenizers (BERT, DistilBERT, ELECTRA families) can be "
            "written for the TensorFlow-free runtime. Use a WordPiece family. "
            f"Received: tokenizer={type(tokenizer).__name__}")
    return wordpiece_tokenizer_json(
        tokenizer.get_vocabulary(), sequence_length=model.sequence_length,
        lowercase=tokenizer.lowercase, strip_accents=tokenizer.strip_accents,
        split_on_cjk=tokenizer.split_on_cjk,
        suffix_indicator=tokenizer.suffix_indicator, oov_token=tokenizer.oov_token,
        cls_token=getattr(tokenizer, "cls_token", "[CLS]"),
        sep_token=getattr(tokenizer, "sep_token", "[SEP]"),
        pad_token=getattr(tokenizer, "pad_token", "[PAD]"))


def _convert(keras_model, opset):
    import tensorflow as tf
    import tf2onnx

    from kerastransfer.export.convert import collected_optimizer_copies, quiet_tf2onnx

    spec = tuple(tf.TensorSpec((None, None), tf.int32, name=n)
                 for n in ("token_ids", "segment_ids", "padding_mask"))

    @tf.function(input_signature=spec)
    def forward(token_ids, segment_ids, padding_mask):
        return {"predictions": keras_model({"token_ids": token_ids,
                                            "segment_ids": segment_ids,
                                            "padding_mask": padding_mask},
                                           training=False)}

    with quiet_tf2onnx(), collected_optimizer_copies(keras_model):
        try:
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec,
                                                     opset=opset)
        except Exception as error:  # noqa: BLE001 - tf2onnx raises anything
            raise ExportError(f"tf2onnx could not convert the text model: {error}. "
                              f"Try another opset. Received: opset={opset}") from error
    return proto


class TextExport(TaskExport):
    """The text steps of `export_onnx` (see the module docstring).

    `validation_data` is a list of texts (default: a few varied sentences);
    the float32 graph must match Keras within `atol` on them, at their own
    length and padded to `sequence_length`. `quantize="dynamic"` (int8
    weights of the MatMuls: the transformer's) reports the agreement with
    float32 on them.
    """

    unit = "texts"

    def __init__(self, model: Any, **kwargs):
        super().__init__(model, **kwargs)
        self._tokenizer_text = None

    def check(self, *, quantize, fp16, calibration_data) -> None:
        if quantize not in (None, "dynamic") or fp16:
            raise ValueError("Text models support quantize='dynamic' (int8 weights) "
                             f"or None. Received: quantize={quantize!r}, fp16={fp16}")
        self._tokenizer_text = tokenizer_json_for(self.model)  # fails early

    def load(self, data: Any, limit: int | None = 256) -> dict[str, np.ndarray]:
        return self.model.example_inputs(list(data)[:limit])

    def default_inputs(self) -> tuple[dict[str, np.ndarray], str]:
        return self.load(_DEFAULT_SENTENCES), "default"

    def to_graph_input(self, inputs):
        return inputs

    def reference(self):
        return self.model.export_graph()

    def convert(self, reference, opset: int):
        return _convert(reference, opset)

    def validate(self, reference, session, real, atol: float) -> float:
        tokens = real if real is not None else self.default_inputs()[0]
        keras_out = np.asarray(reference.predict(tokens, verbose=0), "float64")
        max_diff = float(np.max(np.abs(keras_out - run_session(session, tokens))))
        # dynamic length: the shortest sentence alone, unpadded
        length = int(tokens["padding_mask"][0].sum())
        short = {k: v[:1, :length] for k, v in tokens.items()}
        short_diff = float(np.max(np.abs(run_session(session, short) - keras_out[:1])))
        max_diff = max(max_diff, short_diff)
        if max_diff > atol:
            raise ExportValidationError(
                f"The ONNX text model differs from Keras by {max_diff:.3g} > atol. "
                f"Report the encoder family. Received: atol={atol}")
        return max_diff

    def measures_agreement(self) -> bool:
        return True

    def metadata(self, path: str, *, quantization, opset, optimized) -> dict[str, str]:
        from kerastransfer.runtime.base import encode_metadata
        from kerastransfer.runtime.text import tokenizer_path

        contract = self.model.export_contract()
        return encode_metadata({
            **common_metadata(self.model, quantization=quantization, opset=opset,
                              optimized=optimized),
            **{k: v for k, v in contract.items() if k != "input_names"},
            "input_names": ",".join(contract["input_names"]),
            "input_dtype": "int32",
            "tokenizer_file": os.path.basename(tokenizer_path(path)),
        })

    def write_files(self, path: str) -> None:
        from kerastransfer.io import atomic_write_text
        from kerastransfer.runtime.text import tokenizer_path

        atomic_write_text(tokenizer_path(path), self._tokenizer_text)

    def report_fields(self) -> dict[str, Any]:
        return {"include_preprocessing": False, "output": "predictions"}


def export_text_onnx(model: Any, path: str | os.PathLike, **kwargs) -> Any:
    """Exports a `TextClassifier`: `kerastransfer.export.export_onnx` (kept for
    callers of the first text release; same arguments and report)."""
    from kerastransfer.export.onnx import export_onnx

    return export_onnx(model, path, **kwargs)
