"""TF-Hub backbones that fine-tune in Keras 3.

- `resolve`: handles (local directories, `file://` paths, https URLs), the
  `TFHUB_CACHE_DIR` cache, loading with clear errors;
- `signature`: the endpoint (`__call__` or a serving signature), its input and
  output specs (`HubMetadata`);
- `layer`: `HubBackbone`, the Keras 3 layer that wraps a SavedModel's variables;
- `spec`: `hub_backbone_spec`, the registry entry behind
  `TransferModel("tfhub:<handle>", ...)`.

`export_saved_model` lives in `kerastransfer.export.saved_model` and is
re-exported here for existing imports.
"""

from kerastransfer.backbones.tfhub.layer import HubBackbone
from kerastransfer.backbones.tfhub.resolve import (
    CACHE_ENV,
    load_hub_object,
    resolve_handle,
)
from kerastransfer.backbones.tfhub.signature import HubMetadata
from kerastransfer.backbones.tfhub.spec import (
    FALLBACK_SIZE,
    HUB_IMAGE_PREPROCESSING,
    hub_backbone_spec,
    join_handle,
    split_handle,
)

__all__ = [
    "HubBackbone",
    "HubMetadata",
    "hub_backbone_spec",
    "load_hub_object",
    "resolve_handle",
    "split_handle",
    "join_handle",
    "export_saved_model",
    "CACHE_ENV",
    "FALLBACK_SIZE",
    "HUB_IMAGE_PREPROCESSING",
]


def __getattr__(name):
    # Imported on first use: kerastransfer.export is not needed to build models.
    if name == "export_saved_model":
        from kerastransfer.export.saved_model import export_saved_model

        return export_saved_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
