"""Detection data: COCO / Pascal VOC / YOLO folders -> letterboxed arrays.

Targets follow KerasHub's convention: one dict per image,
`{"boxes": float32 (k, 4) xyxy in pixels, "labels": int32 (k,)}`.

`load_detection_data` reads the annotations of one of three formats (parsed in
`kerastransfer.data.detection_formats`), checks everything before any image is
decoded, then letterboxes every image to `image_size`:

* **Letterboxing** (as YOLO does): the image is resized bilinearly by
  `scale = min(H / h, W / w)` (aspect ratio kept), centred, and the rest of
  the canvas is filled with gray 114. Boxes become `box * scale + (pad_x,
  pad_y, pad_x, pad_y)`; `DetectionData.letterbox` keeps `(scale, pad_x,
  pad_y)` per image so that `unletterbox_boxes` maps predictions back to the
  original image's pixels.
* **Problems found up front, reported all at once** with file names: missing
  or unreadable images, annotation files without an image and (VOC) images
  without an annotation file, boxes with `x2 <= x1` / `y2 <= y1`, boxes
  entirely outside their image, unknown class ids. They raise one `DataError`
  listing every problem (`strict=False` skips the offending boxes and files
  with a warning instead). Boxes partly outside their image are clipped to it
  and counted in a warning.

The validation split is seeded and by image (an image and all its boxes go to
one side).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kerastransfer.data.checks import check_image_size, check_validation_split
from kerastransfer.errors import DataError

# One letterboxing for training and prediction, in the TensorFlow-free runtime
# (re-exported here: `from kerastransfer.data.detection import letterbox_array`).
from kerastransfer.runtime.letterbox import (
    LETTERBOX_FILL,
    letterbox_array,
    letterbox_geometry,
    unletterbox_boxes,
)

__all__ = ["DetectionData", "load_detection_data", "check_detection_targets",
           "letterbox_image", "letterbox_array", "unletterbox_boxes",
           "DETECTION_FORMATS",
           "LETTERBOX_FILL"]

logger = logging.getLogger("kerastransfer")

DETECTION_FORMATS = ("coco", "voc", "yolo")
_MAX_LISTED = 20


@dataclass
class DetectionData:
    """Letterboxed detection images and their targets, split by image.

    Attributes:
        images: uint8 `(n, H, W, 3)` training images, letterboxed.
        targets: one `{"boxes", "labels"}` dict per training image, boxes in
            letterboxed pixels.
        validation_images, validation_targets: the same for validation.
        class_names: the class names in label order.
        files: the training image files.
        validation_files: the validation image files.
        letterbox: float32 `(n, 3)` `(scale, pad_x, pad_y)` per training image.
        validation_letterbox: the same per validation image.
    """

    images: np.ndarray
    targets: list
    validation_images: np.ndarray
    validation_targets: list
    class_names: list
    files: list = field(default_factory=list)
    validation_files: list = field(default_factory=list)
    letterbox: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), "float32"))
    validation_letterbox: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 3), "float32"))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.images.shape[1:3])

    def class_box_counts(self) -> dict[str, int]:
        """Training boxes per class."""
        labels = np.concatenate([t["labels"] for t in self.targets] or
                                [np.zeros(0, "int32")])
        counts = np.bincount(labels, minlength=self.num_classes)
        return dict(zip(self.class_names, map(int, counts), strict=True))


def _listing(problems: list[str]) -> str:
    text = "\n".join(f"  {p}" for p in problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        text += f"\n  ... and {len(problems) - _MAX_LISTED} more"
    return text


def _as_target(target, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise DataError(
            "Each detection target must be a dict with 'boxes' (k, 4) xyxy and "
            "'labels' (k,). Build one dict per image. "
            f"Received: {where} = {type(target).__name__}")
    boxes = np.asarray(target["boxes"], dtype=np.float32)
    labels = np.asarray(target["labels"])
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.ndim != 1 \
            or len(labels) != len(boxes):
        raise DataError(
            "A detection target needs boxes of shape (k, 4) and labels of shape "
            "(k,), one label per box. Fix the shapes. Received: "
            f"{where} with boxes.shape={boxes.shape}, labels.shape={labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.number)
                        or not np.all(np.isfinite(labels.astype(float)))
                        or np.any(labels.astype(float) % 1)):
        raise DataError(
            "Detection labels must be integer class ids. Map class names to "
            f"0..num_classes-1 first. Received: {where} labels={labels.tolist()}")
    return boxes, labels.astype(np.int64)


def check_detection_targets(targets: Sequence[dict], num_classes: int,
                            image_size=None, *, files: Sequence[str] | None = None,
                            strict: bool = True) -> list[dict]:
    """Checks detection targets; returns them clipped and typed.

    Every box is checked, then all the problems are raised at once: a box with
    `x2 <= x1` or `y2 <= y1` (inverted or zero area), a box with a
    non-finite coordinate, a box entirely outside its image, a label outside
    `[0, num_classes)`. A box partly outside its image is clipped to it, with
    a warning.

    Args:
        targets: one dict per image, `{"boxes": (k, 4) xyxy pixels,
            "labels": (k,) int}`.
        num_classes: the number of classes.
        image_size: `(height, width)` of every image, or one `(height,
            width)` per image; `None` skips the image-bound checks. Defaults
            to `None`.
        files: names of the images, used in the messages. Defaults to `None`
            (images are named by index).
        strict: raise on problems. With `False` the bad boxes are dropped
            with a warning. Defaults to `True`.

    Returns:
        A new list of `{"boxes": float32 (k, 4), "labels": int32 (k,)}`.

    Raises:
        DataError: (a `ValueError`) one error listing every bad box, each with
            its image, box index, coordinates and what is wrong.

    Example:

    >>> check_detection_targets([{"boxes": [[2, 2, 10, 12]], "labels": [1]}],
    ...                         num_classes=2, image_size=(32, 32))[0]["labels"]
    array([1], dtype=int32)
    """
    out, problems, clipped = _check_targets(targets, num_classes, image_size, files)
    if problems and strict:
        raise DataError(
            f"{len(problems)} detection boxes are unusable. Fix the boxes (xyxy in "
            "pixels inside the image, x1 < x2, y1 < y2) and class ids (0 to "
            f"num_classes - 1), or drop them. Received:\n{_listing(problems)}")
    if problems:
        logger.warning("Dropping %d unusable boxes:\n%s", len(problems),
                       _listing(problems))
    _warn_clipped(clipped)
    return out


def _warn_clipped(clipped):
    if clipped:
        logger.warning("Clipped %d boxes partly outside their image to its "
                       "borders:\n%s", len(clipped), _listing(clipped))


def _check_targets(targets, num_classes, image_size, files):
    """`(clean targets, problems, clipped boxes)`: the checks, without raising."""
    if num_classes is None or int(num_classes) < 1:
        raise ValueError("num_classes must be a positive integer. "
                         f"Received: num_classes={num_classes!r}")
    targets = list(targets)
    sizes = None
    if image_size is not None:
        array = np.asarray(image_size, dtype=np.float64)
        if array.shape == (2,):
            sizes = np.broadcast_to(array, (len(targets), 2))
        elif array.shape == (len(targets), 2):
            sizes = array
        else:
            raise ValueError(
                "image_size must be (height, width) or one (height, width) per "
                f"target. Received: image_size with shape {array.shape} for "
                f"{len(targets)} targets")
    problems, clipped, out = [], [], []
    for i, target in enumerate(targets):
        name = files[i] if files is not None else f"image {i}"
        boxes, labels = _as_target(target, f"targets[{i}] ({name})")
        keep = np.ones(len(boxes), dtype=bool)
        for j, (box, label) in enumerate(zip(boxes, labels, strict=True)):
            coords = "[" + ", ".join(f"{v:g}" for v in box) + "]"
            where = f"{name}: box {j} {coords}"
            why = None
            if not np.all(np.isfinite(box)):
                why = "a coordinate is not finite"
            elif box[2] < box[0] or box[3] < box[1]:
                why = "x2 < x1 or y2 < y1 (boxes are x1, y1, x2, y2)"
            elif box[2] == box[0] or box[3] == box[1]:
                why = "zero area"
            elif not 0 <= label < num_classes:
                why = f"class id {label} is outside [0, {num_classes})"
            elif sizes is not None:
                height, width = sizes[i]
                if box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0:
                    why = f"entirely outside the {width:g}x{height:g} image"
                elif box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                    clipped.append(where)
            if why is not None:
                problems.append(f"{where}: {why}")
                keep[j] = False
        if sizes is not None:
            height, width = sizes[i]
            boxes = np.clip(boxes, 0, [width, height, width, height])
        out.append({"boxes": boxes[keep].astype(np.float32),
                    "labels": labels[keep].astype(np.int32)})
    return out, problems, clipped


def letterbox_image(image, image_size) -> tuple[np.ndarray, float, float, float]:
    """Resizes an image into `image_size` keeping its aspect ratio (YOLO style).

    Args:
        image: a PIL image or an array `(h, w, 3)`.
        image_size: the output `(height, width)`.

    Returns:
        `(array, scale, pad_x, pad_y)`: the uint8 `(H, W, 3)` letterboxed
        image, filled with gray `LETTERBOX_FILL` outside the picture; a
        point `(x, y)` of the original maps to `(x * scale + pad_x, y * scale +
        pad_y)`.
    """
    from PIL import Image

    height, width = check_image_size(image_size)
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    image = image.convert("RGB")
    w, h = image.size
    scale, new_h, new_w, pad_x, pad_y = letterbox_geometry((h, w), (height, width))
    canvas = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    resized = image.resize((new_w, new_h), Image.BILINEAR) \
        if (new_w, new_h) != (w, h) else image
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = np.asarray(resized)
    return canvas, float(scale), float(pad_x), float(pad_y)


def _split(count: int, validation_split: float, seed: int):
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(validation_split * count))
    if validation_split > 0 and n_val == 0 and count > 1:
        n_val = 1
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_detection_data(path: str, *, format: str = "coco", image_size=(320, 320),
                        validation_split: float = 0.2, seed: int = 0,
                        class_names: Sequence[str] | None = None,
                        image_root: str | None = None,
                        strict: bool = True) -> DetectionData:
    """Loads a COCO, Pascal VOC or YOLO detection data set, letterboxed.

    Layouts read:

    * `"coco"`: a COCO JSON file (or a folder holding one): `images` with
      `file_name`, `annotations` with `bbox` `[x, y, w, h]`, `categories`
      (class names in category-id order, relabelled 0..k-1). Images are
      looked up next to the JSON file, in its `images/` subfolder, or in
      `image_root`. `iscrowd` annotations are skipped.
    * `"voc"`: a folder with `Annotations/*.xml` and `JPEGImages/` (or XML files
      and images side by side): one XML per image, `<filename>`, `<size>`,
      `<object><name>` and `<bndbox>`. Class names are sorted unless
      `class_names` is given.
    * `"yolo"`: a folder with `images/` and `labels/` (or both side by side):
      one `.txt` per image, lines `class cx cy w h` normalized to [0, 1];
      names from `classes.txt` or `data.yaml` (`names:`), or `class_names`.
      An image without a label file is an image without objects.

    Args:
        path: the annotation file or folder.
        format: `"coco"`, `"voc"` or `"yolo"`. Defaults to `"coco"`.
        image_size: `(height, width)` every image is letterboxed to (see the
            module docstring). Defaults to `(320, 320)`.
        validation_split: share of images held out, in `[0, 1)`. Defaults to
            `0.2`.
        seed: seed of the split. Defaults to `0`.
        class_names: the class names in label order (VOC, YOLO). Defaults to
            `None`.
        image_root: folder the images are in (COCO). Defaults to `None`.
        strict: raise on problems; `False` skips bad boxes and files with a
            warning. Defaults to `True`.

    Returns:
        A `DetectionData`.

    Raises:
        DataError: malformed annotations (with the file and position),
            unpaired files, bad boxes or unknown classes: every problem
            listed in one error.
        ValueError: a bad argument.

    Example:

    >>> data = load_detection_data("coco/annotations.json",
    ...                            image_size=(256, 256))  # doctest: +SKIP
    >>> data.targets[0]["boxes"]  # doctest: +SKIP
    """
    from kerastransfer.data import detection_formats

    if format not in DETECTION_FORMATS:
        raise ValueError(f"Unknown detection format. Use one of {DETECTION_FORMATS}. "
                         f"Received: format={format!r}")
    image_size = check_image_size(image_size)
    validation_split = check_validation_split(validation_split)
    if not os.path.exists(path):
        raise DataError(f"The detection data path does not exist. Check it. "
                        f"Received: path={path!r}")
    reader = getattr(detection_formats, f"read_{format}")
    records, names, problems = reader(path, class_names=class_names,
                                      image_root=image_root)
    files = [r.file for r in records]
    targets, box_problems, clipped = _check_targets(
        [{"boxes": r.boxes, "labels": r.labels} for r in records], len(names),
        np.array([(r.height, r.width) for r in records]).reshape(-1, 2), files)
    problems = problems + box_problems
    if problems and strict:
        raise DataError(
            f"{len(problems)} problems in the {format} data set at {path!r}. Fix "
            "them (or pass strict=False to skip the files and boxes named). "
            f"Received:\n{_listing(problems)}")
    if problems:
        logger.warning("Skipping %d problems in %s:\n%s", len(problems), path,
                       _listing(problems))
    _warn_clipped(clipped)
    if not records:
        raise DataError(f"No usable images in the {format} data set. Check the "
                        f"layout (see load_detection_data). Received: path={path!r}")
    images = np.empty((len(records), *image_size, 3), dtype=np.uint8)
    letterbox = np.empty((len(records), 3), dtype=np.float32)
    for i, record in enumerate(records):
        images[i], scale, pad_x, pad_y = letterbox_image(
            detection_formats.open_rgb(record.file), image_size)
        letterbox[i] = scale, pad_x, pad_y
        boxes = targets[i]["boxes"].astype(np.float64) * scale
        targets[i]["boxes"] = (boxes + [pad_x, pad_y, pad_x, pad_y]).astype(np.float32)
    train, val = _split(len(records), validation_split, seed)
    return DetectionData(
        images=images[train], targets=[targets[i] for i in train],
        validation_images=images[val], validation_targets=[targets[i] for i in val],
        class_names=list(names), files=[files[i] for i in train],
        validation_files=[files[i] for i in val], letterbox=letterbox[train],
        validation_letterbox=letterbox[val])
