"""int8 (static QDQ, dynamic) and fp16 exports, measured on a learned task."""

import keras
import numpy as np
import onnx
import pytest
from conftest import separable_images
from PIL import Image

import kerastransfer as kt
from kerastransfer.errors import DataError
from kerastransfer.export import export_onnx, read_metadata
from kerastransfer.export import quantize as quantize_lib
from kerastransfer.export.optimize import count_ops
from kerastransfer.runtime import OnnxPredictor

SIZE = 32


def _tiny_backbone():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.5)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


@pytest.fixture(scope="module")
def trained():
    """A tiny TransferModel trained on separable images, with held-out data."""
    keras.utils.set_random_seed(0)
    x, y = separable_images(n_per_class=50, size=SIZE, num_classes=3, seed=0)
    x_train, y_train, x_test, y_test = x[:100], y[:100], x[100:], y[100:]
    model = kt.TransferModel(_tiny_backbone(), num_classes=3, weights=None,
                             class_names=["a", "b", "c"], preprocessing="unit")
    model.fit(x_train, y_train, epochs=8, batch_size=16, verbose=0)
    accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), 1) == y_test)
    assert accuracy >= 0.95  # the task is learned: agreement is not trivial
    return model, x_train, x_test, y_test


def test_static_int8_agrees_with_float32_on_held_out_data(trained, tmp_path):
    model, x_train, x_test, y_test = trained
    path = str(tmp_path / "int8.onnx")
    report = export_onnx(model, path, quantize="static",
                         calibration_data=x_train[:32], validation_data=x_test)
    assert report.quantization == "static"
    assert report.agreement_data == "validation_data"
    assert report.agreement >= 0.99 and report.warnings == []
    ops = count_ops(onnx.load(path))
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    assert read_metadata(path)["quantization"] == "static"
    # measured again from the file, against Keras
    quantized = OnnxPredictor(path).predict(x_test)
    reference = np.asarray(model.predict(x_test, verbose=0))
    agreement = quantize_lib.agreement(reference, quantized)
    assert agreement >= 0.99
    assert np.mean(np.argmax(quantized, 1) == y_test) >= 0.95


def test_static_calibration_from_an_image_folder(trained, tmp_path):
    model, x_train, x_test, _ = trained
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, image in enumerate(x_train[:16]):
        Image.fromarray(image.astype("uint8")).save(folder / f"{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"not a png")
    report = export_onnx(model, str(tmp_path / "int8.onnx"), quantize="static",
                         calibration_data=str(folder))
    assert report.agreement_data == "calibration_data"
    assert report.agreement >= 0.99
    images = quantize_lib.load_calibration_images(str(folder), (SIZE, SIZE, 3))
    assert images.shape == (16, SIZE, SIZE, 3)
    np.testing.assert_array_equal(images, x_train[:16].astype("uint8"))


def test_dynamic_int8(trained, tmp_path):
    model, x_train, x_test, _ = trained
    path = str(tmp_path / "dynamic.onnx")
    report = export_onnx(model, path, quantize="dynamic", validation_data=x_test)
    ops = count_ops(onnx.load(path))
    assert ops.get("ConvInteger", 0) + ops.get("MatMulInteger", 0) > 0
    assert report.agreement >= 0.9
    assert report.quantized_max_abs_diff == pytest.approx(float(np.max(np.abs(
        OnnxPredictor(path).predict(x_test).astype("float64")
        - _fp32_outputs(model, tmp_path, x_test)))), abs=1e-6)


def _fp32_outputs(model, tmp_path, x):
    path = str(tmp_path / "fp32.onnx")
    export_onnx(model, path)
    return OnnxPredictor(path).predict(x).astype("float64")


def test_fp16_keeps_float32_inputs_and_outputs(trained, tmp_path):
    model, _, x_test, _ = trained
    path = str(tmp_path / "fp16.onnx")
    report = export_onnx(model, path, fp16=True, validation_data=x_test)
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {init.data_type for init in proto.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds
    assert report.quantization == "fp16" and report.agreement >= 0.99
    outputs = OnnxPredictor(path).predict(x_test)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, model.predict(x_test, verbose=0), atol=1e-2)


def test_low_agreement_warns_once(trained, tmp_path, monkeypatch, caplog):
    model, x_train, _, _ = trained
    monkeypatch.setattr(quantize_lib, "agreement", lambda *args: 0.5)
    with caplog.at_level("WARNING", logger="kerastransfer"):
        report = export_onnx(model, str(tmp_path / "q.onnx"), quantize="static",
                             calibration_data=x_train[:8])
    assert report.agreement == 0.5
    assert len(report.warnings) == 1 and "50.0%" in report.warnings[0]
    assert caplog.text.count("agreement_threshold=0.99") == 1


def test_low_agreement_warning_printed_once_by_the_cli(trained, tmp_path,
                                                       monkeypatch):
    from click.testing import CliRunner

    from kerastransfer.cli import cli

    model, x_train, _, _ = trained
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, image in enumerate(x_train[:8]):
        Image.fromarray(image.astype("uint8")).save(folder / f"{i}.png")
    monkeypatch.setattr(quantize_lib, "agreement", lambda *args: 0.5)
    result = CliRunner().invoke(cli, [
        "export", model_path, str(tmp_path / "q.onnx"), "--quantize", "static",
        "--calibration-dir", str(folder), "--no-validate"])
    assert result.exit_code == 0, result.output
    assert result.output.count("agrees with float32 on only 50.0%") == 1


def test_calibration_reader_is_an_onnxruntime_reader():
    from onnxruntime.quantization import CalibrationDataReader

    images = np.arange(20 * 2 * 2 * 3, dtype="float32").reshape(20, 2, 2, 3)
    reader = quantize_lib._calibration_reader("image", images, batch_size=8)
    assert isinstance(reader, CalibrationDataReader)
    batches = list(iter(reader.get_next, None))
    assert [len(b["image"]) for b in batches] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]),
                                  images)
    reader.rewind()
    assert len(reader.get_next()["image"]) == 8


def test_bad_calibration_data(trained, tmp_path):
    model, _, _, _ = trained
    with pytest.raises(ValueError, match="calibration"):
        export_onnx(model, str(tmp_path / "q.onnx"), quantize="static")
    with pytest.raises(DataError, match="shape"):
        export_onnx(model, str(tmp_path / "q.onnx"), quantize="static",
                    calibration_data=np.zeros((4, 16, 16, 3)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no readable image"):
        export_onnx(model, str(tmp_path / "q.onnx"), quantize="static",
                    calibration_data=str(empty))
    assert not (tmp_path / "q.onnx").exists()
