"""TF-Hub backbones that fine-tune in Keras 3.

`hub.KerasLayer` is a tf_keras layer and cannot live in a Keras 3 model (a
functional model refuses it, and a subclassed one silently never trains its
weights). `HubBackbone` is a Keras 3 layer that holds `hub.load(handle)` and wraps
each of the SavedModel's own `tf.Variable`s in a `keras.Variable` (the same
variable, not a copy), so optimizer updates reach the SavedModel's functions.

`TransferModel("tfhub:<handle>", ...)` builds on it through `hub_backbone_spec`:
the input size and dtype are read from the SavedModel's traced functions, a hub
image model gets images scaled to [0, 1] (the TF-Hub convention), and a
string-input model (a text embedding) becomes the backbone of a text classifier.

Handles are what `hub.load` accepts: a local SavedModel directory, a `file://`
path, or an https URL (tfhub.dev / Kaggle Models; downloading needs the network
and caches under `TFHUB_CACHE_DIR`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

from kerastransfer.backbones.registry import HUB_PREFIX, BackboneSpec
from kerastransfer.errors import HubModelError, InputShapeError, WeightsError

__all__ = [
    "HubBackbone",
    "HubMetadata",
    "hub_backbone_spec",
    "load_hub_object",
    "resolve_handle",
    "split_handle",
    "export_saved_model",
    "CACHE_ENV",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "TFHUB_CACHE_DIR"
# TF-Hub image models take RGB floats in [0, 1]; TransferModel takes [0, 255].
HUB_IMAGE_PREPROCESSING = "unit"
# Image models whose functions accept any height/width get this default size.
FALLBACK_SIZE = 224

_LOCK = threading.Lock()
_METADATA: dict[tuple, HubMetadata] = {}
_PENDING: dict[tuple, Any] = {}


# --- Loading ---------------------------------------------------------------------


def _cache_dir_text() -> str:
    value = os.environ.get(CACHE_ENV)
    if value:
        return f"{CACHE_ENV}={value!r}"
    return (f"{CACHE_ENV} is not set, so the cache is "
            f"{os.path.join(tempfile.gettempdir(), 'tfhub_modules')!r}")


def _local_path(handle: str) -> str | None:
    """The local directory a handle names, or None for a remote (URL) handle."""
    if handle.startswith("file://"):
        return handle[len("file://"):]
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", handle):
        return None
    return os.path.expanduser(handle)


def _check_saved_model_dir(path: str, handle: str) -> None:
    if not os.path.exists(path):
        raise HubModelError(
            f"The TF-Hub handle does not resolve: {path!r} does not exist. Pass an "
            "existing TF2 SavedModel directory, a file:// path or an https URL; a "
            f"model downloaded before is found through {CACHE_ENV} "
            f"({_cache_dir_text()}). Received: handle={handle!r}"
        )
    if not os.path.isdir(path):
        raise HubModelError(
            "A TF-Hub handle must name a SavedModel directory, not a file. Pass the "
            f"folder that holds saved_model.pb. Received: handle={handle!r}"
        )
    if os.path.exists(os.path.join(path, "tfhub_module.pb")):
        raise HubModelError(
            "This is a TF1 hub.Module (it has tfhub_module.pb), which TF2 and Keras 3 "
            "cannot fine-tune. Use the model's TF2 SavedModel version (on tfhub.dev "
            "/ Kaggle Models, the 'TF2' format). Received: "
            f"handle={handle!r}"
        )
    if not any(os.path.exists(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise HubModelError(
            "The TF-Hub handle names a directory that is not a SavedModel (no "
            "saved_model.pb). Pass the folder written by tf.saved_model.save (or "
            f"downloaded from TF-Hub). Received: handle={handle!r}"
        )


def resolve_handle(handle: str) -> str:
    """Returns the local SavedModel directory of `handle` (downloading it if needed).

    Args:
        handle: a local directory, a `file://` path or an https URL.

    Returns:
        The directory holding `saved_model.pb`.

    Raises:
        HubModelError: the handle is unreachable (offline, or a bad URL), does not
            exist, is not a SavedModel, or is a TF1 `hub.Module`.
    """
    if not isinstance(handle, str) or not handle.strip():
        raise HubModelError(
            "A TF-Hub handle must be a non-empty string: a SavedModel directory, a "
            f"file:// path or an https URL. Received: handle={handle!r}"
        )
    path = _local_path(handle)
    if path is None:
        import tensorflow_hub as hub

        try:
            path = hub.resolve(handle)
        except (urllib.error.URLError, OSError) as error:
            raise HubModelError(
                f"Could not download the TF-Hub model ({type(error).__name__}: "
                f"{error}). Connect to the network, or point {CACHE_ENV} at a cache "
                "that already holds it, or download it once and pass its local "
                f"directory ({_cache_dir_text()}). Received: handle={handle!r}"
            ) from error
        except ValueError as error:
            raise HubModelError(
                f"TF-Hub does not accept this handle ({error}). Pass a tfhub.dev or "
                "Kaggle Models URL, a file:// path or a local SavedModel directory. "
                f"Received: handle={handle!r}"
            ) from error
    _check_saved_model_dir(path, handle)
    return path


def load_hub_object(handle: str):
    """`hub.load(handle)` with clear errors (see `resolve_handle`).

    Returns:
        The restored SavedModel object.

    Raises:
        HubModelError: as `resolve_handle`, or the SavedModel cannot be loaded.
    """
    path = resolve_handle(handle)
    import tensorflow_hub as hub

    try:
        return hub.load(path)
    except Exception as error:  # noqa: BLE001 -- re-raised with the handle
        raise HubModelError(
            f"Could not load the SavedModel ({type(error).__name__}: "
            f"{str(error)[:300]}). Check that it is a TF2 SavedModel written by a "
            f"compatible TensorFlow. Received: handle={handle!r}"
        ) from error


def _cache_key(handle: str) -> tuple:
    path = _local_path(handle)
    stamp = None
    if path is not None:
        pb = os.path.join(path, "saved_model.pb")
        if os.path.exists(pb):
            stamp = os.path.getmtime(pb)
    return (handle, stamp)


def _hub_variables(obj) -> list[tuple[Any, bool]]:
    """The SavedModel's variables, each with whether it is trainable."""
    import tensorflow as tf

    if hasattr(obj, "variables"):
        variables = list(obj.variables)
        if hasattr(obj, "trainable_variables"):
            trainable = {v.ref() for v in obj.trainable_variables}
        else:
            trainable = {v.ref() for v in variables if v.trainable}
    else:  # a plain TF2 SavedModel: find the variables in its object graph
        seen, variables = set(), []
        for item in tf.train.TrackableView(obj).descendants():
            if isinstance(item, tf.Variable) and item.ref() not in seen:
                seen.add(item.ref())
                variables.append(item)
        trainable = {v.ref() for v in variables if v.trainable}
    return [(v, v.ref() in trainable) for v in variables]


# --- What a SavedModel declares ------------------------------------------------------


@dataclass(frozen=True)
class HubMetadata:
    """What kerastransfer reads from a hub SavedModel's traced functions.

    Attributes:
        input_shapes: the input shapes (batch axis included) of the functions.
        input_dtype: `"float32"` or `"string"`.
        output_shape: the output shape (batch axis included), if known.
        accepts_training: the function takes a `training` argument.
        training_values: the `training` values it was traced for.
        input_name: the input's name (signatures only).
    """

    input_shapes: tuple[tuple[int | None, ...], ...]
    input_dtype: str
    output_shape: tuple[int | None, ...] | None
    accepts_training: bool
    training_values: tuple[bool, ...]
    input_name: str | None = None

    @property
    def default_size(self) -> int | None:
        for shape in self.input_shapes:
            if len(shape) == 4 and shape[1] is not None:
                return int(shape[1])
        return None

    @property
    def channels(self) -> int:
        for shape in self.input_shapes:
            if len(shape) == 4 and shape[3] is not None:
                return int(shape[3])
        return 3

    def accepts(self, shape: Sequence[int | None]) -> bool:
        """Whether some traced function takes inputs of `(batch, *shape)`."""
        full = (None, *shape)
        for declared in self.input_shapes:
            if len(declared) == len(full) and all(
                d is None or s is None or d == s
                for d, s in zip(declared, full, strict=True)
            ):
                return True
        return False


def _spec_shape(spec) -> tuple[int | None, ...] | None:
    if spec.shape.rank is None:
        return None
    return tuple(spec.shape.as_list())


def _pick_output(structure, output_key, handle):
    """Selects the output tensor (or spec) from a function's output structure."""
    if isinstance(structure, dict):
        if output_key is None:
            if len(structure) == 1:
                return next(iter(structure.values()))
            raise HubModelError(
                "The hub model returns several outputs. Pass output_key= one of "
                f"{sorted(structure)}. Received: handle={handle!r}, output_key=None"
            )
        if output_key not in structure:
            raise HubModelError(
                f"The hub model has no output {output_key!r}. Pass output_key= one "
                f"of {sorted(structure)}. Received: output_key={output_key!r}"
            )
        return structure[output_key]
    if output_key is not None:
        raise HubModelError(
            "output_key= selects from a dict of outputs, but the hub model returns a "
            "single tensor. Pass output_key=None. Received: "
            f"output_key={output_key!r}"
        )
    if isinstance(structure, (list, tuple)):
        if len(structure) == 1:
            return structure[0]
        raise HubModelError(
            f"The hub model returns {len(structure)} outputs (a sequence); "
            "kerastransfer needs one feature tensor. Use a signature with named "
            f"outputs and output_key=. Received: handle={handle!r}"
        )
    return structure


def _endpoint(obj, handle: str, signature: str | None):
    """The callable to run and its concrete functions."""
    if signature is not None:
        signatures = getattr(obj, "signatures", {}) or {}
        if signature not in signatures:
            raise HubModelError(
                f"The hub model has no signature {signature!r}. Pass signature= one "
                f"of {sorted(signatures)} or None (its __call__). Received: "
                f"handle={handle!r}, signature={signature!r}"
            )
        function = signatures[signature]
        return function, [function]
    # The SavedModel's __call__ is an instance attribute: callable(obj) misses it.
    function = getattr(obj, "__call__", None)  # noqa: B004
    concrete = list(getattr(function, "concrete_functions", None) or [])
    if function is None or not concrete:
        names = sorted(getattr(obj, "signatures", {}) or {})
        hint = (f" Pass signature= one of {names}." if names else
                " Save it with a tf.function __call__ (the TF-Hub reusable "
                "SavedModel API).")
        raise HubModelError(
            "The hub model has no traced __call__ function to reuse." + hint
            + f" Received: handle={handle!r}"
        )
    return function, concrete


def _metadata(obj, handle: str, signature: str | None,
              output_key: str | None) -> HubMetadata:
    _, concrete = _endpoint(obj, handle, signature)
    shapes, dtypes, training_values, outputs = [], set(), set(), []
    accepts_training = False
    input_name = None
    for function in concrete:
        args, kwargs = function.structured_input_signature
        if signature is not None:
            if len(kwargs) != 1:
                raise HubModelError(
                    f"Signature {signature!r} takes {len(kwargs)} inputs "
                    f"({sorted(kwargs)}); a backbone takes one. Received: "
                    f"handle={handle!r}"
                )
            input_name, spec = next(iter(kwargs.items()))
        else:
            tensor_args = [a for a in args if hasattr(a, "shape")]
            if len(tensor_args) != 1:
                raise HubModelError(
                    f"The hub model's __call__ takes {len(tensor_args)} tensor "
                    "inputs; a backbone takes one. Use a single-input model or "
                    f"signature=. Received: handle={handle!r}"
                )
            spec = tensor_args[0]
            parameters = list(function.function_type.parameters)
            if "training" in parameters:
                accepts_training = True
                index = parameters.index("training")
                value = args[index] if index < len(args) else kwargs.get("training")
                if isinstance(value, bool):
                    training_values.add(value)
        shape = _spec_shape(spec)
        if shape is not None:
            shapes.append(shape)
        dtypes.add(spec.dtype.name)
        output = _pick_output(function.structured_outputs, output_key, handle)
        if hasattr(output, "shape") and output.shape.rank is not None:
            outputs.append(tuple(output.shape.as_list()))
    if dtypes - {"float32", "string", "float16", "float64"}:
        raise HubModelError(
            f"The hub model takes {sorted(dtypes)} inputs; kerastransfer backbones "
            f"take float images or strings. Received: handle={handle!r}"
        )
    input_dtype = "string" if "string" in dtypes else "float32"
    return HubMetadata(
        input_shapes=tuple(dict.fromkeys(shapes)),
        input_dtype=input_dtype,
        output_shape=outputs[0] if outputs else None,
        accepts_training=accepts_training,
        training_values=tuple(sorted(training_values)),
        input_name=input_name,
    )


def _check_input_shape(meta: HubMetadata, input_shape, handle: str) -> None:
    if input_shape is None or not meta.input_shapes:
        return
    shape = tuple(input_shape)
    if meta.input_dtype == "string":
        shape = ()
    if not meta.accepts(shape):
        accepted = ", ".join(str(s[1:]) for s in meta.input_shapes)
        raise InputShapeError(
            f"The hub model has no function for inputs of shape {shape}: its traced "
            f"functions take {accepted} (None: any size). Resize the images to an "
            f"accepted size and pass that input_shape. Received: handle={handle!r}, "
            f"input_shape={shape}"
        )


# --- The layer -------------------------------------------------------------------


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
        meta = _metadata(obj, handle, signature, output_key)
        _remember_metadata(handle, signature, output_key, meta)
        _check_input_shape(meta, input_shape, handle)
        self.hub_input_shape = None if input_shape is None else tuple(input_shape)
        self._meta = meta
        self._hub_object = obj
        self._function, _ = _endpoint(obj, handle, signature)
        self._regularization_losses = (
            list(getattr(obj, "regularization_losses", []) or [])
            if signature is None else []
        )
        pairs = _hub_variables(obj)
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
        outputs = _pick_output(outputs, self.output_key, self.handle)
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


# --- Registry spec ---------------------------------------------------------------


def _remember_metadata(handle, signature, output_key, meta) -> None:
    with _LOCK:
        _METADATA[(_cache_key(handle), signature, output_key)] = meta


def split_handle(handle: str, signature: str | None = None,
                 output_key: str | None = None) -> tuple[str, str | None, str | None]:
    """Splits `"<handle>#signature=...&output_key=..."` into its three parts.

    Raises:
        HubModelError: an unknown fragment key, or a value that contradicts the
            `signature`/`output_key` arguments.
    """
    base, sep, fragment = handle.rpartition("#")
    if not sep or "=" not in fragment:
        return handle, signature, output_key
    values = {"signature": signature, "output_key": output_key}
    for part in filter(None, fragment.split("&")):
        key, _, value = part.partition("=")
        if key not in values:
            raise HubModelError(
                "A TF-Hub handle fragment may set only 'signature' and 'output_key' "
                f"(e.g. '#signature=serving_default&output_key=features'). "
                f"Received: handle={handle!r}"
            )
        if values[key] is not None and values[key] != value:
            raise HubModelError(
                f"The handle sets {key}={value!r} but {key}={values[key]!r} was "
                f"passed too. Pass it once. Received: handle={handle!r}"
            )
        values[key] = value or None
    return base, values["signature"], values["output_key"]


def join_handle(handle: str, signature: str | None, output_key: str | None) -> str:
    """The inverse of `split_handle`."""
    parts = [f"{k}={v}" for k, v in (("signature", signature),
                                       ("output_key", output_key)) if v]
    return handle + ("#" + "&".join(parts) if parts else "")


def hub_backbone_spec(
    handle: str, *, signature: str | None = None, output_key: str | None = None
) -> BackboneSpec:
    """The `BackboneSpec` for `TransferModel("tfhub:<handle>", ...)`.

    Reads the input size (where the SavedModel declares one), the input dtype
    (images or strings) and the feature dimension from the SavedModel's traced
    functions. Image models get `preprocessing="unit"` (TF-Hub image models take
    RGB in [0, 1]); text models take a string tensor and no preprocessing.

    A signature and output key can also ride on the handle as a fragment, so a
    registry name says everything (and a saved model reloads with them):
    `"tfhub:/models/enc#signature=serving_default&output_key=features"`.

    Args:
        handle: a SavedModel directory, a `file://` path or an https URL,
            optionally followed by `#signature=...&output_key=...`.
        signature: as for `HubBackbone`. Defaults to `None`.
        output_key: as for `HubBackbone`. Defaults to `None`.

    Returns:
        A `BackboneSpec` named `"tfhub:<handle>"` whose builder returns a
        `keras.Model` wrapping one `HubBackbone` (one unfreezing block).

    Raises:
        HubModelError: the handle cannot be resolved or loaded (see `HubBackbone`).

    Example:

    >>> spec = hub_backbone_spec("/path/to/saved_model")  # doctest: +SKIP
    >>> spec.default_size  # doctest: +SKIP
    224
    """
    handle, signature, output_key = split_handle(handle, signature, output_key)
    key = (_cache_key(handle), signature, output_key)
    with _LOCK:
        meta = _METADATA.get(key)
    if meta is None:
        obj = load_hub_object(handle)
        meta = _metadata(obj, handle, signature, output_key)
        with _LOCK:
            _METADATA[key] = meta
            _PENDING[key] = obj  # the first build reuses it (no second load)
    is_text = meta.input_dtype == "string"
    default_size = meta.default_size
    if default_size is None and not is_text:
        default_size = FALLBACK_SIZE
    name = f"{HUB_PREFIX}{join_handle(handle, signature, output_key)}"

    def builder(input_shape, weights):
        if weights is None:
            raise WeightsError(
                "A TF-Hub backbone comes with its own weights, which cannot be "
                "re-initialized. Pass weights='imagenet' (the default: the hub "
                "model's weights) or a weights file saved from this backbone. "
                f"Received: backbone={name!r}, weights=None"
            )
        with _LOCK:
            loaded = _PENDING.pop(key, None)
        shape = () if is_text else tuple(input_shape)
        layer = HubBackbone(
            handle, trainable=True, signature=signature, output_key=output_key,
            input_shape=shape, loaded_object=loaded, name="hub_backbone",
        )
        inputs = keras.Input(shape=shape, dtype=meta.input_dtype, name="hub_input")
        model = keras.Model(inputs, layer(inputs), name="tfhub_backbone")
        if weights not in ("imagenet", "hub"):
            from kerastransfer.backbones.keras_apps import load_weights_file

            load_weights_file(model, weights, name)
        return model

    feature_dim = meta.output_shape[-1] if meta.output_shape else None
    return BackboneSpec(
        name=name,
        builder=builder,
        family="tfhub",
        preprocessing="none" if is_text else HUB_IMAGE_PREPROCESSING,
        default_size=None if is_text else default_size,
        min_size=1,
        feature_dim=feature_dim,
        channels=meta.channels,
        source="tfhub",
        supports_imagenet=True,
        input_dtype=meta.input_dtype,
    )


# --- Self-contained export ---------------------------------------------------------


def export_saved_model(model: keras.Model, directory: str | os.PathLike, *,
                       overwrite: bool = False) -> str:
    """Exports a model (hub backbone included) as a self-contained SavedModel.

    The SavedModel holds the hub model's functions and the fine-tuned weights, so
    it runs without the handle, the TF-Hub cache or kerastransfer
    (`tf.saved_model.load(directory).serve(images)`). Use it to deploy text (string
    input) models, which ONNX cannot take; deploy image models with
    `kerastransfer.export.export_onnx`.

    Args:
        model: a `TransferModel` (or any built Keras model).
        directory: the folder to write (written atomically: a failed export leaves
            no folder, and a replaced one stays intact until the new one is
            complete).
        overwrite: replace an existing folder. Defaults to `False`.

    Returns:
        The directory written.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ExportError: the model cannot be exported.

    Example:

    >>> export_saved_model(model, "exported/")  # doctest: +SKIP
    'exported/'
    """
    from kerastransfer.errors import ExportError
    from kerastransfer.io import atomic_path

    directory = os.fspath(directory)
    target = directory.rstrip(os.sep) or directory
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{directory!r} exists. Pass overwrite=True to replace it or choose "
            f"another folder. Received: directory={directory!r}"
        )
    backup = None
    if os.path.exists(target):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old.",
                                  dir=os.path.dirname(os.path.abspath(target)))
        os.rmdir(backup)
        os.replace(target, backup)
    try:
        with atomic_path(target) as tmp:
            try:
                model.export(tmp, format="tf_saved_model", verbose=False)
            except Exception as error:  # noqa: BLE001 -- wrapped with context
                raise ExportError(
                    f"SavedModel export failed ({type(error).__name__}: "
                    f"{str(error)[:300]}). Call the model on one batch first, or "
                    f"export its .keras file instead. Received: "
                    f"directory={directory!r}"
                ) from error
    except BaseException:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    logger.info("Exported a self-contained SavedModel to %s", directory)
    return directory
