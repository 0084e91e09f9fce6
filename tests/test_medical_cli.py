"""A grayscale CT model end to end (issue 13): DICOM folder -> 1-channel model with
a window and a threshold -> `.keras` -> CLI predict/evaluate (--tta, clinical
metrics)/explain on DICOM files -> ONNX without preprocessing whose metadata
carries kind, window, threshold and channels -> `OnnxPredictor` (window applied in
numpy, `decide`) equal to Keras; the training report's ROC/PR PNGs."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pydicom")

from kerastransfer import TransferModel  # noqa: E402
from kerastransfer.cli import cli  # noqa: E402
from kerastransfer.data import load_image_folder, read_image  # noqa: E402
from tests.test_medical import write_dicom  # noqa: E402

SIZE = 16
WINDOW = (0.0, 2000.0)  # HU -1000..1000 -> [0, 255]


def _tiny_rgb_backbone():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                            name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="top")(x)
    return keras.Model(inputs, x, name="tiny")


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A DICOM folder (bright square = "lesion"), and a trained 1-channel model."""
    root = tmp_path_factory.mktemp("ct")
    keras.utils.set_random_seed(0)  # the model's initial weights: a repeatable run
    rng = np.random.default_rng(0)
    for i in range(24):
        label = ("healthy", "lesion")[i % 2]
        raw = rng.integers(0, 600, (SIZE, SIZE))  # stored; HU = raw - 1024
        if label == "lesion":
            r, c = rng.integers(2, SIZE - 8, 2)
            raw[r:r + 6, c:c + 6] = 1800
        (root / "scans" / label).mkdir(parents=True, exist_ok=True)
        write_dicom(root / "scans" / label / f"{i}.dcm", raw.astype("uint16"),
                    intercept=-1024.0)
    data = load_image_folder(root / "scans", image_size=(SIZE, SIZE), channels=1,
                             batch_size=8, shuffle=False)
    model = TransferModel(_tiny_rgb_backbone(), 2, weights=None,
                          input_shape=(SIZE, SIZE, 1), window=WINDOW, threshold=0.3,
                          class_names=["healthy", "lesion"], dropout=0.0)
    model.fit(data.train, epochs=2, verbose=0)
    path = root / "ct.keras"
    model.save(path)
    x = np.concatenate([b for b, _ in data.train.as_numpy_iterator()])
    y = np.concatenate([t for _, t in data.train.as_numpy_iterator()])
    return {"root": root, "model": model, "path": path, "x": x, "y": y,
            "files": data.train_files}


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_predict_cli_on_dicom_equals_keras(ct):
    out = json.loads(_run("predict", ct["path"], ct["files"][1], "--json"))
    x = read_image(ct["files"][1])[None]
    assert float(np.abs(x).max()) > 255  # Hounsfield units into the model
    expected = ct["model"].predict(x, verbose=0)[0]
    got = [out[0]["probabilities"][c] for c in ("healthy", "lesion")]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_cli_clinical_metrics_at_model_threshold(ct, tta):
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = json.loads(_run("evaluate", ct["path"], ct["root"] / "scans", "--json",
                          "--bootstrap", 200, *(["--tta"] if tta else [])))
    p = ct["model"].predict(ct["x"], verbose=0, tta=tta)
    clinical = out["clinical"]
    assert clinical["threshold"] == 0.3 and clinical["threshold_source"] == "the model"
    assert clinical["roc_auc"] == pytest.approx(roc_auc_score(ct["y"], p[:, 1]),
                                                abs=1e-6)
    assert clinical["pr_auc"] == pytest.approx(
        average_precision_score(ct["y"], p[:, 1]), abs=1e-6)
    decided = (p[:, 1] >= 0.3).astype(int)
    assert out["accuracy"] == pytest.approx(np.mean(decided == ct["y"]))
    positives = ct["y"] == 1
    assert clinical["sensitivity"] == pytest.approx(decided[positives].mean())
    low, high = clinical["roc_auc_ci"]
    assert low <= clinical["roc_auc"] <= high


def test_explain_cli_writes_overlay_png(ct, tmp_path):
    from PIL import Image

    out = tmp_path / "cam.png"
    text = _run("explain", ct["path"], ct["files"][1], "--out", out,
                "--class", "lesion")
    assert "lesion" in text and str(out) in text
    with Image.open(out) as image:
        assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    result = CliRunner().invoke(cli, ["explain", str(ct["path"]), ct["files"][1],
                                      "--out", str(out), "--class", "tumour"])
    assert result.exit_code == 2 and "Unknown class" in result.output


@pytest.fixture(scope="module")
def ct_onnx(ct):
    """The CT model exported without preprocessing: the runtime applies the window."""
    from kerastransfer.export import export_onnx

    path = ct["root"] / "ct.onnx"
    export_onnx(ct["model"], str(path), include_preprocessing=False)
    return path


def test_onnx_metadata_window_threshold_and_runtime(ct, ct_onnx):
    from kerastransfer.runtime import OnnxPredictor

    predictor = OnnxPredictor(ct_onnx)
    meta = predictor.metadata
    assert meta["kind"] == "classification" and meta["channels"] == 1
    assert tuple(meta["window"]) == WINDOW and meta["threshold"] == 0.3
    assert predictor.window == WINDOW and predictor.threshold == 0.3
    expected = ct["model"].predict(ct["x"], verbose=0)
    got = predictor.predict(ct["x"])  # HU in; the window is applied in numpy
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_array_equal(predictor.decide(got), ct["model"].decide(expected))
    files = predictor.predict_files(ct["files"][:4])
    np.testing.assert_allclose(np.stack([r["probabilities"] for r in files]),
                               expected[:4], atol=1e-4)
    out = json.loads(_run("evaluate", ct_onnx, ct["root"] / "scans", "--json",
                          "--bootstrap", 50))  # the .onnx's own threshold
    assert out["clinical"]["threshold"] == 0.3
    assert out["clinical"]["threshold_source"] == "the model"
    from sklearn.metrics import roc_auc_score

    assert out["clinical"]["roc_auc"] == pytest.approx(
        roc_auc_score(ct["y"], expected[:, 1]), abs=1e-4)


def test_report_binary_roc_pr_pngs(ct, tmp_path):
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from kerastransfer.report import write_report

    written = write_report(ct["model"], None, (ct["x"], ct["y"]), str(tmp_path),
                           bootstrap=200)
    for key in ("roc", "pr", "calibration"):
        with open(written[key], "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(open(written["metrics"]).read())
    p = ct["model"].predict(ct["x"], verbose=0)[:, 1]
    assert summary["clinical"]["roc_auc"] == pytest.approx(roc_auc_score(ct["y"], p),
                                                           abs=1e-6)
    assert summary["clinical"]["threshold"] == 0.3
    from kerastransfer.report.clinical import choose_threshold

    by_rule = summary["clinical"]["thresholds_by_rule"]
    assert by_rule["youden"] == choose_threshold(ct["y"], p)
    assert by_rule["sensitivity_0.95"] == choose_threshold(ct["y"], p, "sensitivity")
    with Image.open(written["gradcam"]) as image:  # 2 classes x 2 scans
        assert image.size == (440, 440)


def test_threshold_chosen_on_validation_travels_in_the_files(ct, tmp_path):
    from kerastransfer.export import export_onnx
    from kerastransfer.report import choose_model_threshold
    from kerastransfer.report.clinical import choose_threshold, sensitivity_specificity
    from kerastransfer.runtime import OnnxPredictor
    from kerastransfer.saving import load_model

    model = load_model(ct["path"])  # a copy: the shared model keeps 0.3
    p = model.predict(ct["x"], verbose=0)[:, 1]
    chosen = choose_model_threshold(model, (ct["x"], ct["y"]), "sensitivity", 0.95)
    assert chosen == pytest.approx(choose_threshold(ct["y"], p, "sensitivity"))
    assert sensitivity_specificity(ct["y"], p, chosen)[0] >= 0.95
    model.save(tmp_path / "chosen.keras")
    assert load_model(tmp_path / "chosen.keras").threshold == chosen
    export_onnx(model, str(tmp_path / "chosen.onnx"))
    predictor = OnnxPredictor(tmp_path / "chosen.onnx")
    assert predictor.threshold == pytest.approx(chosen)
    np.testing.assert_array_equal(predictor.decide(predictor.predict(ct["x"])),
                                  (p >= chosen).astype(int))
    with pytest.raises(ValueError, match="needs positive and negative"):
        choose_model_threshold(model, (ct["x"][:4], np.zeros(4, int)))


def test_train_cli_grayscale_windowed_model_from_dicom_folder(ct, tmp_path):
    from kerastransfer.backbones.registry import register_backbone, unregister_backbone
    from kerastransfer.saving import load_model

    register_backbone("tiny_ct_test", lambda shape, weights: _tiny_rgb_backbone(),
                      default_size=SIZE, min_size=SIZE, overwrite=True)
    out = tmp_path / "cli.keras"
    try:
        _run("train", ct["root"] / "scans", "--backbone", "tiny_ct_test",
             "--weights", "none", "--epochs", 1, "--batch-size", 12,
             "--channels", 1, "--window", "lung", "--out", out)
        model = load_model(out)
    finally:
        unregister_backbone("tiny_ct_test")
    assert model.image_shape == (SIZE, SIZE, 1) and model.window == (-600.0, 1500.0)
    result = CliRunner().invoke(cli, ["train", str(ct["root"] / "scans"), "--window",
                                      "0,-5", "--out", str(out)])
    assert result.exit_code == 2
    assert "width must be a finite number > 0" in result.output


def test_loader_channels_checked_first(tmp_path):
    with pytest.raises(ValueError, match="channels must be a positive int"):
        load_image_folder(tmp_path / "missing", channels=0)


def test_edge_service_takes_dicom_uploads(ct, ct_onnx, tmp_path, monkeypatch):
    """POST /predict with a DICOM file (raw application/dicom, or multipart): the
    same probabilities as Keras on `read_image` (HU in, the stored window applied
    by the runtime); a PNG for the 1-channel model becomes luminance; bad DICOM
    gets one JSON error each."""
    import io
    import sys

    from falcon import testing
    from PIL import Image

    from export.service import create_app
    from kerastransfer.runtime import OnnxPredictor

    client = testing.TestClient(create_app(OnnxPredictor(ct_onnx)))
    files = ct["files"][:3]
    expected = ct["model"].predict(np.stack([read_image(f) for f in files]), verbose=0)

    def post(body, content_type="application/dicom"):
        return client.simulate_post("/predict", body=body, params={
            "probabilities": "true"}, headers={"Content-Type": content_type})

    for path, want in zip(files, expected, strict=True):
        with open(path, "rb") as file:
            data = file.read()
        for content_type in ("application/dicom", "application/octet-stream"):
            result = post(data, content_type)
            assert result.status_code == 200, result.text
            got = result.json["predictions"][0]["probabilities"]
            np.testing.assert_allclose(got, want, atol=1e-4)
    boundary = "b0undary"
    with open(files[1], "rb") as file:
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"scan.dcm\"\r\nContent-Type: application/dicom\r\n\r\n"
                ).encode() + file.read() + f"\r\n--{boundary}--\r\n".encode()
    result = post(body, f"multipart/form-data; boundary={boundary}")
    assert result.status_code == 200, result.text
    assert result.json["predictions"][0]["filename"] == "scan.dcm"
    np.testing.assert_allclose(result.json["predictions"][0]["probabilities"],
                               expected[1], atol=1e-4)

    gray = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), "uint8")
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    result = post(buffer.getvalue(), "image/png")
    luminance = gray.astype("float32") @ np.float32([0.2989, 0.5870, 0.1140])
    np.testing.assert_allclose(
        result.json["predictions"][0]["probabilities"],
        ct["model"].predict(luminance[None, ..., None], verbose=0)[0], atol=1e-4)

    empty = write_dicom(tmp_path / "empty.dcm", np.zeros((4, 4)), pixel_data=False)
    frames = write_dicom(tmp_path / "frames.dcm", np.zeros((2, SIZE, SIZE)))
    for path, status, message in ((empty, 400, "no pixel data"),
                                  (frames, 400, "2 frames; send one frame")):
        result = post(path.read_bytes())
        assert result.status_code == status, result.text
        assert message in result.json["error"]["message"]
    monkeypatch.setitem(sys.modules, "pydicom", None)  # pydicom not installed
    result = post(open(files[0], "rb").read())
    assert result.status_code == 415
    assert "pydicom is not installed" in result.json["error"]["message"]
    assert "kerastransfer[medical]" in result.json["error"]["message"]
