"""What a hub SavedModel declares: its endpoint, input/output specs, metadata.

A hub model is called through its `__call__` (the reusable SavedModel API) or a
named serving signature; `read_metadata` reads the input shapes and dtype, the
output shape and whether the function takes `training` from the traced
functions, so shapes are checked before TensorFlow fails deep inside. Metadata
read once is remembered per (handle, signature, output_key), so building a
`BackboneSpec` and then the layer does not read it twice.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from kerastransfer.backbones.tfhub.resolve import cache_key
from kerastransfer.errors import HubModelError, InputShapeError

__all__ = ["HubMetadata", "read_metadata", "endpoint", "pick_output",
           "check_input_shape", "remember_metadata", "remembered_metadata"]

_LOCK = threading.Lock()
_METADATA: dict[tuple, HubMetadata] = {}


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


def pick_output(structure, output_key: str | None, handle: str):
    """Selects the output tensor (or spec) from a function's output structure.

    Args:
        structure: what the function returns (a tensor, a dict or a sequence).
        output_key: the key to take from a dict, or None for the only output.
        handle: the handle, for error messages.

    Returns:
        The selected tensor (or `tf.TensorSpec`).

    Raises:
        HubModelError: `output_key` does not fit the structure.
    """
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


def endpoint(obj, handle: str, signature: str | None):
    """The callable to run and its concrete functions.

    Args:
        obj: the object `hub.load` returned.
        handle: the handle, for error messages.
        signature: a serving signature name, or None for `__call__`.

    Returns:
        `(function, concrete_functions)`.

    Raises:
        HubModelError: there is no such signature, or no traced `__call__`.
    """
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


def read_metadata(obj, handle: str, signature: str | None,
                  output_key: str | None) -> HubMetadata:
    """Reads a `HubMetadata` from the endpoint's traced functions.

    Args:
        obj: the object `hub.load` returned.
        handle: the handle, for error messages.
        signature: a serving signature name, or None for `__call__`.
        output_key: the output to use when the endpoint returns a dict.

    Returns:
        A `HubMetadata`.

    Raises:
        HubModelError: the endpoint takes several inputs, or unsupported dtypes,
            or `signature`/`output_key` do not match.
    """
    _, concrete = endpoint(obj, handle, signature)
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
        output = pick_output(function.structured_outputs, output_key, handle)
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


def check_input_shape(meta: HubMetadata, input_shape, handle: str) -> None:
    """Raises `InputShapeError` if no traced function takes `input_shape`."""
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



def remember_metadata(handle: str, signature: str | None, output_key: str | None,
                      meta: HubMetadata) -> None:
    """Remembers the metadata read for (handle, signature, output_key)."""
    with _LOCK:
        _METADATA[(cache_key(handle), signature, output_key)] = meta


def remembered_metadata(handle: str, signature: str | None,
                        output_key: str | None) -> HubMetadata | None:
    """The metadata remembered for (handle, signature, output_key), or None."""
    with _LOCK:
        return _METADATA.get((cache_key(handle), signature, output_key))
