"""`TextClassifier`: text classification on a KerasHub transformer encoder.

The task contract (see `kerastransfer/tasks/base.py`):

* graph: packed token ids `(batch, 3, length)` (token ids, segment ids,
  padding mask; `kerastransfer.backbones.kerashub.pack_tokens`) -> the
  encoder -> its pooled output (or the first token's vector for encoders with
  no pooler) -> dropout -> `Dense(num_classes)` -> softmax/sigmoid;
* `_feature_tensor`: the pooled output (what feature caching stores while the
  encoder is frozen);
* blocks: the embeddings, then one block per transformer layer
  (`kerashub.TRANSFORMER_BLOCKS`), so `unfreeze="top_layers:N"` and
  `lr_decay` count transformer layers;
* strings are tokenized by the KerasHub preprocessor in `fit`, `predict` and
  `evaluate` (outside the graph, as KerasHub's own tasks do), so the exported
  graph takes int token arrays and the tokenizer travels next to it
  (`kerastransfer/runtime/text.py`);
* optimizer: `TransformerAdamW` (AdamW with no weight decay on LayerNorm
  gammas/betas and biases) unless `compile()` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from kerastransfer.backbones import kerashub
from kerastransfer.tasks.backbone import BackboneParts, build_scope
from kerastransfer.tasks.base import TransferTask
from kerastransfer.tasks.classifier import (
    TransferModel,
    _check_classification_labels,
    _check_head_args,
    _head_layers,
)

__all__ = ["TextClassifier", "TransformerAdamW", "SplitTokens", "FirstToken"]

TEXT_TASKS = ("multiclass", "multilabel")


@keras.saving.register_keras_serializable(package="kerastransfer")
class TransformerAdamW(keras.optimizers.AdamW):
    """AdamW without weight decay on LayerNorm weights and biases (the BERT
    fine-tuning recipe). The exclusion is part of the config, so the copies the
    phased `fit()` and `GroupedOptimizer` make keep it.

    Args:
        learning_rate: a float or a schedule. Defaults to `1e-3` (the phased
            `fit()` uses it for the frozen-encoder phase and a tenth of it for
            fine-tuning unless `fine_tune_lr` is given).
        weight_decay: decoupled weight decay. Defaults to `0.01`.
        no_decay: substrings of variable names with no weight decay. Defaults
            to `("gamma", "beta", "bias")` (LayerNorm and biases).
        **kwargs: other `keras.optimizers.AdamW` arguments.
    """

    def __init__(self, learning_rate=1e-3, weight_decay=0.01,
                 no_decay=("gamma", "beta", "bias"), **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                         **kwargs)
        self.no_decay = tuple(no_decay)
        # Whole names only; the TensorFlow backend checks the tf.Variable,
        # named "gamma:0" (Keras 3.15).
        self.exclude_from_weight_decay(
            var_names=[rf"(^|/){name}(:\d+)?$" for name in self.no_decay])

    def get_config(self):
        return {**super().get_config(), "no_decay": list(self.no_decay)}


@keras.saving.register_keras_serializable(package="kerastransfer")
class SplitTokens(keras.layers.Layer):
    """Unpacks `(batch, 3, length)` int32 tokens into the encoder's input dict.

    Args:
        keys: the encoder's input names, a subset of `("token_ids",
            "segment_ids", "padding_mask")`.
    """

    def __init__(self, keys: Sequence[str] = kerashub.TOKEN_ROWS, **kwargs):
        super().__init__(**kwargs)
        self.keys = [str(k) for k in keys]

    def call(self, tokens):
        return {key: tokens[:, kerashub.TOKEN_ROWS.index(key), :] for key in self.keys}

    def compute_output_spec(self, tokens):
        return {key: keras.KerasTensor((tokens.shape[0], tokens.shape[2]),
                                       dtype=tokens.dtype) for key in self.keys}

    def get_config(self):
        return {**super().get_config(), "keys": list(self.keys)}


@keras.saving.register_keras_serializable(package="kerastransfer")
class FirstToken(keras.layers.Layer):
    """The first (`[CLS]`/`<s>`) token's vector of a `(batch, length, dim)`
    sequence: the pooled text feature of encoders without a pooler."""

    def call(self, sequence):
        return sequence[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="kerastransfer")
class TextClassifier(TransferTask):
    """A text classifier on a KerasHub encoder (BERT, DistilBERT, ELECTRA, ...).

    Takes raw strings in `fit`, `predict` and `evaluate` (tokenized by the
    preprocessor); the Keras graph itself takes packed int32 tokens
    `(batch, 3, length)`.

    Args:
        backbone: `"kerashub:<preset>"` (e.g. `"kerashub:bert_tiny_en_uncased"`,
            downloaded and cached by KerasHub), a `keras_hub.models.Backbone`,
            or `"tfhub:<handle>"`, a TF-Hub model that takes strings (then the
            result is a `HubTextClassifier` from `tasks/text_hub.py`, which
            tokenizes inside its SavedModel: no `preprocessor`, no
            `sequence_length`, no ONNX export).
        num_classes: number of classes. Defaults to `len(class_names)`.
        sequence_length: tokens per text; longer texts are truncated. At most
            the encoder's `max_sequence_length`. Defaults to `128`.
        preprocessor: a `keras_hub.models.TextClassifierPreprocessor` (required
            with a `Backbone` instance). Defaults to the preset's.
        weights: `"pretrained"` (a preset's weights; a `Backbone` instance keeps
            its own) or `None` (a preset's architecture, newly initialized).
            Defaults to `"pretrained"`.
        class_names: names of the classes, in label order. Defaults to
            `["0", "1", ...]`.
        task: `"multiclass"` (softmax) or `"multilabel"` (sigmoid). Defaults to
            `"multiclass"`.
        dropout: dropout before the output layer. Defaults to `0.1`.
        mixed_precision: `"mixed_float16"` or `"mixed_bfloat16"` (the encoder is
            rebuilt under that policy; outputs stay float32). Defaults to `None`.
        strategy: a `tf.distribute.Strategy`. Defaults to `None`.
        name: the model's name. Defaults to `"text_classifier"`.

    Example:

    >>> import keras_hub
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    >>> preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer)
    >>> encoder = keras_hub.models.BertBackbone(
    ...     vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=16,
    ...     intermediate_dim=32, max_sequence_length=16)
    >>> model = TextClassifier(encoder, 2, sequence_length=8,
    ...                        preprocessor=preprocessor)
    >>> model.predict(["good", "bad"], verbose=0).shape
    (2, 2)
    """

    def __new__(cls, backbone: Any = None, *args, **kwargs):
        # A TF-Hub string-input model takes the existing TF-Hub path: a
        # `HubTextClassifier` (`tasks/text_hub.py`), built here and returned
        # whole (Python then skips `__init__`, as the result is no
        # `TextClassifier`).
        from kerastransfer.tasks import text_hub

        if text_hub.is_hub_text_backbone(backbone):
            return text_hub.hub_text_classifier(backbone, *args, **kwargs)
        return super().__new__(cls, backbone, *args, **kwargs)

    def __init__(
        self,
        backbone: Any = None,
        num_classes: int | None = None,
        *,
        sequence_length: int = 128,
        preprocessor: Any = None,
        weights: str | None = "pretrained",
        class_names: Sequence[str] | None = None,
        task: str = "multiclass",
        dropout: float = 0.1,
        mixed_precision: str | None = None,
        strategy: Any = None,
        name: str = "text_classifier",
        **kwargs,
    ):
        if task not in TEXT_TASKS:
            raise ValueError(
                f"task must be one of {TEXT_TASKS}. Received: task={task!r}")
        num_classes, class_names = _check_head_args(
            num_classes, class_names, task, "avg", dropout, ())
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        text = kerashub.resolve_text_backbone(
            backbone, preprocessor, sequence_length=sequence_length, weights=weights)
        encoder = text.model
        with build_scope(strategy, mixed_precision):
            if mixed_precision is not None:  # rebuild under the policy, same weights
                config = {**encoder.get_config(), "dtype": mixed_precision}
                rebuilt = type(encoder).from_config(config)
                rebuilt.set_weights(encoder.get_weights())
                encoder = rebuilt
            inputs = keras.Input(shape=(3, None), dtype="int32", name="tokens")
            keys = [k for k in kerashub.TOKEN_ROWS if k in encoder.input]
            outputs = encoder(SplitTokens(keys, name="split_tokens")(inputs))
            head_layers = []
            if isinstance(outputs, dict) and "pooled_output" in outputs:
                features = outputs["pooled_output"]
            else:
                sequence = outputs["sequence_output"] if isinstance(outputs, dict) \
                    else outputs
                head_layers.append(FirstToken(name="pool"))
                features = head_layers[0](sequence)
            head_layers += _head_layers(2, num_classes, task, "avg", dropout, ())
            x = features
            for layer in head_layers[1 if head_layers[0].name == "pool" else 0:]:
                x = layer(x)
            super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        parts = BackboneParts(model=encoder, spec=None, name=text.name,
                              pretrained=text.pretrained, input_shape=(3, None),
                              input_dtype="int32")
        self._init_task(parts, head_layers=head_layers, feature_tensor=features,
                        strategy=strategy, mixed_precision=mixed_precision)
        self.preprocessor = text.preprocessor
        self.sequence_length = text.sequence_length
        self.num_classes = num_classes
        self.class_names = class_names
        self.task = task
        self.dropout = float(dropout)
        self.weights_argument = weights

    # --- The task contract -------------------------------------------------
    @property
    def block_rule(self):
        """Embeddings, then one block per transformer layer."""
        return kerashub.TRANSFORMER_BLOCKS

    def default_loss(self):
        """Sparse categorical (multiclass) or binary (multilabel) cross-entropy."""
        return TransferModel.default_loss(self)

    def default_metrics(self) -> list:
        """Accuracy (binary accuracy for multilabel)."""
        return TransferModel.default_metrics(self)

    def _check_labels(self, y) -> None:
        _check_classification_labels(self.task, self.num_classes, y)

    def export_contract(self) -> dict:
        """The ONNX graph takes `token_ids`, `segment_ids` and `padding_mask`
        (int32, `(batch, length)`, both axes dynamic) and outputs one
        probability per class in `class_names` order; the runtime tokenizes with
        the `tokenizers` file written next to the model."""
        return {"kind": "text", "task": self.task,
                "class_names": list(self.class_names),
                "num_classes": self.num_classes,
                "sequence_length": self.sequence_length,
                "input_names": list(kerashub.TOKEN_ROWS)}

    def export_graph(self, *, include_preprocessing: bool = True,
                     output: str = "predictions") -> keras.Model:
        """The Keras model an ONNX export reproduces: the three int32 token
        inputs -> probabilities (`export/text.py`'s `token_model`; the
        tokenizer runs outside the graph, so both arguments are ignored)."""
        from kerastransfer.export.text import token_model

        return token_model(self)

    def example_inputs(self, data: Any) -> dict[str, np.ndarray]:
        """Validation texts as the graph's int32 token arrays, by input name."""
        packed = self.encode(list(data), name="validation_data")
        return {name: packed[:, i] for i, name in enumerate(kerashub.TOKEN_ROWS)}

    def onnx_exporter(self, **kwargs):
        """The text steps of `export_onnx` (`export/text.py`'s `TextExport`)."""
        from kerastransfer.export.text import TextExport

        return TextExport(self, **kwargs)

    def _checkpoint_identity(self) -> dict:
        return {**super()._checkpoint_identity(), "num_classes": int(self.num_classes),
                "sequence_length": int(self.sequence_length), "task": self.task}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "sequence_length": self.sequence_length,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "class_names": list(self.class_names),
            "task": self.task,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        backbone = config.get("backbone")
        if isinstance(backbone, dict):  # a KerasHub Backbone, not a preset name
            config["backbone"] = keras.saving.deserialize_keras_object(backbone)
        config["weights"] = "pretrained"  # keep the deserialized encoder as is
        return super().from_config(config, custom_objects)

    # --- Strings in, tokens to the graph ------------------------------------
    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        """Like `TransferTask.compile`; `"adamw"` (the default) means
        `TransformerAdamW()`."""
        if isinstance(optimizer, str) and optimizer.lower() == "adamw":
            optimizer = TransformerAdamW()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def _template_optimizer(self):
        if not self.compile_arguments():
            return TransformerAdamW()
        return super()._template_optimizer()

    def encode(self, texts, name: str = "x") -> np.ndarray:
        """Tokenizes texts into the packed int32 `(n, 3, sequence_length)` array
        the graph takes (packed arrays pass through)."""
        if (isinstance(texts, np.ndarray) and texts.ndim == 3 and texts.shape[1] == 3
                and texts.dtype.kind in "iu"):
            return texts.astype(np.int32)
        if hasattr(texts, "element_spec"):
            return texts  # a tf.data.Dataset of packed tokens
        return kerashub.tokenize(self.preprocessor, texts, name=name)

    def _encode_xy(self, data, name):
        if data is None or hasattr(data, "element_spec"):
            return data
        if isinstance(data, (tuple, list)) and len(data) in (2, 3) and not isinstance(
                data[0], (str, bytes)):
            return (self.encode(data[0], name), *[np.asarray(d) for d in data[1:]])
        raise TypeError(
            f"{name} must be (texts, labels). Received: {name}={data!r}"[:300])

    def fit(self, x=None, y=None, *, validation_data=None, **kwargs):
        """`TransferTask.fit` on texts (a list/array of strings or a
        `TextData` from `kerastransfer.data.load_text_csv`); see there for the
        arguments. `unfreeze="top_layers:N"` fine-tunes the top N transformer
        layers; `lr_decay` decays the rate per transformer layer downwards."""
        from kerastransfer.data.text import fit_inputs

        x, y, validation_data = fit_inputs(x, y, validation_data)
        validation_data = self._encode_xy(validation_data, "validation_data")
        if y is not None and self.task == "multilabel":
            y = np.asarray(y, dtype="float32")
        return super().fit(self.encode(x), y, validation_data=validation_data,
                           **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Class probabilities `(n, num_classes)` for a list of texts."""
        return super().predict(self.encode(x), batch_size=batch_size,
                               verbose=verbose, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate` on texts."""
        return super().evaluate(self.encode(x), y, **kwargs)
