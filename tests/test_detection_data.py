"""Detection data (issue 16): COCO / VOC / YOLO loaders, letterboxing, the
up-front problem lists, the split, `check_detection_targets`, augmentation and
the synthetic digit canvases. Every data set is a few tiny files in tmp_path."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from kerastransfer.data.detection import (
    LETTERBOX_FILL,
    check_detection_targets,
    letterbox_image,
    load_detection_data,
    unletterbox_boxes,
)
from kerastransfer.data.detection_augment import augment_detection
from kerastransfer.data.synthetic_detection import digit_canvases
from kerastransfer.errors import DataError


def _png(path, width, height, value=200):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)
    return str(path)


# ------------------------------------------------------------------ COCO ----

def _coco(tmp_path, annotations, images=((1, "a.png", 40, 20), (2, "b.png", 30, 30)),
          categories=((7, "cat"), (3, "dog"))):
    for _, name, w, h in images:
        if not name.startswith("missing"):  # listed in the JSON, never written
            _png(tmp_path / name, w, h)
    data = {"images": [{"id": i, "file_name": n, "width": w, "height": h}
                       for i, n, w, h in images],
            "annotations": [{"id": k + 1, "image_id": a[0], "category_id": a[1],
                             "bbox": a[2]} for k, a in enumerate(annotations)],
            "categories": [{"id": i, "name": n} for i, n in categories]}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_coco_loads_letterboxed_boxes_and_classes_in_id_order(tmp_path):
    path = _coco(tmp_path, [(1, 3, [4, 2, 10, 8]), (1, 7, [20, 0, 20, 20]),
                            (2, 7, [0, 0, 30, 15])])
    data = load_detection_data(path, image_size=(32, 32), validation_split=0.0)
    assert data.class_names == ["dog", "cat"]  # category ids 3, 7 -> labels 0, 1
    assert [os.path.basename(f) for f in data.files] == ["a.png", "b.png"]
    assert data.images.shape == (2, 32, 32, 3) and data.images.dtype == np.uint8
    # a.png is 40x20: scale 0.8 -> 32x16, centred with 8 rows of padding above.
    np.testing.assert_allclose(data.letterbox[0], [0.8, 0.0, 8.0])
    np.testing.assert_allclose(data.targets[0]["boxes"],
                               [[3.2, 9.6, 11.2, 16.0], [16.0, 8.0, 32.0, 24.0]],
                               atol=1e-5)
    np.testing.assert_array_equal(data.targets[0]["labels"], [0, 1])
    assert data.targets[0]["labels"].dtype == np.int32
    assert np.all(data.images[0, :8] == LETTERBOX_FILL)  # the gray padding
    assert np.all(data.images[0, 8:24] == 200)  # the picture
    # b.png is 30x30: scale 32/30, no padding.
    np.testing.assert_allclose(data.targets[1]["boxes"], [[0, 0, 32, 16]], atol=1e-5)
    back = unletterbox_boxes(data.targets[0]["boxes"], data.letterbox[0])
    np.testing.assert_allclose(back, [[4, 2, 14, 10], [20, 0, 40, 20]], atol=1e-4)


def test_malformed_coco_json_gives_one_error_with_the_position(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "a.png"}]}')
    with pytest.raises(DataError, match=r"not valid JSON.*line 2, column 12") as info:
        load_detection_data(str(path), image_size=(32, 32))
    assert "annotations.json" in str(info.value)


def test_coco_problems_are_listed_together(tmp_path):
    path = _coco(tmp_path, [(1, 99, [0, 0, 5, 5]),      # unknown category
                            (5, 7, [0, 0, 5, 5]),       # unknown image id
                            (2, 7, [10, 10, 0, 5]),     # zero width
                            (2, 3, [40, 40, 5, 5])],    # entirely outside 30x30
                 images=((1, "a.png", 40, 20), (2, "b.png", 30, 30),
                         (3, "missing.png", 10, 10)))
    with pytest.raises(DataError) as info:
        load_detection_data(path, image_size=(32, 32))
    message = str(info.value)
    assert message.startswith("5 problems in the coco data set")
    for expected in ("unknown category_id 99", "image_id 5 is not in 'images'",
                     "missing.png: image file not found", "b.png: box 0", "zero area",
                     "b.png: box 1 [40, 40, 45, 45]: entirely outside the 30x30 image"):
        assert expected in message


def test_coco_strict_false_skips_the_problems(tmp_path, caplog):
    path = _coco(tmp_path, [(1, 99, [0, 0, 5, 5]), (1, 7, [0, 0, 5, 5]),
                            (2, 7, [10, 10, 0, 5])])
    with caplog.at_level(logging.WARNING, logger="kerastransfer"):
        data = load_detection_data(path, image_size=(32, 32), validation_split=0.0,
                                   strict=False)
    assert [len(t["labels"]) for t in data.targets] == [1, 0]
    assert "Skipping 2 problems" in caplog.text


def test_partly_outside_boxes_are_clipped_with_a_warning(tmp_path, caplog):
    path = _coco(tmp_path, [(2, 7, [20, -5, 20, 15])])
    with caplog.at_level(logging.WARNING, logger="kerastransfer"):
        data = load_detection_data(path, image_size=(30, 30), validation_split=0.0)
    np.testing.assert_allclose(data.targets[1]["boxes"], [[20, 0, 30, 10]], atol=1e-5)
    assert "Clipped 1 boxes" in caplog.text and "b.png: box 0" in caplog.text


def test_split_is_seeded_and_by_image(tmp_path):
    images = tuple((i + 1, f"im{i}.png", 16, 16) for i in range(10))
    path = _coco(tmp_path, [(i + 1, 7, [0, 0, 4, 4 + i]) for i in range(10)],
                 images=images)
    first = load_detection_data(path, image_size=(16, 16), validation_split=0.3, seed=4)
    again = load_detection_data(path, image_size=(16, 16), validation_split=0.3, seed=4)
    other = load_detection_data(path, image_size=(16, 16), validation_split=0.3, seed=5)
    assert len(first.validation_files) == 3 and len(first.files) == 7
    assert first.validation_files == again.validation_files
    assert first.validation_files != other.validation_files
    assert sorted(first.files + first.validation_files) == sorted(
        str(tmp_path / n) for _, n, _, _ in images)
    # Each image keeps its own box (box height 4 + i identifies image i).
    for files, targets in ((first.files, first.targets),
                           (first.validation_files, first.validation_targets)):
        for file, target in zip(files, targets, strict=True):
            i = int(os.path.basename(file)[2:-4])
            np.testing.assert_allclose(target["boxes"], [[0, 0, 4, 4 + i]])
    assert first.validation_images.shape == (3, 16, 16, 3)


# ------------------------------------------------------------------- VOC ----

def _voc_xml(filename, objects, size=(40, 30)):
    parts = [f"<annotation><filename>{filename}</filename>",
             f"<size><width>{size[0]}</width><height>{size[1]}</height>"
             "<depth>3</depth></size>"]
    for name, (x1, y1, x2, y2) in objects:
        parts.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox>"
                     f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                     f"<ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def _voc(tmp_path, entries):
    (tmp_path / "Annotations").mkdir()
    for stem, objects in entries.items():
        _png(tmp_path / "JPEGImages" / f"{stem}.png", 40, 30)
        (tmp_path / "Annotations" / f"{stem}.xml").write_text(
            _voc_xml(f"{stem}.png", objects))
    return str(tmp_path)


def test_voc_loads_with_sorted_or_given_class_names(tmp_path):
    path = _voc(tmp_path, {"x": [("zebra", (1, 2, 11, 12)), ("ant", (0, 0, 40, 30))],
                           "y": []})
    data = load_detection_data(path, format="voc", image_size=(40, 40),
                               validation_split=0.0)
    assert data.class_names == ["ant", "zebra"]
    np.testing.assert_array_equal(data.targets[0]["labels"], [1, 0])
    # 40x30 into 40x40: scale 1, 5 rows of padding above.
    np.testing.assert_allclose(data.targets[0]["boxes"],
                               [[1, 7, 11, 17], [0, 5, 40, 35]])
    assert len(data.targets[1]["boxes"]) == 0
    given = load_detection_data(path, format="voc", image_size=(40, 40),
                                validation_split=0.0,
                                class_names=["zebra", "ant", "bee"])
    assert given.class_names == ["zebra", "ant", "bee"]
    np.testing.assert_array_equal(given.targets[0]["labels"], [0, 1])


def test_voc_problems_missing_image_unpaired_inverted_unknown(tmp_path):
    path = _voc(tmp_path, {"x": [("ant", (10, 2, 5, 12))],  # x2 < x1
                           "y": [("bee", (0, 0, 5, 5))]})   # unknown class
    (tmp_path / "Annotations" / "ghost.xml").write_text(
        _voc_xml("ghost.jpg", [("ant", (0, 0, 5, 5))]))
    _png(tmp_path / "JPEGImages" / "lonely.png", 8, 8)
    with pytest.raises(DataError) as info:
        load_detection_data(path, format="voc", image_size=(32, 32),
                            class_names=["ant"])
    message = str(info.value)
    assert message.startswith("4 problems in the voc data set")
    assert "ghost.xml: names the image 'ghost.jpg', which is not in" in message
    assert "lonely.png: image without an annotation .xml" in message
    assert "y.xml: object 0 has the unknown class 'bee'" in message
    assert "x.png: box 0 [10, 2, 5, 12]: x2 < x1" in message


# ------------------------------------------------------------------ YOLO ----

def _yolo(tmp_path, labels, names_file="classes.txt"):
    for stem in ("p", "q", "r"):
        _png(tmp_path / "images" / f"{stem}.png", 40, 20)
    (tmp_path / "labels").mkdir()
    for stem, text in labels.items():
        (tmp_path / "labels" / f"{stem}.txt").write_text(text)
    if names_file == "classes.txt":
        (tmp_path / "classes.txt").write_text("red\ngreen\n")
    elif names_file == "data.yaml":
        (tmp_path / "data.yaml").write_text("names:\n  0: red\n  1: green\n")
    return str(tmp_path)


@pytest.mark.parametrize("names_file", ["classes.txt", "data.yaml"])
def test_yolo_loads_normalized_boxes_and_background_images(tmp_path, names_file):
    path = _yolo(tmp_path, {"p": "1 0.5 0.5 0.5 0.5\n0 0.125 0.25 0.25 0.5\n",
                            "q": ""}, names_file)
    data = load_detection_data(path, format="yolo", image_size=(40, 40),
                               validation_split=0.0)
    assert data.class_names == ["red", "green"]
    assert [os.path.basename(f) for f in data.files] == ["p.png", "q.png", "r.png"]
    # 40x20 into 40x40: scale 1, 10 rows of padding above.
    np.testing.assert_allclose(data.targets[0]["boxes"],
                               [[10, 15, 30, 25], [0, 10, 10, 20]], atol=1e-5)
    np.testing.assert_array_equal(data.targets[0]["labels"], [1, 0])
    assert len(data.targets[1]["labels"]) == 0  # empty label file
    assert len(data.targets[2]["labels"]) == 0  # no label file: no objects


@pytest.mark.parametrize("text", [
    "path: x\nnames: [red, 'green']\nnc: 2\n",
    "names:\n  - red\n  - green\nnc: 2\n",
    "names:\n  1: green  # second\n  0: red\n",
])
def test_data_yaml_names_without_pyyaml(text):
    import yaml

    from kerastransfer.data.detection_formats import _simple_yaml_names

    names = _simple_yaml_names(text)
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
    assert names == ["red", "green"]
    parsed = yaml.safe_load(text)["names"]  # the same answer as PyYAML
    assert names == (parsed if isinstance(parsed, list)
                     else [parsed[k] for k in sorted(parsed)])


def test_yolo_problems_unpaired_label_bad_line_class_out_of_range(tmp_path):
    path = _yolo(tmp_path, {"p": "2 0.5 0.5 0.2 0.2\n", "q": "0 0.5 0.5\n",
                            "orphan": "0 0.5 0.5 0.1 0.1\n"})
    with pytest.raises(DataError) as info:
        load_detection_data(path, format="yolo", image_size=(32, 32))
    message = str(info.value)
    assert message.startswith("3 problems in the yolo data set")
    assert "orphan.txt: label file without an image" in message
    assert "q.txt:1: expected 'class cx cy w h' (5 numbers)" in message
    assert "p.png: box 0 [16, 8, 24, 12]: class id 2 is outside [0, 2)" in message


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Unknown detection format"):
        load_detection_data(str(tmp_path), format="pascal", image_size=(8, 8))
    with pytest.raises(DataError, match="does not exist"):
        load_detection_data(str(tmp_path / "nope.json"), image_size=(8, 8))


# ------------------------------------------------- check_detection_targets ----

@pytest.mark.parametrize("box, label, why", [
    ([5, 1, 2, 6], 0, "x2 < x1"),
    ([1, 6, 5, 2], 0, "y2 < y1"),
    ([3, 1, 3, 6], 0, "zero area"),
    ([1, 1, 5, 6], 3, "class id 3 is outside [0, 3)"),
    ([1, 1, 5, 6], -1, "class id -1 is outside"),
    ([20, 1, 25, 6], 0, "entirely outside the 16x8 image"),
    ([1, np.nan, 5, 6], 0, "not finite"),
])
def test_check_detection_targets_names_each_bad_box(box, label, why):
    good = {"boxes": [[0, 0, 4, 4]], "labels": [1]}
    with pytest.raises(ValueError, match="1 detection boxes are unusable") as info:
        check_detection_targets([good, {"boxes": [box], "labels": [label]}], 3,
                                image_size=(8, 16))
    assert "image 1: box 0" in str(info.value) and why in str(info.value)


def test_check_detection_targets_types_and_clips():
    out = check_detection_targets(
        [{"boxes": [[-2.0, 1, 5, 9]], "labels": np.array([2.0])},
         {"boxes": np.zeros((0, 4)), "labels": []}], 3, image_size=(8, 16))
    assert out[0]["boxes"].dtype == np.float32 and out[0]["labels"].dtype == np.int32
    np.testing.assert_allclose(out[0]["boxes"], [[0, 1, 5, 8]])
    assert out[1]["boxes"].shape == (0, 4)
    with pytest.raises(DataError, match="one label per box"):
        check_detection_targets([{"boxes": [[0, 0, 1, 1]], "labels": [0, 1]}], 2)
    with pytest.raises(DataError, match="dict with 'boxes'"):
        check_detection_targets([[0, 0, 1, 1]], 2)


def test_letterbox_pads_tall_images_left_and_right():
    image = np.zeros((20, 10, 3), np.uint8)
    out, scale, pad_x, pad_y = letterbox_image(image, (40, 40))
    assert (scale, pad_x, pad_y) == (2.0, 10.0, 0.0)
    assert np.all(out[:, :10] == LETTERBOX_FILL) and np.all(out[:, 10:30] == 0)


# ----------------------------------------------------------- augmentation ----

def _rectangle_image(box, size=64):
    image = np.zeros((size, size, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize("seed", range(6))
def test_augmented_boxes_follow_the_pixels(seed):
    box = [14, 20, 40, 36]
    rng = np.random.default_rng(seed)
    image, boxes, labels = augment_detection(_rectangle_image(box), [box], [4], rng,
                                             scale=(0.6, 1.4))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(labels, [4])
    ys, xs = np.nonzero(image[..., 0] > 127)  # the white rectangle, moved
    np.testing.assert_allclose(boxes[0], [xs.min(), ys.min(), xs.max() + 1,
                                          ys.max() + 1], atol=1.0)


def test_zoom_in_clips_and_drops_boxes_deterministically():
    image = np.full((64, 64, 3), 50.0, np.float32)
    boxes = [[0, 0, 8, 8],      # -> [-32, -32, -16, -16]: gone
             [12, 12, 20, 20],  # -> [-8, -8, 8, 8]: 25% left, kept
             [11, 11, 19, 19],  # -> [-10, -10, 6, 6]: 14% left, dropped
             [30, 30, 34, 40]]  # -> [28, 28, 36, 48]: inside
    out, kept, labels = augment_detection(image, boxes, [0, 1, 2, 3],
                                          np.random.default_rng(0), flip=False,
                                          scale=(2.0, 2.0), crop=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 50.0, atol=1e-4)
    np.testing.assert_array_equal(labels, [1, 3])
    np.testing.assert_allclose(kept, [[0, 0, 8, 8], [28, 28, 36, 48]], atol=1e-5)


def test_zoom_out_fills_gray_and_same_seed_same_result():
    image = np.zeros((32, 32, 3), np.uint8)
    first = augment_detection(image, [[4, 4, 20, 20]], [0], np.random.default_rng(7),
                              scale=(0.5, 0.5))
    again = augment_detection(image, [[4, 4, 20, 20]], [0], np.random.default_rng(7),
                              scale=(0.5, 0.5))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.mean(first[0] == LETTERBOX_FILL) == pytest.approx(0.75, abs=0.05)
    w, h = first[1][0, 2] - first[1][0, 0], first[1][0, 3] - first[1][0, 1]
    assert (w, h) == pytest.approx((8.0, 8.0))
    with pytest.raises(ValueError, match="scale must be"):
        augment_detection(image, [], [], np.random.default_rng(0), scale=(2, 1))


# ------------------------------------------------------ synthetic canvases ----

def test_digit_canvases_boxes_labels_and_seed():
    images, targets = digit_canvases(12, size=64, seed=3)
    again, _ = digit_canvases(12, size=64, seed=3)
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    counts = [len(t["labels"]) for t in targets]
    assert min(counts) >= 1 and max(counts) <= 3
    for target in targets:
        boxes = target["boxes"]
        assert np.all(boxes >= 0) and np.all(boxes <= 64)
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert np.all((sides >= 4) & (sides <= 28))
        assert np.all((target["labels"] >= 0) & (target["labels"] <= 9))
        check_detection_targets([target], 10, image_size=(64, 64))
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(
                    0, min(a[3], b[3]) - max(a[1], b[1]))
                union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
                assert inter / union <= 0.1 + 1e-6


def test_digit_canvas_boxes_are_tight_on_the_strokes():
    # A pool of one "digit": a solid 10x6 block, label 7.
    glyph = np.zeros((1, 32, 32, 1), np.float32)
    glyph[0, 5:15, 8:14] = 1.0
    images, targets = digit_canvases(4, size=48, seed=0, digits=(1, 1),
                                     pool=(glyph, np.array([7])), digit_size=(20, 20))
    for image, target in zip(images, targets, strict=True):
        np.testing.assert_array_equal(target["labels"], [7])
        x1, y1, x2, y2 = target["boxes"][0].astype(int)
        assert (x2 - x1, y2 - y1) == (12, 20)  # 6x10 scaled to a longer side of 20
        inside = image[y1:y2, x1:x2].astype(float)
        # The block is painted in one color: little spread inside, unlike the
        # textured background around it.
        assert inside.reshape(-1, 3).std(axis=0).max() < 8


def test_coco_folder_image_root_and_box_counts(tmp_path):
    # A folder holding one JSON (as Roboflow exports) and images elsewhere.
    (tmp_path / "pics").mkdir()
    _png(tmp_path / "pics" / "a.png", 20, 20)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "_annotations.coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                         "bbox": [1, 1, 5, 5]},
                        {"id": 2, "image_id": 1, "category_id": 1,
                         "bbox": [0, 0, 20, 20], "iscrowd": 1}],  # skipped
        "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}))
    data = load_detection_data(str(tmp_path / "ann"), image_size=(20, 20),
                               validation_split=0.0,
                               image_root=str(tmp_path / "pics"))
    assert data.class_box_counts() == {"x": 1, "y": 0}
    np.testing.assert_allclose(data.targets[0]["boxes"], [[1, 1, 6, 6]])
    with pytest.raises(DataError, match="exactly one .json"):
        load_detection_data(str(tmp_path / "pics"), image_size=(20, 20))


def test_long_problem_lists_are_shortened(tmp_path):
    path = _coco(tmp_path, [(1, 99, [0, 0, 5, 5])] * 25)
    with pytest.raises(DataError, match=r"(?s)25 problems.*\.\.\. and 5 more"):
        load_detection_data(path, image_size=(32, 32))


def test_image_size_mismatch_with_the_annotation_is_a_problem(tmp_path):
    path = _coco(tmp_path, [], images=((1, "a.png", 40, 20),))
    data = json.loads(open(path).read())
    data["images"][0]["width"] = 41
    open(path, "w").write(json.dumps(data))
    with pytest.raises(DataError, match="the annotation says 41x20 pixels, the file "
                                        "is 40x20"):
        load_detection_data(path, image_size=(32, 32))


def test_letterbox_array_matches_letterbox_image_for_any_channels():
    from kerastransfer.data.detection import letterbox_array, letterbox_image

    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3)).astype(np.uint8)
    array, (scale, pad_x, pad_y) = letterbox_array(image, (40, 40))
    expected, *geometry = letterbox_image(image, (40, 40))
    assert (scale, pad_x, pad_y) == tuple(geometry) == (0.8, 0.0, 8.0)
    assert array.dtype == np.float32 and array.shape == (40, 40, 3)
    # Float resizing vs Pillow's uint8 resizing: within one gray level.
    assert np.abs(array - expected).max() <= 1.0
    gray, _ = letterbox_array(image[..., 0], (40, 40))
    assert gray.shape == (40, 40, 1) and np.all(gray[:8] == 114)
    # An image the caller already resized is only padded.
    padded, letterbox = letterbox_array(np.zeros((24, 40, 1)), (40, 40), scale=0.8)
    assert letterbox == (0.8, 0.0, 8.0) and padded[8:32].max() == 0
