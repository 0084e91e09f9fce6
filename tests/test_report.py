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
    text = report.format_classification_report(metrics)
    # header, 4 classes, blank line, 3 totals
    assert "precision" in text and text.count("\n") == 9


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
                     "learning_curves.png", "metrics.json"]
    check_png(out / "learning_curves.png")
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
    written = report.write_report(model, history, ds, str(tmp_path / "b"))
    check_png(written["confusion_matrix"])
    metrics = json.loads(open(written["metrics"]).read())
    assert np.sum(metrics["confusion_matrix"]) == 18
