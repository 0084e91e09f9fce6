"""Readers of COCO JSON, Pascal VOC XML and YOLO txt detection annotations.

Each reader returns `(records, class_names, problems)`: one `Record` per usable
image (its file, size read from the file's header, xyxy boxes in the
original pixels and 0-based labels), the class names in label order, and one
line per problem naming the file (and position) so that
`kerastransfer.data.detection.load_detection_data` reports them all at once.
Records with a problem that makes the image unusable (missing or unreadable
file) are left out; a box with an unknown class is left out of its record.
Box geometry (inverted, zero-area, outside the image) is checked afterwards,
on every format alike, by `check_detection_targets`.

Conventions: COCO `bbox` is `[x, y, width, height]` in pixels and
`iscrowd: 1` annotations (crowd regions, not objects) are skipped; VOC
`<bndbox>` corners are taken as pixel coordinates as written (the 1-based
offset of the original VOC tools is not subtracted, as torchvision and
KerasCV do); YOLO lines are `class cx cy w h` normalized by the image size.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from kerastransfer.errors import DataError

__all__ = ["Record", "read_coco", "read_voc", "read_yolo", "open_rgb",
           "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Record:
    """One image: file, size (from the file) and boxes in its own pixels."""

    file: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


def open_rgb(path: str):
    """Opens an image file as an RGB PIL image."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _image_size(path: str, problems: list) -> tuple[int, int] | None:
    """`(width, height)` from the file's header, or `None` with a problem."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        problems.append(f"{path}: image file not found")
        return None
    try:
        with Image.open(path) as image:
            image.verify()  # reads the whole file: truncated files fail here
            return image.size
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        problems.append(f"{path}: not a readable image ({error})")
        return None


def _record(path, boxes, labels, problems, declared=None) -> Record | None:
    size = _image_size(path, problems)
    if size is None:
        return None
    if declared is not None and tuple(declared) != tuple(size) and all(declared):
        problems.append(f"{path}: the annotation says {declared[0]}x{declared[1]} "
                        f"pixels, the file is {size[0]}x{size[1]}")
        return None
    return Record(path, int(size[0]), int(size[1]),
                  np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                  np.asarray(labels, dtype=np.int64).reshape(-1))


def _images_in(folder: str) -> dict[str, str]:
    """Relative path without extension -> file, for images under `folder`."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if ext.lower() in IMAGE_EXTENSIONS and not file.startswith("."):
                key = os.path.relpath(os.path.join(root, stem), folder)
                found.setdefault(key, os.path.join(root, file))
    return found


# ---------------------------------------------------------------- COCO ----

def _coco_file(path: str) -> str:
    if os.path.isfile(path):
        return path
    candidates = [os.path.join(folder, f) for folder in (path, os.path.join(
        path, "annotations")) if os.path.isdir(folder)
        for f in sorted(os.listdir(folder)) if f.endswith(".json")]
    if len(candidates) != 1:
        raise DataError(
            "A COCO folder must hold exactly one .json annotation file (in it or "
            "in annotations/). Pass the JSON file itself. Received: "
            f"path={path!r} with {len(candidates)} JSON files {candidates[:5]}")
    return candidates[0]


def read_coco(path: str, *, class_names=None, image_root=None):
    """Reads a COCO detection JSON. See `load_detection_data`."""
    file = _coco_file(path)
    with open(file, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"The COCO annotation file is not valid JSON: {error.msg} at line "
            f"{error.lineno}, column {error.colno} (character {error.pos}). Fix "
            f"the file there. Received: path={file!r}") from None
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(data, dict) or not isinstance(data.get(key), list)]
    if missing:
        raise DataError(
            f"A COCO detection file needs the lists 'images', 'annotations' and "
            f"'categories'. Add {missing}. Received: path={file!r}")
    problems = []
    categories = sorted((c for c in data["categories"] if "id" in c),
                        key=lambda c: c["id"])
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    names = [str(c.get("name", c["id"])) for c in categories]
    if class_names is not None and list(class_names) != names:
        raise DataError("class_names must match the COCO categories (in id order) "
                        f"or be None. Received: class_names={list(class_names)}, "
                        f"categories={names}")
    roots = [image_root] if image_root else [
        os.path.dirname(file), os.path.join(os.path.dirname(file), "images"),
        os.path.dirname(os.path.dirname(file))]
    boxes = {image["id"]: ([], []) for image in data["images"] if "id" in image}
    for k, ann in enumerate(data["annotations"]):
        where = f"{file}: annotations[{k}] (id {ann.get('id')})"
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if ann.get("image_id") not in boxes:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in "
                            "'images'")
        elif ann.get("category_id") not in label_of:
            problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}"
                            f" (categories: {sorted(label_of)})")
        elif (not isinstance(bbox, list) or len(bbox) != 4
              or not all(isinstance(v, (int, float)) for v in bbox)):
            problems.append(f"{where}: bbox must be [x, y, width, height], "
                            f"got {bbox!r}")
        else:
            x, y, w, h = (float(v) for v in bbox)
            boxes[ann["image_id"]][0].append([x, y, x + w, y + h])
            boxes[ann["image_id"]][1].append(label_of[ann["category_id"]])
    records = []
    for image in data["images"]:
        name = image.get("file_name")
        if name is None or "id" not in image:
            problems.append(f"{file}: an image entry without 'id' or 'file_name': "
                            f"{image!r}")
            continue
        found = [os.path.join(root, name) for root in roots
                 if os.path.isfile(os.path.join(root, name))]
        target = found[0] if found else os.path.join(roots[0], name)
        record = _record(target, *boxes[image["id"]], problems,
                         (image.get("width"), image.get("height")))
        if record is not None:
            records.append(record)
    return records, names, problems


# ----------------------------------------------------------------- VOC ----

def read_voc(path: str, *, class_names=None, image_root=None):
    """Reads a Pascal VOC folder. See `load_detection_data`."""
    xml_dir = os.path.join(path, "Annotations")
    xml_dir = xml_dir if os.path.isdir(xml_dir) else path
    if image_root is None:
        image_root = next((os.path.join(path, d) for d in ("JPEGImages", "images")
                           if os.path.isdir(os.path.join(path, d))), xml_dir)
    xml_files = sorted(f for f in os.listdir(xml_dir) if f.lower().endswith(".xml"))
    if not xml_files:
        raise DataError("A Pascal VOC folder needs .xml annotation files (in it or "
                        f"in Annotations/). Received: path={path!r}")
    problems, parsed, seen = [], [], set()
    for name in xml_files:
        xml_path = os.path.join(xml_dir, name)
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as error:
            problems.append(f"{xml_path}: not valid XML ({error})")
            continue
        filename = (root.findtext("filename") or "").strip()
        image = os.path.join(image_root, filename) if filename else None
        if image is None or not os.path.isfile(image):
            stem = os.path.splitext(filename or name)[0]
            matches = [os.path.join(image_root, stem + e) for e in IMAGE_EXTENSIONS
                       if os.path.isfile(os.path.join(image_root, stem + e))]
            if not matches:
                problems.append(f"{xml_path}: names the image {filename or stem!r}, "
                                f"which is not in {image_root}")
                continue
            image = matches[0]
        seen.add(os.path.abspath(image))
        objects = []
        for k, obj in enumerate(root.iter("object")):
            box = obj.find("bndbox")
            try:
                coords = [float(box.findtext(t)) for t in ("xmin", "ymin", "xmax",
                                                          "ymax")]
            except (AttributeError, TypeError, ValueError):
                problems.append(f"{xml_path}: object {k} has no numeric <bndbox> "
                                "xmin/ymin/xmax/ymax")
                continue
            objects.append(((obj.findtext("name") or "").strip(), coords))
        size = (root.find("size"))
        declared = None
        if size is not None:
            try:
                declared = (int(float(size.findtext("width"))),
                            int(float(size.findtext("height"))))
            except (TypeError, ValueError):
                declared = None
        parsed.append((xml_path, image, objects, declared))
    names = list(class_names) if class_names is not None else sorted(
        {n for *_, objects, _ in parsed for n, _ in objects})
    label_of = {n: i for i, n in enumerate(names)}
    records = []
    for xml_path, image, objects, declared in parsed:
        boxes, labels = [], []
        for k, (name, coords) in enumerate(objects):
            if name not in label_of:
                problems.append(f"{xml_path}: object {k} has the unknown class "
                                f"{name!r} (classes: {names})")
                continue
            boxes.append(coords)
            labels.append(label_of[name])
        record = _record(image, boxes, labels, problems, declared)
        if record is not None:
            records.append(record)
    for file in _images_in(image_root).values():
        if os.path.abspath(file) not in seen:
            problems.append(f"{file}: image without an annotation .xml")
    return records, names, problems


# ---------------------------------------------------------------- YOLO ----

def _simple_yaml_names(text: str):
    """`names:` of a data.yaml without PyYAML (not a dependency): an inline
    list `[a, b]`, or indented `- a` / `0: a` lines under `names:`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("names:"):
            continue
        rest = line[len("names:"):].split(" #")[0].strip()
        if rest.startswith("["):
            return [n.strip().strip("'\"") for n in rest.strip("[]").split(",")
                    if n.strip()]
        items = {}
        for entry in lines[i + 1:]:
            if entry.strip() and not entry[0].isspace():
                break
            entry = entry.split(" #")[0].strip()
            if entry.startswith("- "):
                items[len(items)] = entry[2:].strip().strip("'\"")
            elif ":" in entry:
                key, value = entry.split(":", 1)
                items[int(key)] = value.strip().strip("'\"")
        return items or None
    return None


def _yolo_names(path: str):
    for folder in (path, os.path.join(path, "labels")):
        classes = os.path.join(folder, "classes.txt")
        if os.path.isfile(classes):
            with open(classes, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as f:
                text = f.read()
            try:
                import yaml
            except ImportError:
                names = _simple_yaml_names(text)
            else:
                try:
                    names = (yaml.safe_load(text) or {}).get("names")
                except yaml.YAMLError as error:
                    raise DataError(f"{file} is not valid YAML ({error}). Fix it. "
                                    f"Received: path={file!r}") from None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names)]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise DataError(f"{file} needs a 'names:' list or mapping of class "
                            f"names. Add it. Received: names={names!r}")
    return None


def read_yolo(path: str, *, class_names=None, image_root=None):
    """Reads a YOLO txt folder. See `load_detection_data`."""
    image_dir = image_root or (os.path.join(path, "images")
                               if os.path.isdir(os.path.join(path, "images")) else path)
    label_dir = os.path.join(path, "labels")
    label_dir = label_dir if os.path.isdir(label_dir) else image_dir
    names = list(class_names) if class_names is not None else _yolo_names(path)
    images = _images_in(image_dir)
    labels = {}
    for root, dirs, files in os.walk(label_dir):
        dirs.sort()
        for file in sorted(files):
            if file.endswith(".txt") and file not in ("classes.txt", "README.txt"):
                stem = os.path.splitext(os.path.join(root, file))[0]
                labels[os.path.relpath(stem, label_dir)] = os.path.join(root, file)
    problems, records, max_label = [], [], -1
    if images and not labels:
        # Every image without objects is far more likely a wrong folder layout.
        problems.append(f"{label_dir}: no YOLO label .txt files for the "
                        f"{len(images)} images in {image_dir}")
    for key, label_file in labels.items():
        if key not in images:
            problems.append(f"{label_file}: label file without an image "
                            f"{key}.* in {image_dir}")
    for key, image in images.items():
        rows = []
        if key in labels:
            with open(labels[key], encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    fields = line.split()
                    if not fields:
                        continue
                    try:
                        values = [float(v) for v in fields]
                    except ValueError:
                        values = []
                    if len(values) != 5 or values[0] % 1:
                        problems.append(f"{labels[key]}:{number}: expected 'class cx"
                                        f" cy w h' (5 numbers), got {line.strip()!r}")
                        continue
                    rows.append(values)
        size = _image_size(image, problems)
        if size is None:
            continue
        width, height = size
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, \
            rows[:, 4] * height
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        records.append(Record(image, int(width), int(height),
                              boxes.astype(np.float32), rows[:, 0].astype(np.int64)))
        if len(rows):
            max_label = max(max_label, int(rows[:, 0].max()))
    if names is None:
        # No names file: classes are the ids seen ("0", "1", ...); an id past the
        # last class cannot be detected as unknown then.
        names = [str(i) for i in range(max_label + 1)] or ["0"]
    return records, names, problems
