"""Text predictions without TensorFlow: the `tokenizers` library + onnxruntime.

`export_onnx` on a `TextClassifier` writes three files: `model.onnx` (inputs
`token_ids`, `segment_ids`, `padding_mask`, int32 `(batch, length)`, both axes
dynamic; output: one probability per class), `model.json` (the metadata) and
`model.tokenizer.json`, a Hugging Face `tokenizers` file that reproduces the
KerasHub WordPiece tokenizer (BERT, DistilBERT, ELECTRA): the same
normalization (lowercasing, accent stripping, CJK splitting as the KerasHub
tokenizer is configured), whitespace/punctuation splitting, `##` WordPiece,
`[CLS] ... [SEP]`, truncation to `sequence_length` and padding with `[PAD]`.
tests/test_text_runtime.py checks the token ids equal KerasHub's on a varied
corpus.

Why `tokenizers` (not onnxruntime-extensions): it is a small wheel with no
TensorFlow, loads the one JSON file, and tokenizes batches in Rust; the graph
stays plain ONNX (no custom operators), so any ONNX runtime can run it.

numpy, onnxruntime and tokenizers only (imported lazily).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.runtime.base import create_session, load_metadata

__all__ = ["TextPredictor", "wordpiece_tokenizer_json", "tokenizer_path",
           "TOKEN_INPUTS", "is_text_model"]

logger = logging.getLogger("kerastransfer.runtime")

TOKEN_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def is_text_model(path: str | os.PathLike) -> bool:
    """Whether an exported model is a text model (`kind="text"` in its
    `model.json` sidecar, else in the ONNX metadata)."""
    from kerastransfer.runtime.base import read_sidecar

    sidecar = read_sidecar(path)
    if sidecar is not None:
        return sidecar.get("kind") == "text"
    metadata, _ = load_metadata(create_session(path, intra_op_threads=1), path)
    return metadata.get("kind") == "text"


def tokenizer_path(model_path: str | os.PathLike) -> str:
    """`model.onnx` -> `model.tokenizer.json`."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + ".tokenizer.json"


def wordpiece_tokenizer_json(vocabulary: Sequence[str], *, sequence_length: int,
                             lowercase: bool = False, strip_accents: bool = False,
                             split_on_cjk: bool = True, suffix_indicator: str = "##",
                             oov_token: str = "[UNK]", cls_token: str = "[CLS]",
                             sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                             max_word_chars: int = 100) -> str:
    """A `tokenizers` JSON file equivalent to a KerasHub WordPiece tokenizer +
    single-segment packer.

    Args:
        vocabulary: the WordPiece vocabulary, in id order.
        sequence_length: tokens per text, special tokens included.
        lowercase, strip_accents, split_on_cjk, suffix_indicator, oov_token:
            as configured in the KerasHub tokenizer.
        cls_token, sep_token, pad_token: the packer's special tokens.
            Default to `"[CLS]"`, `"[SEP]"`, `"[PAD]"`.
        max_word_chars: longer words become `oov_token`. Defaults to `100`.

    Returns:
        The tokenizer as a JSON string (`tokenizers.Tokenizer.from_str`).
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {token: i for i, token in enumerate(vocabulary)}
    for token in (oov_token, cls_token, sep_token, pad_token):
        if token not in vocab:
            raise ValueError(f"The vocabulary has no {token!r} token. Use a BERT-style "
                             f"WordPiece vocabulary. Received: {len(vocab)} tokens")
    tokenizer = Tokenizer(WordPiece(vocab, unk_token=oov_token,
                                    continuing_subword_prefix=suffix_indicator,
                                    max_input_chars_per_word=max_word_chars))
    steps = []
    if lowercase:  # KerasHub: NFKC case folding
        steps += [normalizers.NFKC(), normalizers.Lowercase()]
    if strip_accents:
        steps += [normalizers.NFD(), normalizers.StripAccents()]
    steps.append(normalizers.BertNormalizer(
        clean_text=False, handle_chinese_chars=bool(split_on_cjk),
        strip_accents=False, lowercase=False))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls_token} $A {sep_token}",
        special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])])
    tokenizer.enable_truncation(max_length=int(sequence_length))
    tokenizer.enable_padding(length=int(sequence_length), pad_id=vocab[pad_token],
                             pad_token=pad_token)
    return tokenizer.to_str()


class TextPredictor:
    """Runs a text model exported by `export_onnx` (no TensorFlow).

    Args:
        path: the `.onnx` file (its `.tokenizer.json` next to it).
        providers: onnxruntime execution providers. Defaults to `None` (the
            fastest available).
        intra_op_threads: threads per operator. Defaults to `None` (all cores).

    Attributes:
        class_names: class names in output order.
        task: `"multiclass"` or `"multilabel"`.
        sequence_length: tokens per text (longer texts are truncated).
        metadata: the `kerastransfer.*` metadata.
        providers: the session's execution providers.
        input_shape: `(sequence_length,)` (tokens per text).
        kind: `"text"`.

    Raises:
        ValueError: the file is not a text model, or its tokenizer file is
            missing.

    Example:

    >>> predictor = TextPredictor("text.onnx")  # doctest: +SKIP
    >>> predictor.predict(["a fine film"]).shape  # doctest: +SKIP
    (1, 2)
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 *, intra_op_threads: int | None = None):
        from tokenizers import Tokenizer

        self.path = os.fspath(path)
        self._session = create_session(self.path, providers,
                                       intra_op_threads=intra_op_threads)
        self.metadata, self.metadata_source = load_metadata(self._session, self.path)
        if self.metadata.get("kind", "text") != "text" or not self.metadata:
            raise ValueError(
                "This ONNX file is not a kerastransfer text model (its metadata kind "
                "is not 'text'). Use OnnxPredictor for image models. Received: "
                f"kind={self.metadata.get('kind')!r}, path={self.path!r}")
        tokenizer_file = tokenizer_path(self.path)
        if not os.path.isfile(tokenizer_file):
            raise ValueError(
                "The tokenizer file written next to the model is missing. Copy "
                f"{os.path.basename(tokenizer_file)!r} with the model. Received: "
                f"path={self.path!r}")
        self.tokenizer = Tokenizer.from_file(tokenizer_file)
        self.class_names = list(self.metadata["class_names"])
        self.task = self.metadata.get("task", "multiclass")
        self.sequence_length = int(self.metadata["sequence_length"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.providers = list(self._session.get_providers())
        self.input_shape = (self.sequence_length,)
        self.kind = "text"

    def __repr__(self) -> str:
        return (f"TextPredictor({self.path!r}, classes={len(self.class_names)}, "
                f"sequence_length={self.sequence_length})")

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids, segment ids and padding mask, int32 `(n, sequence_length)`."""
        texts = _check_texts(texts)
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int32)
        return {"token_ids": ids,
                "segment_ids": np.array([e.type_ids for e in encodings], np.int32),
                "padding_mask": np.array([e.attention_mask for e in encodings],
                                         np.int32)}

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities, float32 `(n, num_classes)`."""
        tokens = self.tokenize(texts)
        outs = []
        for start in range(0, len(tokens["token_ids"]), batch_size):
            feed = {name: tokens[name][start:start + batch_size]
                    for name in self._inputs}
            outs.append(self._session.run(None, feed)[0])
        return np.concatenate(outs).astype(np.float32)

    def predict_labels(self, texts: Sequence[str], top_k: int = 1) -> list[list]:
        """The `top_k` `(class name, probability)` pairs of each text."""
        probabilities = self.predict(texts)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [[(self.class_names[j], float(row[j])) for j in ranks]
                for row, ranks in zip(probabilities, order, strict=True)]


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple, np.ndarray)):
        raise ValueError("texts must be a list of strings. Wrap one text as [text]. "
                         f"Received: texts={str(texts)[:60]!r}")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"Every text must be a string. Received: texts[{i}]="
                             f"{str(text)[:60]!r} ({type(text).__name__})")
        if not text.strip():
            raise ValueError(f"Text {i} is empty. Drop it or fill it in. Received: "
                             f"texts[{i}]={text!r}")
        out.append(text)
    if not out:
        raise ValueError("texts is empty. Pass at least one text. Received: texts=[]")
    return out
