"""ONNX export of a `TextClassifier`: encoder + head on int token inputs, the
tokenizer written next to it, parity with Keras on real tokenized sentences.

`export_onnx` hands models whose `export_contract()["kind"]` is `"text"` to
`export_text_onnx`. The graph takes `token_ids`, `segment_ids` and
`padding_mask` (int32, `(batch, length)`, both axes dynamic: a sentence needs
only its own length); `kerastransfer.runtime.TextPredictor` runs it with the
`model.tokenizer.json` written here (see `kerastransfer/runtime/text.py`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from kerastransfer.errors import ExportError, ExportValidationError

__all__ = ["export_text_onnx", "token_model", "tokenizer_json_for"]

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

    from kerastransfer.export.convert import quiet_tf2onnx

    spec = tuple(tf.TensorSpec((None, None), tf.int32, name=n)
                 for n in ("token_ids", "segment_ids", "padding_mask"))

    @tf.function(input_signature=spec)
    def forward(token_ids, segment_ids, padding_mask):
        return {"predictions": keras_model({"token_ids": token_ids,
                                            "segment_ids": segment_ids,
                                            "padding_mask": padding_mask},
                                           training=False)}

    with quiet_tf2onnx():
        try:
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec,
                                                     opset=opset)
        except Exception as error:  # noqa: BLE001 - tf2onnx raises anything
            raise ExportError(f"tf2onnx could not convert the text model: {error}. "
                              f"Try another opset. Received: opset={opset}") from error
    return proto


def _run(session, tokens: dict, batch_size: int = 32) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    n = len(tokens["token_ids"])
    return np.concatenate([
        session.run(None, {k: tokens[k][i:i + batch_size] for k in names})[0]
        for i in range(0, n, batch_size)]).astype("float64")


def export_text_onnx(model: Any, path: str | os.PathLike, *, opset: int = 17,
                     validate: bool = True, atol: float = 1e-4,
                     quantize: str | None = None, validation_data: Any = None,
                     optimize: bool = True, agreement_threshold: float = 0.99,
                     reduce_range: bool = True, **unused) -> Any:
    """Exports a `TextClassifier` (called by `export_onnx`; same arguments).

    `validation_data` is a list of texts (default: a few varied sentences);
    the float32 graph must match Keras within `atol` on them, at their own
    length and padded to `sequence_length`. `quantize="dynamic"` (int8
    weights of the MatMuls: the transformer's) reports the agreement with
    float32 on them.

    Returns:
        An `ExportReport` (`agreement`, `max_abs_diff`, ...).
    """
    import onnx

    from kerastransfer.backbones.kerashub import tokenize
    from kerastransfer.export import metadata as metadata_lib
    from kerastransfer.export import quantize as quantize_lib
    from kerastransfer.export.convert import name_batch_axis
    from kerastransfer.export.onnx import ExportReport
    from kerastransfer.export.optimize import optimize_onnx
    from kerastransfer.export.validate import load_session
    from kerastransfer.io import atomic_path, atomic_write_text
    from kerastransfer.runtime.text import tokenizer_path

    if quantize not in (None, "dynamic"):
        raise ValueError("Text models support quantize='dynamic' (int8 weights) or "
                         f"None. Received: quantize={quantize!r}")
    start = time.perf_counter()
    path = os.fspath(path)
    texts = list(validation_data) if validation_data is not None else _DEFAULT_SENTENCES
    tokenizer_text = tokenizer_json_for(model)  # fails early for other families
    reference = token_model(model)
    proto = _convert(reference, opset)
    level = None
    if optimize:
        proto, level = optimize_onnx(proto, "basic"), "basic"
    session = load_session(proto.SerializeToString())
    packed = tokenize(model.preprocessor, texts, name="validation_data")
    tokens = {"token_ids": packed[:, 0], "segment_ids": packed[:, 1],
              "padding_mask": packed[:, 2]}
    max_diff = None
    if validate:
        keras_out = np.asarray(reference.predict(tokens, verbose=0), "float64")
        onnx_out = _run(session, tokens)
        max_diff = float(np.max(np.abs(keras_out - onnx_out)))
        # dynamic length: the shortest sentence alone, unpadded
        length = int(tokens["padding_mask"][0].sum())
        short = {k: v[:1, :length] for k, v in tokens.items()}
        short_diff = float(np.max(np.abs(_run(session, short) - keras_out[:1])))
        max_diff = max(max_diff, short_diff)
        if max_diff > atol:
            raise ExportValidationError(
                f"The ONNX text model differs from Keras by {max_diff:.3g} > atol. "
                f"Report the encoder family. Received: atol={atol}")
    agreement = quantized_diff = None
    report_warnings: list[str] = []
    final = proto
    if quantize == "dynamic":
        final = quantize_lib.quantize_onnx(proto, "dynamic", reduce_range=reduce_range)
        reference_out = _run(session, tokens)
        candidate_out = _run(load_session(final.SerializeToString()), tokens)
        quantized_diff = float(np.max(np.abs(reference_out - candidate_out)))
        agreement = quantize_lib.agreement(reference_out, candidate_out, model.task)
        if agreement < agreement_threshold:
            message = (f"The dynamic int8 model agrees with float32 on only "
                       f"{agreement:.1%} of {len(texts)} texts, below "
                       f"agreement_threshold={agreement_threshold}. Export without "
                       "quantization.")
            logger.warning(message)
            report_warnings.append(message)
    contract = model.export_contract()
    import kerastransfer
    from kerastransfer.runtime.base import encode_metadata

    meta = encode_metadata({
        "format_version": "1", "kerastransfer_version": kerastransfer.__version__,
        **{k: v for k, v in contract.items() if k != "input_names"},
        "input_names": ",".join(contract["input_names"]),
        "input_dtype": "int32", "backbone": str(model.backbone_name),
        "output": "predictions", "quantization": quantize or "none",
        "opset": str(opset), "optimization": level or "none",
        "tokenizer_file": os.path.basename(tokenizer_path(path)),
    })
    metadata_lib.set_metadata(final, meta)
    name_batch_axis(final)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(final, tmp)
        load_session(tmp)
    atomic_write_text(tokenizer_path(path), tokenizer_text)
    sidecar = metadata_lib.write_sidecar(path, meta)
    report = ExportReport(
        path=path, opset=opset, include_preprocessing=False, output="predictions",
        validated=validate, max_abs_diff=max_diff, optimization=level,
        transpose_nodes_raw=0, transpose_nodes=0, nodes=len(final.graph.node), quantization=quantize, agreement=agreement,
        agreement_data="validation_data" if validation_data is not None else "default",
        quantized_max_abs_diff=quantized_diff, warnings=report_warnings,
        file_size=os.path.getsize(path), seconds=time.perf_counter() - start,
        metadata=meta, sidecar=sidecar)
    logger.info("Exported text model %s (max |onnx - keras| %.3g)", path,
                max_diff if max_diff is not None else float("nan"))
    return report
