"""Reports: learning curves, confusion matrix, per-class metrics."""

import json
import os

import numpy as np
import pytest
from conftest import separable_images
from PIL import Image
from test_features import build

from kerastransfer import report


def check_png(path):
    assert os.path.getsize(path) > 1000
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 1.0  # something is drawn


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    y_pred[y_pred == 3] = 2  # class 3 never predicted: precision 0 (no division)
    metrics = report.classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(4),
                                                 zero_division=0)
    for i, name in enumerate("abcd"):
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(p[i])
        assert row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i])
        assert row["support"] == s[i]
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert metrics["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert metrics["macro_avg"]["f1"] == pytest.approx(f.mean())
    pw, rw, fw, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(4), average="weighted", zero_division=0)
    assert metrics["weighted_avg"] == pytest.approx(
        {"precision": pw, "recall": rw, "f1": fw})
    assert metrics["num_samples"] == 200
    json.dumps(metrics)  # JSON-safe: metrics.json and `evaluate --json` write it


def test_text_report_is_sklearns_classification_report():
    from sklearn.metrics import classification_report

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 50)
    y_pred = np.where(rng.random(50) < 0.7, y_true, rng.integers(0, 3, 50))
    names = ["cat", "dog", "a_long_class_name"]
    metrics = report.classification_metrics(y_true, y_pred, names)
    # Rebuilt from the confusion matrix alone, the table is sklearn's own.
    assert report.format_classification_report(metrics) == classification_report(
        y_true, y_pred, labels=range(3), target_names=names, digits=4,
        zero_division=0)


def test_bad_labels_are_clear_errors():
    from kerastransfer.errors import DataError

    with pytest.raises(DataError, match=r"outside \[0, 2\).*\[5\]"):
        report.classification_metrics([0, 1, 5], [0, 1, 1], ["a", "b"])
    with pytest.raises(DataError, match="no samples"):
        report.classification_metrics([], [], ["a", "b"])
    with pytest.raises(DataError, match="one entry per sample"):
        report.classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(DataError, match="class indices"):
        report.classification_metrics([0.5, 1.0], [0, 1], ["a", "b"])


def test_plots_are_valid_pngs(tmp_path):
    matrix = [[5, 1, 0], [2, 7, 1], [0, 0, 9]]
    path = report.plot_confusion_matrix(matrix, ["a", "b", "c"],
                                        str(tmp_path / "cm.png"))
    check_png(path)
    with Image.open(path) as image:
        assert image.size == (400, 400)  # 4x4 inches at 100 dpi
    with pytest.raises(ValueError, match=r"\(n, n\)"):
        report.plot_confusion_matrix(matrix, ["a", "b"], str(tmp_path / "x.png"))
    assert sorted(os.listdir(tmp_path)) == ["cm.png"]  # nothing half-written

    class History:  # what plot_learning_curves reads from a PhasedHistory
        epoch = [0, 1, 2]
        history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, None, 0.5],
                   "accuracy": [0.3, 0.6, 0.8], "learning_rate": [1e-3] * 3}
        phase_boundaries = [2]
        phases = [{"name": "frozen", "start_epoch": 0},
                  {"name": "fine_tune", "start_epoch": 2}]

    path = report.plot_learning_curves(History(), str(tmp_path / "curves.png"))
    check_png(path)
    with Image.open(path) as image:
        assert image.size == (1000, 380)  # two panels (loss, accuracy), 5 in each


def test_fit_writes_report(tmp_path):
    x, y = separable_images(n_per_class=12, size=32, num_classes=3)
    model = build()
    out = tmp_path / "report"
    history = model.fit(x, y, epochs=2, fine_tune_epochs=1, batch_size=8, verbose=0,
                        validation_data=(x[:12], y[:12]), report_dir=str(out),
                        cache_features=True)
    assert history.phase_boundaries == [2]
    names = sorted(os.listdir(out))
    assert names == ["classification_report.txt", "confusion_matrix.png",
                     "gradcam.png", "learning_curves.png", "metrics.json"]
    check_png(out / "learning_curves.png")
    check_png(out / "gradcam.png")
    check_png(out / "confusion_matrix.png")
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["per_class"]) == model.class_names
    assert np.sum(metrics["confusion_matrix"]) == 12
    predicted = model.predict(x[:12], verbose=0).argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y[:12]))
    assert [p["name"] for p in metrics["phases"]] == ["frozen", "fine_tune"]
    assert len(metrics["history"]["val_loss"]) == 3


def test_write_report_with_dataset_and_without_validation(tmp_path):
    import tensorflow as tf

    x, y = separable_images(n_per_class=6, size=32, num_classes=3)
    model = build()
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    written = report.write_report(model, history, None, str(tmp_path / "a"))
    assert sorted(written) == ["learning_curves", "metrics"]
    check_png(written["learning_curves"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    written = report.write_report(model, history, ds, str(tmp_path / "b"),
                                  gradcam_per_class=3)
    check_png(written["confusion_matrix"])
    with Image.open(written["gradcam"]) as image:  # 3 classes x 3 images
        assert image.size == (660, 660)
    written = report.write_report(model, history, ds, str(tmp_path / "c"),
                                  gradcam_per_class=0)
    assert "gradcam" not in written
    metrics = json.loads(open(written["metrics"]).read())
    assert np.sum(metrics["confusion_matrix"]) == 18


def test_gradcam_examples_are_images_of_their_class():
    import tensorflow as tf

    from kerastransfer.report.explain import _class_examples

    x = np.arange(10, dtype="float32")[:, None, None, None] * np.ones((10, 4, 4, 1))
    y = np.array([2, 0, 2, 1, 0, 2, 0, 1, 1, 0])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    found = _class_examples(ds, "multiclass", 3, 2)
    for c, images in found.items():  # image i is filled with the value i
        np.testing.assert_array_equal(images[:, 0, 0, 0], np.flatnonzero(y == c)[:2])
    rows = np.array([[1, 0], [0, 0], [1, 1]])
    found = _class_examples((x[:3], rows), "multilabel", 2, 5)
    np.testing.assert_array_equal(found[0][:, 0, 0, 0], [0, 2])
    np.testing.assert_array_equal(found[1][:, 0, 0, 0], [2])
