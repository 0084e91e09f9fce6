"""ONNX export: parity with Keras, metadata, validation errors, atomicity."""

import hashlib
import inspect
import json
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import kerastransfer as kt
from kerastransfer.errors import ExportError, ExportValidationError
from kerastransfer.export import export_onnx, read_metadata
from kerastransfer.export import onnx as onnx_export
from kerastransfer.export.optimize import count_ops
from kerastransfer.runtime import OnnxPredictor
from kerastransfer.training.batchnorm import recalibrate_batchnorm


def _images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")


def _model(backbone, size, num_classes=3, **kwargs):
    """A random-weight model whose BatchNorm statistics come from one pass, so
    its outputs vary with the input (otherwise they are constant)."""
    model = kt.TransferModel(backbone, num_classes=num_classes, weights=None,
                             input_shape=(size, size, 3), **kwargs)
    recalibrate_batchnorm(model, _images(8, size, seed=99), layers="backbone")
    return model


def _ort(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def mnv3():
    keras.utils.set_random_seed(1)
    return _model("mobilenet_v3_small", 32, class_names=["cat", "dog", "bird"])


@pytest.fixture(scope="module")
def mnv3_onnx(mnv3, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("onnx") / "mnv3.onnx")
    report = export_onnx(mnv3, path)
    return path, report


def test_parity_on_fresh_inputs(mnv3, mnv3_onnx):
    path, report = mnv3_onnx
    assert report.validated and report.max_abs_diff <= 1e-4
    x = _images(5, 32, seed=7)
    expected = np.asarray(mnv3(x))
    assert expected.std(axis=0).max() > 1e-3  # outputs really depend on the input
    actual = _ort(path).run(None, {"image": x})[0]
    assert actual.shape == (5, 3)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_input_and_output_signature(mnv3_onnx):
    proto = onnx.load(mnv3_onnx[0])
    (graph_input,) = proto.graph.input
    assert graph_input.name == "image"
    dims = graph_input.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # symbolic batch axis...
    assert dims[0].dim_param == "batch"  # ...named for clients (was unk__944)
    assert [d.dim_value for d in dims[1:]] == [32, 32, 3]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    (graph_output,) = proto.graph.output
    assert [d.dim_param or d.dim_value for d in
            graph_output.type.tensor_type.shape.dim] == ["batch", 3]
    session = _ort(mnv3_onnx[0])
    assert session.get_inputs()[0].shape == ["batch", 32, 32, 3]
    assert session.get_outputs()[0].shape == ["batch", 3]


def test_feature_parity(mnv3, tmp_path):
    path = str(tmp_path / "features.onnx")
    # Features are unbounded (not probabilities): compare relative to their scale.
    report = export_onnx(mnv3, path, output="features", atol=1e-2)
    x = _images(4, 32, seed=3)
    expected = np.asarray(mnv3.feature_extractor()(x))
    actual = _ort(path).run(None, {"image": x})[0]
    assert actual.shape == (4, 576)
    scale = np.abs(expected).max()
    assert scale > 1.0
    assert report.max_abs_diff / scale <= 1e-4
    assert np.abs(actual - expected).max() / scale <= 1e-4
    assert read_metadata(path)["output"] == "features"


def test_metadata_round_trip(mnv3, mnv3_onnx):
    meta = read_metadata(mnv3_onnx[0])
    assert meta["class_names"] == ["cat", "dog", "bird"]
    assert meta["input_shape"] == [None, 32, 32, 3]
    assert meta["input_layout"] == "NHWC"
    assert meta["input_dtype"] == "float32"
    assert meta["value_range"] == [0, 255]
    assert meta["task"] == "multiclass"
    assert meta["backbone"] == "mobilenet_v3_small"
    assert meta["include_preprocessing"] is True
    assert meta["quantization"] == "none"
    assert meta["keras_version"] == keras.__version__
    assert meta["tf2onnx_version"] == __import__("tf2onnx").__version__
    assert meta["kerastransfer_version"] == kt.__version__
    predictor = OnnxPredictor(mnv3_onnx[0])
    assert predictor.metadata == meta
    # The same contract next to the model, for readers without ONNX metadata.
    sidecar = os.path.splitext(mnv3_onnx[0])[0] + ".json"
    assert mnv3_onnx[1].sidecar == sidecar
    with open(sidecar) as file:
        assert json.load(file) == meta
    assert predictor.class_names == ["cat", "dog", "bird"]
    assert predictor.input_shape == (32, 32, 3)
    assert predictor.task == "multiclass"


def test_offline_optimization_removes_transposes(mnv3, mnv3_onnx, tmp_path):
    path, report = mnv3_onnx
    raw_path = str(tmp_path / "raw.onnx")
    raw_report = export_onnx(mnv3, raw_path, optimize=False)
    raw = count_ops(onnx.load(raw_path), "Transpose")
    optimized = count_ops(onnx.load(path), "Transpose")
    assert raw_report.optimization is None and report.optimization == "basic"
    assert raw == report.transpose_nodes_raw >= 50
    assert optimized == report.transpose_nodes <= 5
    x = _images(2, 32, seed=5)
    np.testing.assert_allclose(_ort(path).run(None, {"image": x})[0],
                               _ort(raw_path).run(None, {"image": x})[0], atol=1e-5)


def test_without_preprocessing(mnv3, tmp_path):
    model = _model("vgg16", 32)  # caffe preprocessing: BGR and mean
    path = str(tmp_path / "nopre.onnx")
    report = export_onnx(model, path, include_preprocessing=False)
    assert report.max_abs_diff <= 1e-4
    x = _images(3, 32, seed=11)
    preprocessed = np.asarray(model.preprocessor(x))
    actual = _ort(path).run(None, {"image": preprocessed})[0]
    # Random weights can amplify float32 rounding on these inputs (a ResNet50:
    # 3.7e-4 on one probability, though the export's own check passed).
    np.testing.assert_allclose(actual, np.asarray(model(x)), atol=1e-3)
    meta = read_metadata(path)
    assert meta["include_preprocessing"] is False
    assert meta["preprocessing_mode"] == "caffe"
    # the predictor applies the preprocessing from the metadata, in numpy, as
    # the Keras layer does
    np.testing.assert_allclose(OnnxPredictor(path).predict(x), actual, atol=1e-5)


class _PerturbedSession:
    def __init__(self, session):
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, names, feeds):
        return [o + 0.01 for o in self._session.run(names, feeds)]


def test_validation_collects_every_mismatch_and_keeps_old_file(
        mnv3, tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model bytes")
    real = onnx_export.__dict__  # noqa: F841 - keep module import explicit
    from kerastransfer.export import validate

    original = validate.load_session
    monkeypatch.setattr(validate, "load_session",
                        lambda source: _PerturbedSession(original(source)))
    with pytest.raises(ExportValidationError) as info:
        export_onnx(mnv3, str(path), atol=1e-3)
    mismatches = info.value.mismatches
    assert len(mismatches) == 2
    assert "batch size 1" in mismatches[0] and "batch size 3" in mismatches[1]
    assert "0.01" in mismatches[0] and "atol=0.001" in mismatches[0]
    assert path.read_bytes() == b"previous model bytes"
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left


def test_tolerance_argument_is_used(mnv3, tmp_path, monkeypatch):
    from kerastransfer.export import validate

    original = validate.load_session
    monkeypatch.setattr(validate, "load_session",
                        lambda source: _PerturbedSession(original(source)))
    report = export_onnx(mnv3, str(tmp_path / "m.onnx"), atol=0.02)
    assert 0.0099 < report.max_abs_diff < 0.0101


def test_file_onnxruntime_refuses_is_an_error_even_without_validation(
        mnv3, tmp_path, monkeypatch):
    real_convert = onnx_export.convert_to_onnx

    def broken(*args, **kwargs):
        proto = real_convert(*args, **kwargs)
        proto.graph.node[0].op_type = "StringSplitV2"  # an op ORT does not have
        return proto

    monkeypatch.setattr(onnx_export, "convert_to_onnx", broken)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="onnxruntime refuses"):
        export_onnx(mnv3, str(path), validate=False, optimize=False)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_string_inputs_are_refused(tmp_path):
    from kerastransfer.backbones.registry import BackboneSpec

    def build(shape, weights):
        inputs = keras.Input(shape=(), dtype="string")
        x = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(
            inputs)
        return keras.Model(inputs, keras.layers.Dense(4)(x))

    spec = BackboneSpec(name="toy_text", builder=build, family="text",
                        input_dtype="string", default_size=None)
    model = kt.TransferModel(spec, num_classes=2, weights=None)
    with pytest.raises(ExportError, match="does not support string inputs"):
        export_onnx(model, str(tmp_path / "text.onnx"))
    assert os.listdir(tmp_path) == []


def test_export_patches_match_the_keras_they_were_written_for():
    """Fails loudly when a Keras upgrade changes a patched private function:
    re-check export/patches.py against the new source, then update the hashes."""
    import keras
    from keras.src.backend.tensorflow import nn as tf_nn

    from kerastransfer.export import patches

    assert patches.check_keras() == []
    assert patches.KERAS_VERSION_WRITTEN_FOR == "3.15"
    assert keras.__version__.startswith("3.")
    sources = {name: hashlib.sha256(inspect.getsource(getattr(tf_nn, name)).encode())
               .hexdigest()[:16] for name in patches.PATCHED}
    assert sources == {  # keras 3.15.1
        "conv": "1bae7c0469d44106",
        "gelu": "edb8d0940a01c8d5",
        "_convert_data_format": "a9112cc8b7f50a12",
    }, f"Keras {keras.__version__} changed the functions export/patches.py patches"


def test_export_patches_skip_an_unknown_keras(monkeypatch, caplog):
    from keras.src.backend.tensorflow import nn as tf_nn

    from kerastransfer.export import patches

    monkeypatch.setitem(patches.PATCHED, "gelu", ("x", "approximate", "new_arg"))
    assert len(patches.check_keras()) == 1
    conv = tf_nn.conv
    with caplog.at_level("WARNING", logger="kerastransfer.export.patches"):
        with patches.export_patches():
            assert tf_nn.conv is conv  # not patched
    assert "not applied" in caplog.text and "3.15" in caplog.text


def test_export_patches_are_restored(mnv3_onnx):
    from keras.src.backend.tensorflow import nn as tf_nn

    conv, gelu = tf_nn.conv, tf_nn.gelu
    with onnx_export.export_patches():
        assert tf_nn.conv is not conv and tf_nn.gelu is not gelu
        x = np.linspace(-4, 4, 33, dtype="float32")
        exact = np.asarray(keras.ops.gelu(x, approximate=False))
    assert tf_nn.conv is conv and tf_nn.gelu is gelu
    np.testing.assert_allclose(exact, np.asarray(keras.ops.gelu(x, approximate=False)),
                               atol=1e-6)


def test_tf2onnx_optimizer_copies_are_collected_and_the_table_restored(monkeypatch):
    """The tf2onnx memory workaround (export/convert.py): for a large model every
    optimizer is made after a garbage collection that skips the objects alive
    before (frozen), and the table is tf2onnx's own again after the conversion
    (fact 24: 6.7 -> 2.6 GiB for a ResNet50); a small model converts unchanged."""
    import gc

    import tf2onnx.optimizer
    import tf2onnx.tf_loader

    from kerastransfer.export.convert import (
        COLLECT_ABOVE_BYTES,
        collected_optimizer_copies,
    )

    class Sized:
        def __init__(self, params):
            self.params = params

        def count_params(self):
            return self.params

    table = tf2onnx.optimizer._optimizers
    original = dict(table)
    grappler = tf2onnx.tf_loader.tf_optimize_grappler
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or 0)
    with collected_optimizer_copies(Sized(COLLECT_ABOVE_BYTES // 4)):
        assert gc.get_freeze_count() > 0  # what lived before is not scanned
        assert set(table) == set(original)
        assert all(table[name] is not original[name] for name in original)
        made = table["fold_constants"]()
        assert type(made) is type(original["fold_constants"]())
        assert collections == [1, 1]  # on entry, then before the optimizer
        assert tf2onnx.tf_loader.tf_optimize_grappler is not grappler
    assert gc.get_freeze_count() == 0
    assert dict(table) == original
    assert tf2onnx.tf_loader.tf_optimize_grappler is grappler
    collections.clear()
    with collected_optimizer_copies(Sized(COLLECT_ABOVE_BYTES // 4 - 1)):
        assert dict(table) == original and gc.get_freeze_count() == 0
    assert collections == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(opset=9), "opset"),
    (dict(atol=-1), "atol"),
    (dict(quantize="int4"), "quantize"),
    (dict(quantize="dynamic", fp16=True), "not both"),
    (dict(output="logits"), "output"),
])
def test_bad_arguments(mnv3, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_onnx(mnv3, str(tmp_path / "m.onnx"), **kwargs)
