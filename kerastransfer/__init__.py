"""kerastransfer: fast, correct and deployable transfer learning with Keras 3.

The public API is imported lazily: `import kerastransfer.runtime` (the deployment
side) must not pull in TensorFlow, so nothing here imports Keras until a name that
needs it is used.

Example:

>>> import kerastransfer as kt
>>> model = kt.TransferModel("mobilenet_v3_small", num_classes=3, weights=None,
...                          input_shape=(64, 64, 3))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "TransferModel": "kerastransfer.tasks.classifier",
    "AudioClassifier": "kerastransfer.tasks.audio",
    "AudioData": "kerastransfer.data.audio",
    "AudioAugmentation": "kerastransfer.data.audio",
    "load_audio_folder": "kerastransfer.data.audio",
    "load_audio_list": "kerastransfer.data.audio",
    "audio_from_arrays": "kerastransfer.data.audio",
    "SegmentationModel": "kerastransfer.tasks.segmenter",
    "DetectionModel": "kerastransfer.tasks.detector",
    "SegmentationLoss": "kerastransfer.tasks.segmentation_loss",
    "SegmentationData": "kerastransfer.data.masks",
    "SegmentationAugmentation": "kerastransfer.data.segmentation_augment",
    "load_segmentation_folder": "kerastransfer.data.masks",
    "from_segmentation_arrays": "kerastransfer.data.masks",
    "load_detection_data": "kerastransfer.data.detection",
    "TextClassifier": "kerastransfer.tasks.text",
    "load_text_csv": "kerastransfer.data.text",
    "TextData": "kerastransfer.data.text",
    "load_model": "kerastransfer.saving",
    "export_onnx": "kerastransfer.export",
    "Phase": "kerastransfer.training.plan",
    "PhasePlan": "kerastransfer.training.plan",
    "Unfreeze": "kerastransfer.training.phases",
    "freeze_backbone": "kerastransfer.training.phases",
    "unfreeze": "kerastransfer.training.phases",
    "trainable_summary": "kerastransfer.training.phases",
    "BackboneSpec": "kerastransfer.backbones.registry",
    "BlockRule": "kerastransfer.backbones.registry",
    "list_backbones": "kerastransfer.backbones.registry",
    "get_backbone": "kerastransfer.backbones.registry",
    "register_backbone": "kerastransfer.backbones.registry",
    "unregister_backbone": "kerastransfer.backbones.registry",
    "ImagePreprocessing": "kerastransfer.preprocessing",
    "GroupedOptimizer": "kerastransfer.training.optimizers",
    "PhasedHistory": "kerastransfer.training.loop",
    "ImageData": "kerastransfer.data",
    "load_image_folder": "kerastransfer.data",
    "load_image_list": "kerastransfer.data",
    "balanced_class_weight": "kerastransfer.data",
    "lr_find": "kerastransfer.training.lr_finder",
    "LRFinderResult": "kerastransfer.training.lr_finder",
    "WarmupCosineDecay": "kerastransfer.training.schedules",
    "OneCycle": "kerastransfer.training.schedules",
    "write_report": "kerastransfer.report",
    "explain": "kerastransfer.report.explain",
    "read_image": "kerastransfer.data",
    "KerasTransferError": "kerastransfer.errors",
    "UnknownBackboneError": "kerastransfer.errors",
    "WeightsError": "kerastransfer.errors",
    "InputShapeError": "kerastransfer.errors",
    "DataError": "kerastransfer.errors",
    "ExportError": "kerastransfer.errors",
    "ExportValidationError": "kerastransfer.errors",
    "TrainingDivergedError": "kerastransfer.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for static analysis only
    from kerastransfer.backbones.registry import (  # noqa: F401
        BackboneSpec,
        BlockRule,
        get_backbone,
        list_backbones,
        register_backbone,
        unregister_backbone,
    )
    from kerastransfer.tasks.classifier import TransferModel  # noqa: F401
    from kerastransfer.training.phases import (  # noqa: F401
        Unfreeze,
        freeze_backbone,
        trainable_summary,
        unfreeze,
    )
    from kerastransfer.training.plan import Phase, PhasePlan  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kerastransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
