"""The training report of `DetectionModel.fit(..., report_dir=...)`: COCO
metrics equal to `evaluate_detections`, and PNGs (learning curves, PR curves,
validation images with true and predicted boxes) that Pillow opens."""

import json

import keras
import numpy as np
import pytest
from PIL import Image
from test_detection_model import blob_data, build

GREEN, RED = (0, 200, 0), (230, 0, 0)


@pytest.mark.slow  # 86 s on the shared, loaded machine (a training run)
def test_fit_writes_the_detection_report(tmp_path):
    x, targets = blob_data(32)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    report = tmp_path / "report"
    model.fit(x[:24], targets[:24], epochs=6, batch_size=8, verbose=0,
              validation_data=(x[24:], targets[24:]), report_dir=str(report))
    names = sorted(p.name for p in report.iterdir())
    assert names == ["detections_0.png", "detections_1.png", "detections_2.png",
                     "detections_3.png", "learning_curves.png", "metrics.json",
                     "pr_curves.png"]
    metrics = json.loads((report / "metrics.json").read_text())
    expected = model.evaluate_detections(x[24:], targets[24:])
    assert metrics["task"] == "detection"
    for key in ("map", "map50", "map75"):
        assert abs(metrics[key] - expected[key]) < 1e-12, (key, metrics, expected)
    assert set(metrics["per_class_ap"]) == {"square", "bar"}
    for name in ("learning_curves.png", "pr_curves.png"):
        with Image.open(report / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    predictions = model.predict(x[24:28])
    for i in range(4):
        pixels = np.asarray(Image.open(report / f"detections_{i}.png").convert("RGB"))
        assert pixels.shape == (32, 32, 3)
        colors = {tuple(p) for p in pixels.reshape(-1, 3)}
        # Every validation image has a true box (green) unless a predicted
        # box (red) was drawn over all of its edge; predicted boxes appear
        # exactly when one scores at least the report's 0.3.
        assert (RED in colors) == bool((predictions[i]["scores"] >= 0.3).any())
        assert GREEN in colors or RED in colors
