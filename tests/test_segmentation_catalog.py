"""Every backbone family exported to ONNX (slow; one child process, see
conftest.ISOLATED), with max |diff| <= 1e-4 on segmentation models.

This is also the catalog's classification export test: a segmentation model's
pyramid ends with the backbone's last feature map (stride 32, the map a
`TransferModel` pools), so one conversion per family proves the whole backbone
graph converts; the classification head (pooling, dropout, dense) is exported
and checked in tests/test_export.py. Every backbone's recorded pyramid is
checked in tests/test_catalog.py (each backbone built once)."""

import keras
import numpy as np
import pytest

import kerastransfer as kt
from tests.conftest import release_memory

# 14 families built, converted and run: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# One backbone per family (ConvNeXt included: its grouped convolutions and exact
# GELU need the export patches).
# Sizes: 64 px; Inception 107 px (its valid padding leaves 1x1 maps at stride 32
# below 107 px, which the conditioning below avoids); Xception its minimum, 71.
FAMILIES = [
    ("mobilenet", 64), ("mobilenet_v2", 64), ("mobilenet_v3_small", 64),
    ("efficientnet_b0", 64), ("efficientnet_v2_b0", 64), ("resnet50", 64),
    ("resnet50_v2", 64), ("densenet121", 64), ("vgg16", 64),
    ("inception_v3", 107), ("inception_resnet_v2", 107), ("xception", 71),
    ("nasnet_mobile", 64), ("convnext_tiny", 64),
]


def conditioned_model(name, size, seed=0):
    """A random-weight segmentation model whose float32 outputs are well defined.

    Random weights give no parity test by themselves: at 32 px with BatchNorm
    statistics from 8 noise images, the stride-32 maps are 1x1, BatchNorm divides
    by the spread of 8 nearly equal values, and Keras's own output moves by up to
    0.3 in probability when the input moves by one ulp (EfficientNetB0; float64
    Keras differs from float32 Keras as much as onnxruntime does: docs/design.md,
    the segmentation export fact). At 64 px (2x2 deepest maps) with every
    BatchNorm -- the decoder's too -- recalibrated on 16 images and logits of
    unit spread, a 1-ulp input change moves Keras's probabilities by <= 5e-5,
    so a 1e-4 export difference means a conversion error. Returns
    `(model, calibration images, test images)`.
    """
    from kerastransfer.training.batchnorm import recalibrate_batchnorm

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (24, size, size, 3)).astype("float32")
    model = kt.SegmentationModel(name, 3, weights=None, input_shape=(size, size, 3),
                                 decoder="fpn", decoder_filters=(8,))
    recalibrate_batchnorm(model, images[:16], layers="all")
    # Logits of unit spread (the classifier scaled): a trained model's logits
    # are O(1-10), random ones up to 40, which doubles every rounding error.
    classifier = model.get_layer("decoder_logits")
    logits = keras.Model(model.input, classifier.output)(images[:16], training=False)
    spread = float(np.std(np.asarray(logits)))
    classifier.kernel.assign(np.asarray(classifier.kernel) / spread)
    classifier.bias.assign(np.asarray(classifier.bias) / spread)
    return model, images[:16], images[16:]


def ulp_sensitivity(model, images):
    """Max change of Keras's probabilities when every input pixel moves 1 ulp."""
    moved = np.nextafter(images, np.float32(np.inf))
    return float(np.abs(np.asarray(model(moved, training=False))
                        - np.asarray(model(images, training=False))).max())


def family_parity(name, size, directory):
    """Exports one family's conditioned model.

    Returns:
        `(ONNX max |diff|, 1-ulp change, {op type: count} of the file)`.
    """
    import onnx

    from kerastransfer.export import export_onnx
    from kerastransfer.export.optimize import count_ops

    model, _, test = conditioned_model(name, size)
    path = directory / f"{name}.onnx"
    report = export_onnx(model, path, atol=1e-4, validation_data=test, optimize=False)
    sensitivity = ulp_sensitivity(model, test)
    del model
    release_memory()  # 14 families in one process: give each one's memory back
    return report.max_abs_diff, sensitivity, count_ops(onnx.load(str(path)))


@pytest.mark.parametrize("name, size", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_segmentation_models_export_with_parity(tmp_path, name, size):
    diff, sensitivity, ops = family_parity(name, size, tmp_path)
    print(f"{name} {size} px: ONNX max |diff| {diff:.2g}, "
          f"1-ulp change {sensitivity:.2g}")
    assert sensitivity <= 1e-4, (name, sensitivity)  # the test model is well defined
    assert diff <= 1e-4, (name, diff)
    # everything converted: no TensorFlow call left, GELU not approximated
    assert "StatefulPartitionedCall" not in ops and "Erfc" not in ops, ops
    if name == "convnext_tiny":
        assert ops.get("Erf", 0) > 0  # exact GELU kept, written with erf


def test_direct_call_runs_in_inference_mode():
    # keras.layers.Resizing (call(..., training=True)) made model(x) run every
    # later BatchNorm on batch statistics: 0.8 apart from predict().
    from kerastransfer.tasks.segmentation_decoder import BilinearResize

    model, _, test = conditioned_model("mobilenet_v3_small", 32)
    resizes = [layer for layer in model.layers if isinstance(layer, BilinearResize)]
    assert resizes and not any(isinstance(layer, keras.layers.Resizing)
                               for layer in model.layers)
    np.testing.assert_allclose(np.asarray(model(test)),
                               model.predict(test, verbose=0), atol=1e-4)
    np.testing.assert_allclose(np.asarray(model(test[:1])),
                               np.asarray(model(test))[:1], atol=1e-4)
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("shape, size", [((1, 1), (2, 2)), ((3, 3), (8, 8)),
                                         ((2, 5), (7, 3)), ((35, 35), (71, 71))])
def test_bilinear_resize_is_tensorflows(shape, size):
    from kerastransfer.tasks.segmentation_decoder import BilinearResize

    x = np.random.default_rng(0).normal(size=(2, *shape, 4)).astype("float32")
    layer = BilinearResize(*size)
    np.testing.assert_array_equal(np.asarray(layer(x)),
                                  np.asarray(keras.ops.image.resize(x, size)))
    clone = BilinearResize.from_config(layer.get_config())
    assert (clone.height, clone.width) == size
