"""TF-Hub text models behind `kt.TextClassifier("tfhub:<handle>", ...)`.

A TF-Hub text model (a SavedModel whose endpoint takes a `(batch,)` string
tensor: a sentence embedding, or an encoder with its preprocessing built in)
tokenizes inside its own graph, so it has no KerasHub preprocessor and no
token ids to pack. It trains on the existing TF-Hub path
(`kerastransfer/backbones/tfhub/`: `TransferModel` with a string input and
`HubBackbone`), which this module reaches from `TextClassifier`: the
constructor returns a `HubTextClassifier`, a `TransferModel` that takes lists
of texts (checked like a KerasHub model's) and `TextData`.

ONNX export of string-input models is refused with a clear error (tf2onnx
has no string ops for the tokenizers inside such SavedModels); export the
model with `kerastransfer.export.export_saved_model` instead.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kerastransfer.tasks.classifier import TransferModel

__all__ = ["HubTextClassifier", "is_hub_text_backbone", "hub_text_classifier"]

HUB_PREFIX = "tfhub:"


def is_hub_text_backbone(backbone: Any) -> bool:
    """Whether `backbone` names a TF-Hub model (`"tfhub:<handle>"`)."""
    return isinstance(backbone, str) and backbone.startswith(HUB_PREFIX)


def _as_texts(x, name: str = "x"):
    from kerastransfer.backbones.kerashub import check_texts

    if x is None or hasattr(x, "element_spec"):
        return x  # a tf.data.Dataset passes through
    return np.asarray(check_texts(x, name), dtype=object)


@keras.saving.register_keras_serializable(package="kerastransfer")
class HubTextClassifier(TransferModel):
    """A text classifier on a TF-Hub string-input model: `TransferModel`
    (phases, caching, resume, `.keras` round trip) that takes lists of texts
    and `TextData` in `fit`, `predict` and `evaluate`. Built by
    `kt.TextClassifier("tfhub:<handle>", ...)`.
    """

    def fit(self, x=None, y=None, *, validation_data=None, **kwargs):
        """`TransferModel.fit` on texts or a `TextData`."""
        from kerastransfer.data.text import fit_inputs

        x, y, validation_data = fit_inputs(x, y, validation_data)
        pair = validation_data
        if isinstance(pair, (tuple, list)) and len(pair) in {2, 3}:
            validation_data = (_as_texts(pair[0], "validation_data"),
                               *[np.asarray(d) for d in pair[1:]])
        return super().fit(_as_texts(x), y, validation_data=validation_data, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Class probabilities `(n, num_classes)` for a list of texts."""
        return super().predict(_as_texts(x), batch_size=batch_size, verbose=verbose,
                               **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate` on texts."""
        return super().evaluate(_as_texts(x), y, **kwargs)


def hub_text_classifier(backbone: str, num_classes: int | None = None, *,
                        sequence_length: int = 128, preprocessor: Any = None,
                        weights: str | None = "pretrained", class_names=None,
                        task: str = "multiclass", dropout: float = 0.1,
                        mixed_precision: str | None = None, strategy: Any = None,
                        name: str = "text_classifier", **kwargs) -> HubTextClassifier:
    """`TextClassifier`'s arguments on a TF-Hub text model.

    `sequence_length` does not apply (the SavedModel tokenizes and truncates
    as it was built to).

    Raises:
        TypeError: `preprocessor` is given (a TF-Hub text model tokenizes
            inside its SavedModel), or the handle's model takes images.
        WeightsError: `weights=None` (a TF-Hub model has only its own weights).
    """
    from kerastransfer.backbones.registry import get_backbone

    del sequence_length  # the SavedModel's own tokenizer decides
    if preprocessor is not None:
        raise TypeError(
            "A TF-Hub text model tokenizes inside its SavedModel: it takes no "
            "KerasHub preprocessor. Drop preprocessor=, or use a 'kerashub:' "
            f"backbone. Received: backbone={backbone!r}, "
            f"preprocessor={type(preprocessor).__name__}")
    spec = get_backbone(backbone)
    if spec.input_dtype != "string":
        raise TypeError(
            "TextClassifier needs a TF-Hub model that takes strings; this one "
            f"takes {spec.input_dtype} images. Use kt.TransferModel for image "
            f"models. Received: backbone={backbone!r}")
    own = "imagenet"  # TransferModel's name for "the backbone's own weights"
    return HubTextClassifier(
        backbone, num_classes, weights=own if weights == "pretrained" else weights,
        class_names=class_names, task=task, dropout=dropout,
        mixed_precision=mixed_precision, strategy=strategy, name=name, **kwargs)
