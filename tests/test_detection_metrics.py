"""Detection metrics (issue 16): COCO mAP through pycocotools on hand-made cases
with known answers, and the report figures (PR curves, drawn boxes)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from training_helpers import run_without_tensorflow

from kerastransfer.errors import DataError, OutputPathError
from kerastransfer.report.detection import (
    coco_evaluation,
    detection_metrics,
    draw_detections,
    format_detection_report,
    plot_pr_curves,
)

THRESHOLDS = np.linspace(0.5, 0.95, 10)
# COCOeval's precision is tp / (tp + fp + eps): a perfect AP is 1 - 2e-16.
TOL = 1e-9


def _truth(*boxes, labels=None):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels if labels is not None else [0] * len(boxes))}


def _found(boxes, scores, labels=None):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.asarray(labels if labels is not None else [0] * len(boxes)),
            "scores": np.asarray(scores, np.float32)}


def _shifted(iou, size=10.0):
    """A size x size box at the origin shifted right so that its IoU with the
    original is `iou`: (size - dx) / (size + dx) = iou."""
    dx = size * (1 - iou) / (1 + iou)
    return [dx, 0.0, size + dx, size]


def test_perfect_predictions_score_one():
    targets = [_truth([0, 0, 10, 10], [20, 20, 40, 30], labels=[0, 1]),
               _truth([5, 5, 15, 25], labels=[1])]
    predictions = [_found(t["boxes"], [0.9] * len(t["labels"]), t["labels"])
                   for t in targets]
    metrics = detection_metrics(targets, predictions, class_names=["a", "b"])
    for key in ("map", "map50", "map75"):
        assert metrics[key] == pytest.approx(1.0, abs=TOL)
    assert metrics["per_class_ap"] == pytest.approx({"a": 1.0, "b": 1.0}, abs=TOL)


@pytest.mark.parametrize("iou", [0.525, 0.625, 0.725, 0.975])
def test_one_shifted_box_counts_the_thresholds_it_passes(iou):
    # One box, one prediction: AP is 1 at every threshold <= IoU and 0 above,
    # so mAP@[.5:.95] is the share of the 10 thresholds the IoU reaches.
    metrics = detection_metrics([_truth([0, 0, 10, 10])],
                                [_found([_shifted(iou)], [0.8])])
    expected = np.mean(THRESHOLDS <= iou)
    assert metrics["map"] == pytest.approx(expected, abs=TOL)
    assert metrics["map50"] == pytest.approx(1.0, abs=TOL)
    assert metrics["map75"] == pytest.approx(float(iou >= 0.75), abs=TOL)
    if iou == 0.625:
        assert metrics["map"] == pytest.approx(0.3, abs=TOL)


def test_a_perfect_and_a_shifted_image_together():
    # Thresholds <= 0.625 (3 of 10): both boxes found, AP 1. Above: the ranked
    # list is [hit (0.9), miss (0.8)] for 2 boxes: precision 1 up to recall 0.5
    # (51 of COCO's 101 recall points), nothing above: AP 51/101.
    targets = [_truth([0, 0, 10, 10]), _truth([0, 0, 10, 10])]
    predictions = [_found([[0, 0, 10, 10]], [0.9]),
                   _found([_shifted(0.625)], [0.8])]
    metrics = detection_metrics(targets, predictions)
    assert metrics["map50"] == pytest.approx(1.0, abs=TOL)
    assert metrics["map75"] == pytest.approx(51 / 101, abs=TOL)
    assert metrics["map"] == pytest.approx((3 + 7 * 51 / 101) / 10, abs=TOL)


def test_a_higher_scored_false_positive_lowers_ap():
    # One box; a false positive (no overlap) ranked first: precision 1/2 at
    # recall 1, interpolated precision 0.5 at all 101 recall points.
    metrics = detection_metrics(
        [_truth([0, 0, 10, 10])],
        [_found([[30, 30, 40, 40], [0, 0, 10, 10]], [0.9, 0.5])])
    assert metrics["map"] == pytest.approx(0.5, abs=TOL)
    # Two boxes; ranked hit, false positive, hit: precision 1, 1/2, 2/3 at
    # recall 1/2, 1/2, 1; interpolated 1 for recall <= 0.5 (51 points) and
    # 2/3 above (50 points).
    metrics = detection_metrics(
        [_truth([0, 0, 10, 10], [20, 0, 30, 10])],
        [_found([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]],
                [0.9, 0.8, 0.7])])
    assert metrics["map"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=TOL)
    # The same false positive ranked last costs nothing.
    metrics = detection_metrics(
        [_truth([0, 0, 10, 10], [20, 0, 30, 10])],
        [_found([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]],
                [0.9, 0.1, 0.7])])
    assert metrics["map"] == pytest.approx(1.0, abs=TOL)


def test_a_class_without_ground_truth_has_no_ap_and_does_not_count():
    targets = [_truth([0, 0, 10, 10], labels=[0])]
    predictions = [_found([[0, 0, 10, 10], [20, 20, 30, 30]], [0.6, 0.9],
                          labels=[0, 1])]
    metrics = detection_metrics(targets, predictions, class_names=["a", "b", "c"])
    assert metrics["per_class_ap"]["b"] is None and metrics["per_class_ap"]["c"] is None
    assert metrics["map"] == pytest.approx(1.0, abs=TOL)
    assert "n/a" in format_detection_report(metrics)
    none = detection_metrics([_truth()], [_found([[0, 0, 5, 5]], [0.5])])
    assert none["map"] is None and none["per_class_ap"] == {"0": None}


def test_no_predictions_score_zero():
    metrics = detection_metrics([_truth([0, 0, 10, 10])], [_found([], [])])
    assert metrics["map"] == 0.0 and metrics["map50"] == 0.0


def test_metrics_equal_cocoeval_summary_on_noisy_predictions():
    rng = np.random.default_rng(0)
    targets, predictions = [], []
    for _ in range(6):
        corners = rng.uniform(0, 40, (3, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 20, (3, 2))], 1)
        labels = rng.integers(0, 3, 3)
        targets.append(_truth(*boxes, labels=labels))
        noisy = boxes + rng.normal(0, 2, boxes.shape)
        predictions.append(_found(noisy, rng.uniform(0, 1, 3), labels))
    metrics = detection_metrics(targets, predictions)
    stats = coco_evaluation(targets, predictions, 3).stats
    assert [metrics["map"], metrics["map50"], metrics["map75"]] == pytest.approx(
        list(stats[:3]), abs=1e-12)
    assert 0.0 < metrics["map"] < metrics["map50"] <= 1.0


def test_bad_inputs():
    with pytest.raises(DataError, match="one entry per image"):
        detection_metrics([_truth([0, 0, 1, 1])], [])
    with pytest.raises(DataError, match="'scores'"):
        detection_metrics([_truth([0, 0, 1, 1])], [_truth([0, 0, 1, 1])])
    with pytest.raises(DataError, match=r"Labels must be in \[0, 1\)"):
        detection_metrics([_truth([0, 0, 1, 1], labels=[1])],
                          [_found([], [])], class_names=["a"])


def test_pr_curves_png(tmp_path):
    targets = [_truth([0, 0, 10, 10], [20, 0, 30, 10], labels=[0, 1])]
    predictions = [_found([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [0, 1])]
    path = plot_pr_curves(targets, predictions, str(tmp_path / "pr.png"),
                          class_names=["a", "b", "c"])
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pr.png"]  # no temp left
    with pytest.raises(ValueError, match="iou_threshold must be one of"):
        plot_pr_curves(targets, predictions, str(tmp_path / "x.png"),
                       iou_threshold=0.42)
    with pytest.raises(OutputPathError):
        plot_pr_curves(targets, predictions, str(tmp_path / "no" / "pr.png"))


def test_draw_detections_png(tmp_path):
    image = np.full((64, 64, 3), 128, np.uint8)
    path = draw_detections(image, _found([[30, 30, 50, 50]], [0.7], [1]),
                           _truth([4, 4, 20, 20], labels=[0]),
                           str(tmp_path / "boxes.png"), class_names=["a", "b"])
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_array_equal(pixels[12, 4], [0, 200, 0])   # true box edge
    np.testing.assert_array_equal(pixels[40, 30], [230, 0, 0])  # predicted edge
    np.testing.assert_array_equal(pixels[60, 60], [128, 128, 128])
    hidden = draw_detections(image, _found([[30, 30, 50, 50]], [0.2], [1]), None,
                             str(tmp_path / "hidden.png"), score_threshold=0.5,
                             scale=2)
    assert np.all(np.asarray(Image.open(hidden)) == 128)


def test_detection_data_and_metrics_import_no_tensorflow():
    # Evaluating an ONNX detector (DetectionPredictor) must not pull TensorFlow in.
    run_without_tensorflow(
        "import kerastransfer.data.detection\n"
        "import kerastransfer.data.detection_augment\n"
        "import kerastransfer.data.synthetic_detection\n"
        "import kerastransfer.report.detection as r\n"
        "r.detection_metrics([{'boxes': [[0, 0, 4, 4]], 'labels': [0]}],\n"
        "    [{'boxes': [[0, 0, 4, 4]], 'labels': [0], 'scores': [1.0]}])\n")


def test_box_agreement_matches_same_class_boxes_one_to_one():
    from kerastransfer.detection.agreement import box_agreement

    def dets(boxes, labels, scores=None):
        boxes = np.asarray(boxes, "float32").reshape(-1, 4)
        return {"boxes": boxes, "labels": np.asarray(labels, "int32"),
                "scores": np.asarray(scores if scores is not None
                                     else np.linspace(1, 0.5, len(boxes)))}

    reference = [dets([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [1, 2, 1]),
                 dets([], [])]
    assert box_agreement(reference, reference) == 1.0
    # A box shifted by 2 px (IoU 8*10/120 = 0.667) matches; the other class's
    # box does not; one candidate box cannot match two reference boxes.
    other = [dets([[2, 0, 12, 10], [20, 20, 30, 30]], [1, 0]),
             dets([[0, 0, 5, 5]], [0])]
    assert box_agreement(reference, other) == pytest.approx(1 / 3)
    assert box_agreement(reference, other, iou_threshold=0.7) == 0.0
    assert box_agreement([dets([], [])], [dets([[0, 0, 1, 1]], [0])]) == 1.0
    with pytest.raises(ValueError, match="same images"):
        box_agreement(reference, other[:1])
