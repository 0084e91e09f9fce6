"""`kerastransfer train --task detection`, `evaluate`, `predict` and `export`
on a tiny data set written in all three formats (COCO, VOC, YOLO): the same
images and boxes, so every format must give the same metrics; the images are
64x48 (letterboxed into the 64x64 model with 8 rows of padding above)."""

import json
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastransfer.backbones.registry import register_backbone, unregister_backbone
from kerastransfer.cli import cli
from kerastransfer.data.synthetic_detection import digit_canvases

NAMES = [str(d) for d in range(10)]
COUNT, WIDTH, HEIGHT = 12, 64, 48


def _tiny_pyramid(shape):
    """Five stride-2 convolutions; the last three are the levels (8, 16, 32)."""
    inputs = keras.Input(shape)
    x, outputs = inputs, []
    for i, filters in enumerate((8, 8, 16, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                name=f"det_conv{i}")(x)
        x = keras.layers.ReLU(name=f"det_relu{i}")(x)
        if i >= 2:
            outputs.append(x)
    return keras.Model(inputs, outputs, name="tiny_det_pyramid")


def _write_formats(root):
    """The same 12 images (a 48 px digit canvas at x=8 on a 64x48 gray image)
    as COCO JSON, a VOC folder and a YOLO folder."""
    canvases, targets = digit_canvases(COUNT, size=48, seed=5, digits=(1, 2))
    stems = [f"img{i:02d}" for i in range(COUNT)]
    boxes = [t["boxes"] + np.asarray([8, 0, 8, 0], "float32") for t in targets]
    for folder in ("coco", "voc/JPEGImages", "voc/Annotations", "yolo/images",
                   "yolo/labels"):
        os.makedirs(root / folder, exist_ok=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]}
    for i, (stem, canvas, target) in enumerate(zip(stems, canvases, targets,
                                                   strict=True)):
        image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        image[:, 8:56] = canvas
        for folder in ("coco", "voc/JPEGImages", "yolo/images"):
            Image.fromarray(image).save(root / folder / f"{stem}.png")
        coco["images"].append({"id": i + 1, "file_name": f"{stem}.png",
                               "width": WIDTH, "height": HEIGHT})
        voc = [f"<annotation><filename>{stem}.png</filename><size><width>{WIDTH}"
               f"</width><height>{HEIGHT}</height><depth>3</depth></size>"]
        yolo = []
        for box, label in zip(boxes[i], target["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": i + 1,
                "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
            voc.append(f"<object><name>{label}</name><bndbox><xmin>{x1:g}</xmin>"
                       f"<ymin>{y1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax>"
                       "</bndbox></object>")
            yolo.append(f"{label} {(x1 + x2) / 2 / WIDTH:.8f} "
                        f"{(y1 + y2) / 2 / HEIGHT:.8f} {(x2 - x1) / WIDTH:.8f} "
                        f"{(y2 - y1) / HEIGHT:.8f}")
        (root / "voc/Annotations" / f"{stem}.xml").write_text(
            "".join(voc) + "</annotation>")
        (root / "yolo/labels" / f"{stem}.txt").write_text("\n".join(yolo) + "\n")
    (root / "coco/annotations.json").write_text(json.dumps(coco))
    (root / "yolo/classes.txt").write_text("\n".join(NAMES) + "\n")
    return {"coco": str(root / "coco/annotations.json"), "voc": str(root / "voc"),
            "yolo": str(root / "yolo"), "images": str(root / "coco")}


def _run(*args, code=0):
    """stdout of a CLI call (its warnings go to stderr); the whole output of a
    failing one."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout if code == 0 else result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A detection model trained by the CLI on the COCO version (once)."""
    root = tmp_path_factory.mktemp("detection_cli")
    data = _write_formats(root)
    register_backbone("tiny_det_cli_test", lambda shape, weights: _tiny_pyramid(shape),
                      preprocessing="tf", default_size=64, min_size=64,
                      overwrite=True)
    out = root / "det.keras"
    try:
        output = _run("train", data["coco"], "--task", "detection", "--format", "coco",
                      "--backbone", "tiny_det_cli_test", "--weights", "none",
                      "--image-size", 64, "--epochs", 3, "--batch-size", 4,
                      "--learning-rate", 3e-3, "--validation-split", 0.25,
                      "--seed", 1, "--out", out)
    finally:
        unregister_backbone("tiny_det_cli_test")
    return {"root": root, "data": data, "model": str(out), "train_output": output}


def test_train_saves_a_detection_model_and_its_record(trained):
    from kerastransfer.saving import load_model

    assert "Validation (3 images): mAP@[.5:.95]" in trained["train_output"]
    model = load_model(trained["model"])
    assert type(model).__name__ == "DetectionModel"
    assert model.class_names == NAMES and model.image_shape == (64, 64, 3)
    record = json.loads(open(trained["model"].replace(".keras", ".train.json")).read())
    assert record["task"] == "detection" and record["format"] == "coco"
    assert set(record["validation"]) >= {"map", "map50", "map75", "per_class_ap"}


def test_evaluate_gives_the_same_map_in_every_format(trained):
    from kerastransfer.data.detection import load_detection_data
    from kerastransfer.saving import load_model

    results = {}
    for data_format in ("coco", "voc", "yolo"):
        output = _run("evaluate", trained["model"], trained["data"][data_format],
                      "--format", data_format, "--json")
        results[data_format] = json.loads(output)
    assert results["coco"] == results["voc"] == results["yolo"]
    assert results["coco"]["images"] == COUNT
    # The Python API on the same letterboxed images gives the same numbers.
    data = load_detection_data(trained["data"]["coco"], image_size=(64, 64),
                               validation_split=0.0)
    expected = load_model(trained["model"]).evaluate_detections(
        data.images.astype("float32"), data.targets)
    for key in ("map", "map50", "map75"):
        assert results["coco"][key] == pytest.approx(expected[key], abs=1e-12)
    text = _run("evaluate", trained["model"], trained["data"]["yolo"],
                "--format", "yolo")
    assert "mAP@.5" in text and "Images: 12" in text
    # Classes the model does not know: a usage error naming them.
    (trained["root"] / "yolo" / "classes.txt").write_text(
        "\n".join(["x", *NAMES[1:]]) + "\n")
    try:
        output = _run("evaluate", trained["model"], trained["data"]["yolo"],
                      "--format", "yolo", code=2)
    finally:
        (trained["root"] / "yolo" / "classes.txt").write_text("\n".join(NAMES) + "\n")
    assert "classes the model does not know: ['x']" in output


def _keras_detections(model_path, image_files, score_threshold):
    """Boxes by the Python API: letterbox, predict, map back (the CLI's path)."""
    from kerastransfer.data.detection import letterbox_array, unletterbox_boxes
    from kerastransfer.saving import load_model

    model = load_model(model_path)
    out = []
    for path in image_files:
        image = np.asarray(Image.open(path).convert("RGB"), "float32")
        boxed, letterbox = letterbox_array(image, (64, 64))
        found = model.predict(boxed[None], score_threshold=score_threshold)[0]
        boxes = np.clip(unletterbox_boxes(found["boxes"], letterbox), 0,
                        [WIDTH, HEIGHT, WIDTH, HEIGHT])
        out.append((boxes, found["scores"], found["labels"]))
    return out


def test_predict_writes_json_and_annotated_images(trained, tmp_path):
    files = [os.path.join(trained["data"]["images"], f"img{i:02d}.png")
             for i in range(3)]
    out_dir = tmp_path / "found"
    output = _run("predict", trained["model"], *files, "--detections-dir", out_dir,
                  "--score-threshold", 0.1, "--json")
    rows = json.loads(output)
    assert rows == json.loads((out_dir / "detections.json").read_text())
    expected = _keras_detections(trained["model"], files, 0.1)
    for row, (boxes, scores, labels) in zip(rows, expected, strict=True):
        assert (row["height"], row["width"]) == (HEIGHT, WIDTH)
        np.testing.assert_allclose([d["box"] for d in row["detections"]],
                                   boxes.reshape(-1, 4), atol=0.01)
        np.testing.assert_allclose([d["score"] for d in row["detections"]], scores,
                                   rtol=1e-6)
        assert [d["class_name"] for d in row["detections"]] == [
            NAMES[k] for k in labels]
        with Image.open(row["annotated"]) as image:  # upscaled 4x (256 / 64)
            assert image.size == (4 * WIDTH, 4 * HEIGHT)


@pytest.mark.slow  # the ONNX conversion
def test_export_then_onnx_predict_and_evaluate_match_keras(trained, tmp_path):
    onnx_path = tmp_path / "det.onnx"
    output = _run("export", trained["model"], onnx_path)
    assert "validated on" in output, output
    files = [os.path.join(trained["data"]["images"], f"img{i:02d}.png")
             for i in range(4)]
    rows = {}
    for model in (trained["model"], onnx_path):
        rows[str(model)] = json.loads(_run(
            "predict", model, *files, "--detections-dir", tmp_path / "d",
            "--score-threshold", 0.1, "--json"))
    for keras_row, onnx_row in zip(*rows.values(), strict=True):
        assert [d["label"] for d in keras_row["detections"]] == [
            d["label"] for d in onnx_row["detections"]]
        for a, b in zip(keras_row["detections"], onnx_row["detections"],
                        strict=True):
            np.testing.assert_allclose(a["box"], b["box"], atol=0.02)
            assert abs(a["score"] - b["score"]) <= 1e-4
    metrics = [json.loads(_run("evaluate", model, trained["data"]["voc"],
                               "--format", "voc", "--json"))
               for model in (trained["model"], onnx_path)]
    assert metrics[0]["map50"] == pytest.approx(metrics[1]["map50"], abs=1e-3)
