"""The `kerastransfer` command line, through click's CliRunner (and a subprocess
for the no-TensorFlow and start-up noise checks). Tiny data: 40 px PNG folders,
`--weights none`."""

import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from training_helpers import run_without_tensorflow

from export.tiny_model import build_tiny_onnx
from kerastransfer.cli import cli
from kerastransfer.data.synthetic import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_folder(root, classes=("green", "red"), per_class=10, size=40, seed=0):
    """Class subfolders of PNGs whose class shows in their colour."""
    return Path(write_image_folder(root, classes, per_class=per_class, size=size,
                                   seed=seed))


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def _usage_error(result, option):
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output


def _runtime_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines()
                   if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("data") / "images")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One real `train` run shared by the export/predict/evaluate/info tests."""
    out = tmp_path_factory.mktemp("trained")
    model = out / "model.keras"
    result = _invoke("train", data_dir, "--backbone", "mobilenet_v3_small",
                     "--weights", "none", "--image-size", "40", "--epochs", "1",
                     "--batch-size", "8", "--validation-split", "0.2",
                     "--out", model, "--plots", out / "report",
                     "--checkpoint-dir", out / "ckpt", "--seed", "3")
    assert result.exit_code == 0, result.output
    (out / "train.stdout").write_text(result.stdout)
    return out


@pytest.fixture(scope="module")
def onnx_model(trained):
    path = trained / "model.onnx"
    if not path.exists():
        result = _invoke("export", trained / "model.keras", path)
        assert result.exit_code == 0, result.output
        (trained / "export.stdout").write_text(result.stdout)
    return path


# --- help, group options ---------------------------------------------------------
@pytest.mark.parametrize("command", ["backbones", "train", "export", "predict",
                                     "evaluate", "info", "benchmark"])
def test_every_command_has_help_with_examples(command):
    result = _invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert f"kerastransfer {command}" in result.output


def test_group_help_lists_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("backbones", "train", "export", "predict", "evaluate", "info",
                    "benchmark"):
        assert command in result.output
    _usage_error(_invoke("--quiet", "--verbose", "backbones"), "--quiet")
    _usage_error(_invoke("no-such-command"), "no-such-command")


# --- backbones -------------------------------------------------------------------
def test_backbones_lists_the_catalog():
    from kerastransfer.backbones.registry import get_backbone, list_backbones

    result = _invoke("backbones", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list_backbones()
    by_name = {r["name"]: r for r in rows}
    spec = get_backbone("inception_v3")
    assert by_name["inception_v3"]["min_size"] == spec.min_size == 75
    assert by_name["inception_v3"]["default_size"] == 299
    assert by_name["mobilenet_v3_small"]["feature_dim"] == 576
    text = _invoke("backbones", "--family", "resnet")
    assert text.exit_code == 0
    lines = text.output.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "family", "default", "min"]
    assert {line.split()[0] for line in lines[1:]} == {"resnet50", "resnet101",
                                                      "resnet152"}
    _usage_error(_invoke("backbones", "--family", "resnt"), "--family")


# --- train -----------------------------------------------------------------------
@pytest.mark.slow
def test_train_writes_a_model_report_and_checkpoint(trained):
    from kerastransfer.saving import load_model

    model = load_model(trained / "model.keras")
    assert model.class_names == ["green", "red"]
    assert model.image_shape == (40, 40, 3)
    assert model.backbone_name == "mobilenet_v3_small"
    assert model.pretrained is False
    assert (trained / "report" / "learning_curves.png").stat().st_size > 1000
    metrics = json.loads((trained / "report" / "metrics.json").read_text())
    assert sum(metrics["confusion_matrix"][0]) + sum(
        metrics["confusion_matrix"][1]) == 4  # 20% of 20 images held out
    assert os.listdir(trained / "ckpt")


def _printed_metrics(stdout, prefix="Final ("):
    """`{name: (value, printed text)}` from the `Final (...): k=v, ...` line."""
    [line] = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line, {key: (float(text), text)
                  for key, text in re.findall(r"(\w+)=([-+\d.eE]+)", line)}


def _half_last_digit(text):
    """Half a unit of the last printed digit: '0.9444' -> 5e-05."""
    return 0.5 * 10.0 ** Decimal(text).as_tuple().exponent


@pytest.mark.slow
def test_train_final_metrics_describe_the_saved_model(trained, data_dir):
    """Issue 11 point 2: the printed (and recorded) metrics are the saved model's
    on the validation split, not the last epoch's (measured before the phase
    ended: the old code printed the last epoch's val_loss, not the saved model's)."""
    from kerastransfer.data import load_image_folder
    from kerastransfer.saving import load_model

    line, printed = _printed_metrics((trained / "train.stdout").read_text())
    assert "the saved model on the validation split, 4 images" in line
    assert set(printed) == {"val_accuracy", "val_loss"}
    model = load_model(trained / "model.keras")
    data = load_image_folder(data_dir, image_size=(40, 40), batch_size=8,
                             validation_split=0.2, seed=3, shuffle=False)
    assert data.num_validation == 4
    measured = model.evaluate(data.validation, return_dict=True, verbose=0)
    for key, (value, text) in printed.items():
        actual = measured[key[len("val_"):]]
        assert abs(value - actual) <= _half_last_digit(text) + 1e-9, (key, text,
                                                                      actual)
    record = json.loads((trained / "model.train.json").read_text())
    assert record["data_dir"] == os.path.abspath(data_dir)
    assert record["image_size"] == [40, 40] and record["seed"] == 3
    assert record["class_names"] == ["green", "red"]
    assert record["num_validation"] == 4
    for key, value in record["metrics"].items():
        assert value == pytest.approx(measured[key[len("val_"):]], rel=1e-5,
                                      abs=1e-7)


def test_train_missing_folder_is_a_usage_error(tmp_path):
    _usage_error(_invoke("train", tmp_path / "nope", "--weights", "none"), "DATA_DIR")


def test_train_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke("train", tmp_path / "empty", "--weights", "none",
                     "--image-size", "32", "--out", tmp_path / "m.keras")
    _runtime_error(result)
    assert not (tmp_path / "m.keras").exists()


def test_train_one_class_folder(tmp_path):
    root = _write_folder(tmp_path / "one", classes=("only",), per_class=3)
    result = _invoke("train", root, "--weights", "none", "--image-size", "32",
                     "--out", tmp_path / "m.keras")
    _runtime_error(result, "class")
    assert not (tmp_path / "m.keras").exists()


def test_train_strict_rejects_a_corrupt_file(tmp_path):
    root = _write_folder(tmp_path / "d", per_class=3)
    (root / "red" / "broken.png").write_bytes(b"this is not a png")
    result = _invoke("train", root, "--weights", "none", "--image-size", "32",
                     "--strict", "--out", tmp_path / "m.keras")
    _runtime_error(result, "broken.png")


@pytest.mark.parametrize("args, option", [
    (["--backbone", "mobilenet_v3_smal"], "--backbone"),
    (["--backbone", "inception_v3", "--image-size", "64"], "--image-size"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "abc"], "--image-size"),
    (["--unfreeze", "blocks:two"], "--unfreeze"),
    (["--unfreeze", "sideways"], "--unfreeze"),
    (["--weights", "/no/such/weights.h5"], "--weights"),
    (["--out", "model.h5"], "--out"),
    (["--out", "/no/such/folder/model.keras"], "--out"),
    (["--validation-split", "1.5"], "--validation-split"),
    (["--epochs", "-1"], "--epochs"),
])
def test_train_bad_options_are_usage_errors(data_dir, args, option):
    result = _invoke("train", data_dir, "--weights", "none", *args)
    _usage_error(result, option)


def test_train_unknown_backbone_suggests_names(data_dir):
    result = _invoke("train", data_dir, "--backbone", "resnet5")
    _usage_error(result, "--backbone")
    assert "Did you mean" in result.output and "resnet50" in result.output.lower()


def test_train_image_below_minimum_names_the_minimum(data_dir):
    result = _invoke("train", data_dir, "--backbone", "inception_v3",
                     "--image-size", "64x80", "--weights", "none")
    _usage_error(result, "--image-size")
    assert "75x75" in result.output


def test_train_offline_imagenet_error_names_the_cli_options(data_dir, tmp_path,
                                                           monkeypatch):
    """Issue 11 point 7: offline, the error says `--weights none`, not the Python
    API's `weights=None`."""
    import urllib.error

    import keras

    def offline(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise urllib.error.URLError("[Errno -3] Temporary failure in name "
                                        "resolution")
        raise AssertionError("only the ImageNet download is expected")

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", offline)
    result = _invoke("train", data_dir, "--weights", "imagenet", "--image-size",
                     "32", "--out", tmp_path / "m.keras")
    _runtime_error(result, "--weights none", "--weights /path/to/weights.h5",
                   "Received: --weights imagenet")
    assert "weights=None" not in result.output
    assert not (tmp_path / "m.keras").exists()


def test_cli_wording():
    from kerastransfer.cli.train import cli_wording

    assert cli_wording("pass weights='/a b/w.h5' or weights=None. Received: "
                       "weights='imagenet', pretrained_weights=None") == (
        "pass --weights /a b/w.h5 or --weights none. Received: --weights imagenet, "
        "pretrained_weights=None")


_TF_STARTUP_LINES = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard",
                     "cuda_drivers", "cuInit")


@pytest.mark.slow
def test_train_subprocess_stderr_has_no_tensorflow_startup_lines(tmp_path):
    """Issue 11 point 7: the console command shows none of TensorFlow's start-up
    lines (absl pre-init warning, cudart stub, CPU feature guard), and stderr
    works again after the import (the -v progress lines still appear)."""
    root = _write_folder(tmp_path / "d", per_class=3, size=32)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
        [sys.executable, "-m", "kerastransfer.cli", "-v", "train", str(root),
         "--weights", "none", "--image-size", "32", "--epochs", "1",
         "--batch-size", "6", "--validation-split", "0", "--out",
         str(tmp_path / "m.keras")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for fragment in _TF_STARTUP_LINES:
        assert fragment not in out.stderr, out.stderr
    assert "INFO: Phase from_scratch" in out.stderr  # fd 2 restored after import
    assert "no validation split: training metrics" in out.stdout
    assert (tmp_path / "m.keras").is_file() and (tmp_path / "m.train.json").is_file()


@pytest.mark.slow
def test_train_skips_a_corrupt_file_and_trains_two_phases(tmp_path):
    root = _write_folder(tmp_path / "d", per_class=6)
    (root / "green" / "notes.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    weights = tmp_path / "backbone.weights.h5"
    import kerastransfer as kt

    kt.TransferModel("mobilenet_v3_small", num_classes=2, weights=None,
                     input_shape=(32, 32, 3)).backbone.save_weights(weights)
    result = _invoke("-v", "train", root, "--weights", weights, "--image-size", "32",
                     "--epochs", "1", "--fine-tune-epochs", "1", "--unfreeze",
                     "blocks:2", "--batch-size", "6", "--validation-split", "0",
                     "--out", tmp_path / "m.keras")
    assert result.exit_code == 0, result.output
    assert "notes.png" in result.output  # reported as skipped
    assert "Phase frozen" in result.output and "Phase fine_tune" in result.output
    model = kt.load_model(tmp_path / "m.keras")
    assert model.pretrained is True
    assert model.phase_state["unfreeze"] == "blocks:2"


# --- export ----------------------------------------------------------------------
@pytest.mark.slow
def test_export_writes_a_valid_onnx_model(trained, onnx_model):
    import onnx

    onnx.checker.check_model(onnx.load(str(onnx_model)))
    from kerastransfer.runtime import OnnxPredictor

    predictor = OnnxPredictor(onnx_model)
    assert predictor.class_names == ["green", "red"]
    assert predictor.input_shape == (40, 40, 3)


def _reported_diff(stdout):
    match = re.search(r"max \|onnx - keras\| = ([-+\d.eE]+)", stdout)
    assert match, stdout
    return float(match.group(1))


@pytest.mark.slow
def test_export_validates_on_real_images_of_the_training_folder(trained, onnx_model,
                                                                data_dir):
    """Issue 11 point 3: random noise saturates a trained softmax (the old output
    was a meaningless ~1e-35); the reported difference is measured on a sample of
    the training folder recorded by `train`, and says so."""
    from kerastransfer.cli.record import sample_image_files
    from kerastransfer.runtime import OnnxPredictor, decode_images
    from kerastransfer.saving import load_model

    stdout = (trained / "export.stdout").read_text()
    assert f"validated on 16 real images from {os.path.abspath(data_dir)}" in stdout
    assert "model.train.json" in stdout
    reported = _reported_diff(stdout)
    assert 1e-12 < reported < 1e-4
    files = sample_image_files(os.path.abspath(data_dir), 16)
    assert {Path(f).parent.name for f in files} == {"green", "red"}
    images, failed = decode_images(files, (40, 40))
    assert not failed and len(images) == 16
    keras_out = load_model(trained / "model.keras").predict(images, verbose=0)
    onnx_out = OnnxPredictor(onnx_model).predict(images)
    expected = float(np.max(np.abs(onnx_out.astype("float64") - keras_out)))
    assert reported == pytest.approx(expected, rel=0.01)


@pytest.mark.slow
def test_export_validation_dir_option(trained, tmp_path):
    other = _write_folder(tmp_path / "other", per_class=3, size=24, seed=9)
    out = tmp_path / "m.onnx"
    result = _invoke("export", trained / "model.keras", out, "--validation-dir",
                     other, "--no-optimize")
    assert result.exit_code == 0, result.output
    assert f"validated on 6 real images from {other} (--validation-dir)" in \
        result.stdout
    assert 1e-12 < _reported_diff(result.stdout) < 1e-4


def test_export_validation_images_fall_back_to_random(tmp_path, caplog):
    """No record: random images, and the output says so; a record whose folder is
    gone: a warning naming it, then random images."""
    from types import SimpleNamespace

    from kerastransfer.cli.export import _export_details, _validation_images
    from kerastransfer.cli.record import read_record, record_path, write_record

    model = tmp_path / "m.keras"
    assert record_path(model) == str(tmp_path / "m.train.json")
    assert _validation_images(str(model), None, (32, 32, 3)) == (None, None)
    write_record(model, {"data_dir": str(tmp_path / "gone")})
    assert read_record(model) == {"data_dir": str(tmp_path / "gone")}
    with caplog.at_level("WARNING", logger="kerastransfer"):
        assert _validation_images(str(model), None, (32, 32, 3)) == (None, None)
    assert "gone" in caplog.text and "--validation-dir" in caplog.text
    folder = _write_folder(tmp_path / "data", per_class=20, size=8)
    write_record(model, {"data_dir": str(folder)})
    images, source = _validation_images(str(model), None, (12, 10, 3))
    assert images.shape == (16, 12, 10, 3) and images.dtype == np.float32
    assert source == f"{folder} (the training folder in {tmp_path / 'm.train.json'})"
    report = SimpleNamespace(validated=True, max_abs_diff=4.4e-35, quantization=None,
                             warnings=[])
    line = _export_details(report, None, None, 0)
    assert line.startswith("validated on random images only (pass --validation-dir")
    assert line.endswith("= 4.4e-35")


@pytest.mark.slow
def test_export_static_quantization_with_calibration_folder(trained, data_dir):
    import onnx

    out = trained / "model-int8.onnx"
    result = _invoke("export", trained / "model.keras", out, "--quantize", "static",
                     "--calibration-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "static" in result.output and "agreement" in result.output
    info = json.loads(_invoke("info", out, "--json").output)
    assert info["metadata"]["quantization"] == "static"
    assert info["class_names"] == ["green", "red"]
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


@pytest.mark.parametrize("extra, option", [
    (["--quantize", "static"], "--calibration-dir"),
    (["--fp16", "--quantize", "dynamic"], "--fp16"),
    (["--quantize", "int4"], "--quantize"),
    (["--opset", "9"], "--opset"),
    (["--atol", "0"], "--atol"),
])
def test_export_conflicting_options(tmp_path, extra, option):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")  # never read: options are checked first
    _usage_error(_invoke("export", model, tmp_path / "m.onnx", *extra), option)


def test_export_calibration_dir_needs_static(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    result = _invoke("export", model, tmp_path / "m.onnx", "--calibration-dir",
                     tmp_path)
    _usage_error(result, "--calibration-dir")


def test_export_wrong_file_types(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    _usage_error(_invoke("export", model, tmp_path / "out.onnx"), "MODEL")
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"x")
    _usage_error(_invoke("export", keras_file, tmp_path / "out.txt"), "OUT")


def test_export_corrupt_keras_file_fails_cleanly(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not a zip archive")
    result = _invoke("export", model, tmp_path / "m.onnx")
    _runtime_error(result, "m.keras")
    assert not (tmp_path / "m.onnx").exists()
    debug = _invoke("--debug", "export", model, tmp_path / "m.onnx")
    assert debug.exit_code == 1
    assert debug.exception is not None  # --debug lets the traceback through
    assert type(debug.exception).__name__ == "ModelLoadError"


# --- predict ---------------------------------------------------------------------
@pytest.fixture
def tiny_onnx(tmp_path):
    return build_tiny_onnx(str(tmp_path / "tiny.onnx"), class_names=["a", "b", "c"],
                           image_size=32)


def test_predict_onnx_matches_the_runtime(tiny_onnx, data_dir):
    from kerastransfer.runtime import OnnxPredictor

    files = sorted(str(p) for p in (data_dir / "red").iterdir())[:3]
    result = _invoke("predict", tiny_onnx, *files, "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    expected = OnnxPredictor(tiny_onnx).predict_files(files, top_k=2)
    assert [r["path"] for r in rows] == files
    for row, want in zip(rows, expected, strict=True):
        assert [(t["class_name"], t["probability"]) for t in row["top_k"]] == [
            (c, pytest.approx(p, abs=1e-7)) for c, p in want["top_k"]]
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    text = _invoke("predict", tiny_onnx, files[0], "--top-k", "1")
    assert text.exit_code == 0
    name, probability = expected[0]["top_k"][0]
    assert text.output.strip() == f"{files[0]}: {name} {probability:.3f}"


def test_predict_folder_with_a_corrupt_file(tiny_onnx, tmp_path):
    folder = _write_folder(tmp_path / "imgs", per_class=10)
    (folder / "red" / "zz_broken.png").write_bytes(b"garbage")
    result = _invoke("predict", tiny_onnx, folder, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("["):])
    assert len([r for r in rows if "top_k" in r]) == 20
    [error] = [r for r in rows if "error" in r]
    assert error["path"].endswith("zz_broken.png")


def test_predict_only_corrupt_files_fails(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    _runtime_error(_invoke("predict", tiny_onnx, bad), "readable image")


def test_predict_bad_inputs(tiny_onnx, tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(image)
    _usage_error(_invoke("predict", image, image), "MODEL")
    _usage_error(_invoke("predict", tiny_onnx, tmp_path / "missing.png"), "IMAGES")
    _usage_error(_invoke("predict", tiny_onnx), "IMAGES")
    _usage_error(_invoke("predict", tiny_onnx, image, "--top-k", "0"), "--top-k")
    empty = tmp_path / "empty"
    empty.mkdir()
    _usage_error(_invoke("predict", tiny_onnx, empty), "IMAGES")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx")
    _runtime_error(_invoke("predict", corrupt, image))


@pytest.mark.slow
def test_predict_keras_and_onnx_agree(trained, onnx_model, data_dir):
    files = sorted(str(p) for p in (data_dir / "green").iterdir())[:4]
    keras_rows = json.loads(_invoke("predict", trained / "model.keras", *files,
                                    "--json").output)
    onnx_rows = json.loads(_invoke("predict", onnx_model, *files, "--json").output)
    for k, o in zip(keras_rows, onnx_rows, strict=True):
        assert k["path"] == o["path"]
        for name in ("green", "red"):
            assert k["probabilities"][name] == pytest.approx(
                o["probabilities"][name], abs=1e-4)


# --- evaluate --------------------------------------------------------------------
@pytest.mark.slow
def test_evaluate_keras_and_onnx(trained, onnx_model, data_dir):
    """The accuracy `evaluate` prints is Keras's own `model.evaluate` of the saved
    model on the same folder, and the ONNX file scores the same images alike."""
    from kerastransfer.data import load_image_folder
    from kerastransfer.saving import load_model

    results = {}
    for model in (trained / "model.keras", onnx_model):
        result = _invoke("evaluate", model, data_dir, "--json")
        assert result.exit_code == 0, result.output
        results[model.suffix] = json.loads(result.stdout)
    metrics = results[".keras"]
    assert metrics["num_samples"] == 20
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum(axis=1).tolist() == [10, 10]  # rows are the true classes
    data = load_image_folder(data_dir, image_size=(40, 40), batch_size=8,
                             validation_split=0.0, shuffle=False)
    keras_metrics = load_model(trained / "model.keras").evaluate(
        data.train, return_dict=True, verbose=0)
    assert metrics["accuracy"] == pytest.approx(keras_metrics["accuracy"], abs=1e-6)
    assert results[".onnx"]["confusion_matrix"] == metrics["confusion_matrix"]
    text = _invoke("evaluate", onnx_model, data_dir)
    assert text.exit_code == 0
    assert f"Images: 20  accuracy: {keras_metrics['accuracy']:.4f}" in text.output
    assert "precision" in text.output and "Confusion matrix" in text.output


@pytest.mark.slow
def test_evaluate_unknown_class_and_bad_folders(trained, tmp_path):
    other = _write_folder(tmp_path / "other", classes=("green", "blue"), per_class=2)
    result = _invoke("evaluate", trained / "model.keras", other)
    _runtime_error(result, "blue")
    (tmp_path / "empty").mkdir()
    _runtime_error(_invoke("evaluate", trained / "model.keras", tmp_path / "empty"))
    _usage_error(_invoke("evaluate", trained / "model.keras", tmp_path / "nope"),
                 "'DATA'")


# --- info ------------------------------------------------------------------------
def test_info_onnx(tiny_onnx):
    result = _invoke("info", tiny_onnx, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "onnx"
    assert info["class_names"] == ["a", "b", "c"]
    assert info["input_shape"] == [32, 32, 3]
    assert info["inputs"][0]["name"] == "image"
    assert info["providers"] == ["CPUExecutionProvider"]
    text = _invoke("info", tiny_onnx)
    assert "class_names: ['a', 'b', 'c']" in text.output


@pytest.mark.slow
def test_info_keras(trained):
    result = _invoke("info", trained / "model.keras", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "keras"
    assert info["backbone"] == "mobilenet_v3_small"
    assert info["class_names"] == ["green", "red"]
    assert info["input"]["shape"] == [None, 40, 40, 3]
    assert info["parameters"] > 1000


def test_info_wrong_and_corrupt_files(tmp_path):
    text = tmp_path / "model.txt"
    text.write_text("x")
    _usage_error(_invoke("info", text), "MODEL")
    _usage_error(_invoke("info", tmp_path / "missing.onnx"), "MODEL")
    corrupt = tmp_path / "m.keras"
    corrupt.write_bytes(b"junk")
    _runtime_error(_invoke("info", corrupt), "m.keras")


# --- benchmark -------------------------------------------------------------------
def test_benchmark_reports_the_runs_it_timed(tiny_onnx, monkeypatch):
    """The report comes from the calls actually made: warm-up + timed calls on
    batches of the requested size, each taking at least the (slowed) call time."""
    from kerastransfer.runtime import OnnxPredictor

    calls = []
    original = OnnxPredictor.predict

    def slow_predict(self, images, *args, **kwargs):
        calls.append(np.shape(images))
        time.sleep(0.005)
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(OnnxPredictor, "predict", slow_predict)
    result = _invoke("benchmark", tiny_onnx, "--runs", "20", "--warmup", "2",
                     "--batch-size", "4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert calls == [(4, 32, 32, 3)] * 22  # 2 warm-up + 20 timed
    assert report["runs"] == 20 and report["batch_size"] == 4
    assert report["input_shape"] == [4, 32, 32, 3]
    assert report["p50_ms"] >= 5.0 and report["mean_ms"] >= 5.0
    # throughput = images / total timed seconds = batch / mean latency
    assert report["throughput_images_per_s"] == pytest.approx(
        4 * 1000.0 / report["mean_ms"], rel=1e-9)
    assert report["providers"] == ["CPUExecutionProvider"]
    _usage_error(_invoke("benchmark", tiny_onnx, "--runs", "0"), "--runs")


def test_benchmark_needs_onnx(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    _usage_error(_invoke("benchmark", model), "MODEL")


# --- no TensorFlow on the deployment side ----------------------------------------
@pytest.mark.parametrize("command", [
    ["--help"], ["info", "{model}"], ["predict", "{model}", "{image}"],
    ["benchmark", "{model}", "--runs", "3"], ["backbones"],
])
def test_deployment_commands_do_not_import_tensorflow(tiny_onnx, tmp_path, command):
    image = tmp_path / "x.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(image)
    args = [a.format(model=tiny_onnx, image=image) for a in command]
    run_without_tensorflow(
        "from kerastransfer.cli import cli\n"
        "try:\n"
        f"    cli.main(args={args!r}, prog_name='kerastransfer')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n")


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "kerastransfer.cli", "--version"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0
    assert "0.1.0" in out.stdout


def test_log_levels_and_restored_loggers(tiny_onnx):
    import logging

    package_logger = logging.getLogger("kerastransfer")
    before = (package_logger.level, package_logger.propagate,
              list(package_logger.handlers), logging.getLogger().level)
    verbose = _invoke("-v", "info", tiny_onnx)
    assert verbose.exit_code == 0
    assert "INFO: OnnxPredictor" in verbose.output
    default = _invoke("info", tiny_onnx)
    assert "INFO:" not in default.output and "class_names" in default.output
    after = (package_logger.level, package_logger.propagate,
             list(package_logger.handlers), logging.getLogger().level)
    assert after == before


def test_onnx_kind_parses_each_file_version_once(tmp_path, monkeypatch):
    """Every task hook asks for the kind; the file is parsed once per version."""
    import onnx

    from kerastransfer.cli._common import onnx_kind
    from kerastransfer.runtime.base import encode_metadata

    def write(kind):
        model = onnx.load(build_tiny_onnx(tmp_path / "tiny.onnx"))
        del model.metadata_props[:]
        for key, value in encode_metadata({"kind": kind}).items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
        os.utime(path, ns=(time.time_ns(), time.time_ns()))

    path = tmp_path / "m.onnx"
    write("text")
    loads = []
    real_load = onnx.load
    monkeypatch.setattr(onnx, "load",
                        lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert [onnx_kind(str(path)) for _ in range(3)] == ["text"] * 3
    assert len(loads) == 1
    monkeypatch.setattr(onnx, "load", real_load)
    write("audio!")  # a new version: another size and time
    assert onnx_kind(str(path)) == "audio!"
    path.write_bytes(b"not onnx")
    assert onnx_kind(str(path)) is None
    assert onnx_kind(str(tmp_path / "missing.onnx")) is None
