"""A multilabel grayscale model with per-label thresholds (issue 13): `kerastransfer
evaluate` on a CSV (per-class 0/1 columns or '|'-separated names) gives per-class
and macro ROC/PR AUC, sensitivity/specificity at the stored thresholds with
bootstrap CIs and ECE, equal to scikit-learn on Keras's own predictions, for the
.keras model and its ONNX export; the training report gets the same metrics, one
curve per label, and Grad-CAM overlays."""

import csv
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from kerastransfer import TransferModel
from kerastransfer.cli import cli
from kerastransfer.data import read_image

SIZE = 16
NAMES = ["nodule", "effusion", "fracture"]
THRESHOLDS = [0.4, 0.5, 0.6]


def _images(n, rng):
    """16-bit grayscale images; label k = a bright shape in quadrant k (a
    block, a horizontal line, a vertical line: told apart after pooling)."""
    x = rng.uniform(0, 20000, (n, SIZE, SIZE, 1)).astype("float32")
    y = (rng.random((n, 3)) < 0.45).astype(int)
    y[0], y[1] = 0, 1  # both values present in every label
    shapes = [(slice(2, 6), slice(2, 6)), (slice(3, 4), slice(9, 15)),
              (slice(9, 15), slice(3, 4))]
    for i, k in zip(*np.nonzero(y), strict=True):
        x[(i, *shapes[k])] = 60000.0
    return x, y


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    root = tmp_path_factory.mktemp("chest")
    keras.utils.set_random_seed(1)  # the weights: macro ROC AUC 0.75-0.9 over seeds
    rng = np.random.default_rng(0)
    x, y = _images(96, rng)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    backbone = keras.Model(inputs, keras.layers.Conv2D(8, 3, padding="same",
                                                       activation="relu")(h),
                           name="tiny")
    model = TransferModel(backbone, class_names=NAMES, task="multilabel",
                          weights=None, input_shape=(SIZE, SIZE, 1),
                          window=(32768.0, 65536.0), threshold=THRESHOLDS,
                          dropout=0.0, pooling="max")
    model.fit(x, y.astype("float32"), epochs=2, fine_tune_epochs=12,
              fine_tune_lr=3e-3, batch_size=16, verbose=0)
    model.save(root / "chest.keras")
    xt, yt = _images(40, np.random.default_rng(1))
    rows = []
    for i, (image, labels) in enumerate(zip(xt, yt, strict=True)):
        name = f"img{i}.png"
        Image.fromarray(image[..., 0].astype("uint16")).save(root / name)
        rows.append({"path": name, "findings": "|".join(
            n for n, v in zip(NAMES, labels, strict=True) if v),
            **{n: int(v) for n, v in zip(NAMES, labels, strict=True)}})
    with open(root / "test.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["path", "findings", *NAMES])
        writer.writeheader()
        writer.writerows(rows)
    read = np.stack([read_image(root / r["path"]) for r in rows])
    return {"root": root, "model": model, "x": read, "y": yt}


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _check_clinical(clinical, y, p):
    macro = clinical["macro"]
    assert macro["roc_auc"] == pytest.approx(roc_auc_score(y, p, average="macro"),
                                             abs=1e-6)
    assert macro["pr_auc"] == pytest.approx(
        average_precision_score(y, p, average="macro"), abs=1e-6)
    assert macro["roc_auc_ci"][0] <= macro["roc_auc"] <= macro["roc_auc_ci"][1]
    for k, name in enumerate(NAMES):
        entry = clinical["per_class"][name]
        assert entry["threshold"] == pytest.approx(THRESHOLDS[k])
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(y[:, k], p[:, k]),
                                                 abs=1e-6)
        decided = p[:, k] >= THRESHOLDS[k]
        assert entry["sensitivity"] == pytest.approx(decided[y[:, k] == 1].mean(),
                                                     abs=1e-6)
        assert entry["specificity"] == pytest.approx((~decided)[y[:, k] == 0].mean(),
                                                     abs=1e-6)
        low, high = entry["pr_auc_ci"]
        assert low <= entry["pr_auc"] <= high
        assert 0 <= entry["calibration"]["ece"] <= 1


def test_evaluate_multilabel_keras_and_onnx(chest):
    from kerastransfer.export import export_onnx

    p = chest["model"].predict(chest["x"], verbose=0)
    assert roc_auc_score(chest["y"], p, average="macro") > 0.7  # it learned
    csv_path = chest["root"] / "test.csv"
    out = json.loads(_run("evaluate", chest["root"] / "chest.keras", csv_path,
                          "--json", "--bootstrap", 100))
    assert out["num_samples"] == 40 and out["skipped"] == 0
    assert out["clinical"]["threshold_source"] == "given"
    assert out["exact_match"] == pytest.approx(
        np.mean(np.all((p >= THRESHOLDS) == chest["y"], axis=1)))
    _check_clinical(out["clinical"], chest["y"], p)
    onnx_path = chest["root"] / "chest.onnx"
    export_onnx(chest["model"], str(onnx_path))
    names = json.loads(_run("evaluate", onnx_path, csv_path, "--json", "--bootstrap",
                            100, "--label-column", "findings"))
    _check_clinical(names["clinical"], chest["y"], p)
    from kerastransfer.runtime import OnnxPredictor

    predictor = OnnxPredictor(onnx_path)  # the thresholds travel in the metadata
    assert predictor.threshold == pytest.approx(THRESHOLDS)
    np.testing.assert_array_equal(predictor.decide(predictor.predict(chest["x"])),
                                  chest["model"].decide(p))
    text = _run("evaluate", onnx_path, csv_path, "--bootstrap", 50, "--tta")
    assert "exact-match accuracy" in text and "macro" in text and "fracture" in text


def test_evaluate_multilabel_bad_csv(chest, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,findings\nimg0.png,nodule|pneumonia\n")
    result = CliRunner().invoke(cli, ["evaluate", str(chest["root"] / "chest.keras"),
                                      str(bad), "--label-column", "findings"])
    assert result.exit_code == 2 and "Unknown class 'pneumonia'" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(chest["root"] / "chest.keras"),
                                      str(chest["root"])])
    assert result.exit_code == 2 and "evaluated on a CSV file" in result.output


def test_multilabel_report_metrics_curves_and_overlays(chest, tmp_path):
    from kerastransfer.report import write_report

    written = write_report(chest["model"], None, (chest["x"], chest["y"]),
                           str(tmp_path), bootstrap=100)
    summary = json.loads(open(written["metrics"]).read())
    p = chest["model"].predict(chest["x"], verbose=0)
    _check_clinical(summary["clinical"], chest["y"], p)
    for key in ("roc", "pr", "calibration", "gradcam"):
        with Image.open(written[key]) as image:
            assert image.format == "PNG" and min(image.size) >= 300


def test_evaluate_multiclass_one_vs_rest_aucs(tmp_path):
    """A 3-class model: per-class one-vs-rest ROC/PR AUC and macro, as sklearn on
    the model's predictions of the folder; a class without images is n/a."""
    from kerastransfer.data import load_image_folder

    rng = np.random.default_rng(2)
    for i in range(18):
        label = ("a", "b", "c")[i % 3]
        (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 80, (SIZE, SIZE, 3)).astype("uint8")
        pixels[..., i % 3] += 120  # the class is the dominant colour
        Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    data = load_image_folder(tmp_path / "data", image_size=(SIZE, SIZE),
                             shuffle=False, batch_size=6)
    inputs = keras.Input((SIZE, SIZE, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs), name="tiny3")
    model = TransferModel(backbone, class_names=["a", "b", "c", "d"], weights=None,
                          input_shape=(SIZE, SIZE, 3), dropout=0.0)
    model.fit(data.train, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    out = json.loads(_run("evaluate", tmp_path / "m.keras", tmp_path / "data",
                          "--json"))
    x = np.concatenate([b for b, _ in data.train.as_numpy_iterator()])
    y = np.concatenate([t for _, t in data.train.as_numpy_iterator()])
    p = model.predict(x, verbose=0)
    auc = out["clinical"]
    for k, name in enumerate("abc"):
        assert auc["roc_auc"][name] == pytest.approx(roc_auc_score(y == k, p[:, k]),
                                                     abs=1e-6)
        assert auc["pr_auc"][name] == pytest.approx(
            average_precision_score(y == k, p[:, k]), abs=1e-6)
    assert auc["roc_auc"]["d"] is None
    assert auc["roc_auc"]["macro"] == pytest.approx(
        np.mean([auc["roc_auc"][n] for n in "abc"]), abs=1e-9)
    text = _run("evaluate", tmp_path / "m.keras", tmp_path / "data")
    assert "One-vs-rest AUCs" in text and "n/a" in text
