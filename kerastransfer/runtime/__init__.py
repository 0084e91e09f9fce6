"""The deployment side: numpy + onnxruntime only, never TensorFlow or Keras."""

from kerastransfer.runtime.images import *  # noqa: F401,F403
from kerastransfer.runtime.images import (  # noqa: F401
    METADATA_JSON_KEYS,
    METADATA_PREFIX,
    __all__,
    decode_metadata,
)
