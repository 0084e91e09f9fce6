"""Backbones: the registry and its sources (Keras Applications, TF-Hub, user models)."""

from kerastransfer.backbones.registry import (
    BackboneSpec,
    BlockRule,
    get_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)

__all__ = [
    "BackboneSpec",
    "BlockRule",
    "get_backbone",
    "list_backbones",
    "register_backbone",
    "unregister_backbone",
]
