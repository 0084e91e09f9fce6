"""`HubBackbone`: a TF-Hub (TF2 SavedModel) model as a fine-tunable Keras 3 layer.

`hub.KerasLayer` is a tf_keras layer and cannot live in a Keras 3 model (a
functional model refuses it, and a subclassed one silently never trains its
weights; docs/design.md, fact 3). `HubBackbone` is a Keras 3 layer that holds
`hub.load(handle)` and wraps each of the SavedModel's own `tf.Variable`s in a
`keras.Variable` (the same variable, not a copy), so optimizer updates reach
the SavedModel's functions (docs/design.md, fact 4).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import keras

from kerastransfer.backbones.tfhub.resolve import hub_variables, load_hub_object
from kerastransfer.backbones.tfhub.signature import (
    check_input_shape,
    endpoint,
    pick_output,
    read_metadata,
    remember_metadata,
)
from kerastransfer.errors import HubModelError

__all__ = ["HubBackbone"]


def _variable_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", name.split(":")[0]) or "variable"
    candidate, i = base, 1
    while candidate in used:
        i += 1
        candidate = f"{base}_{i}"
    used.add(candidate)
    return candidate


@keras.saving.register_keras_serializable(package="kerastransfer")
class HubBackbone(keras.layers.Layer):
    """A TF-Hub (TF2 SavedModel) model as a fine-tunable Keras 3 layer.

    Holds `hub.load(handle)` and wraps each of its `tf.Variable`s in a
    `keras.Variable` (the same variable, no copy): training the layer trains the
    SavedModel's own weights. `training` is passed to the model only while the
    layer is trainable, so a frozen hub BatchNormalization runs in inference mode;
    `train_bn=False` keeps it in inference mode while the weights fine-tune. The
    model's `regularization_losses` are added (via `add_loss`) while trainable.

    Args:
        handle: a SavedModel directory, a `file://` path or an https URL
            (tfhub.dev / Kaggle Models).
        trainable: whether the hub weights train. Defaults to `False`.
        signature: a serving signature to call instead of `__call__` (its
            outputs are a dict: pick one with `output_key`). Defaults to `None`.
        output_key: the output to use when the model returns a dict. Defaults to
            `None` (the only output).
        arguments: extra keyword arguments for each call (JSON-safe). Defaults to
            `None`.
        input_shape: the per-example input shape, checked against the
            SavedModel's traced functions. Defaults to `None` (not checked).
        train_bn: when trainable, also run the model in training mode (hub
            BatchNorm uses and updates batch statistics). Setting `trainable`
            resets it to the same value, as for Keras BatchNormalization.
            Defaults to `trainable`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Raises:
        HubModelError: the handle cannot be resolved or loaded, is not a TF2
            SavedModel, has no variables, or `signature`/`output_key` do not match.
        InputShapeError: `input_shape` is one the SavedModel has no function for.

    Example:

    >>> layer = HubBackbone("/path/to/saved_model", trainable=True)  # doctest: +SKIP
    >>> inputs = keras.Input((224, 224, 3))  # doctest: +SKIP
    >>> features = layer(inputs)  # doctest: +SKIP
    """

    def __init__(
        self,
        handle: str,
        *,
        trainable: bool = False,
        signature: str | None = None,
        output_key: str | None = None,
        arguments: dict | None = None,
        input_shape: Sequence[int | None] | None = None,
        train_bn: bool | None = None,
        loaded_object: Any = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # SavedModel functions are float32
        super().__init__(trainable=trainable, **kwargs)
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(
                "arguments must be a dict of keyword arguments for the hub model. "
                f"Received: arguments={arguments!r}"
            )
        self.handle = handle
        self.signature = signature
        self.output_key = output_key
        self.arguments = dict(arguments or {})
        self.train_bn = bool(trainable) if train_bn is None else bool(train_bn)
        obj = loaded_object if loaded_object is not None else load_hub_object(handle)
        meta = read_metadata(obj, handle, signature, output_key)
        remember_metadata(handle, signature, output_key, meta)
        check_input_shape(meta, input_shape, handle)
        self.hub_input_shape = None if input_shape is None else tuple(input_shape)
        self._meta = meta
        self._hub_object = obj
        self._function, _ = endpoint(obj, handle, signature)
        self._regularization_losses = (
            list(getattr(obj, "regularization_losses", []) or [])
            if signature is None else []
        )
        pairs = hub_variables(obj)
        if not pairs:
            raise HubModelError(
                "The SavedModel has no variables: it is a pure function (as a "
                "keras.layers.TFSMLayer-style export without state), so there is "
                "nothing to fine-tune or save. Use a TF2 SavedModel that keeps its "
                "variables (the TF-Hub reusable SavedModel format). "
                f"Received: handle={handle!r}"
            )
        used: set[str] = set()
        wrapped = []
        with keras.name_scope(self.name):  # paths "<layer>/<variable>", as add_weight
            for variable, is_trainable in pairs:
                wrapped.append(keras.Variable(
                    initializer=variable,
                    shape=tuple(variable.shape),
                    dtype=variable.dtype.name,
                    trainable=is_trainable,
                    name=_variable_name(variable.name, used),
                ))
        # Tracked by Keras (trainable ones in trainable_weights) and saved in .keras.
        self.hub_variables = wrapped
        self.built = True

    # Setting `trainable` resets `train_bn`, as Keras does for a BatchNorm sublayer.
    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, value)
        self.__dict__["train_bn"] = bool(value)

    @property
    def input_dtype(self) -> str:
        """`"float32"` for images, `"string"` for text models."""
        return self._meta.input_dtype

    def call(self, inputs, training=None):
        import tensorflow as tf

        kwargs = dict(self.arguments)
        if self.input_dtype == "float32":
            inputs = tf.cast(inputs, tf.float32)
        if self.signature is not None:
            outputs = self._function(**{self._meta.input_name: inputs}, **kwargs)
        else:
            if self._meta.accepts_training and self.trainable:
                mode = bool(training) if self.train_bn else False
                values = self._meta.training_values
                if not values or mode in values:
                    kwargs["training"] = mode
            outputs = self._function(inputs, **kwargs)
        outputs = pick_output(outputs, self.output_key, self.handle)
        if self.trainable:
            for loss in self._regularization_losses:
                self.add_loss(loss())
        return tf.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        shape = self._meta.output_shape
        if shape is None:
            raise HubModelError(
                "The hub model does not declare its output shape. Pass a model whose "
                f"functions have a static output rank. Received: handle={self.handle!r}"
            )
        return (input_shape[0], *shape[1:])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "handle": self.handle,
            "signature": self.signature,
            "output_key": self.output_key,
            "arguments": dict(self.arguments),
            "input_shape": None if self.hub_input_shape is None
            else list(self.hub_input_shape),
            "train_bn": self.train_bn,
        })
        return config
