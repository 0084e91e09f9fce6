"""`SegmentationPredictor`: an exported segmentation model with onnxruntime.

numpy, onnxruntime and (for files and PNGs) Pillow only: no TensorFlow or Keras.
`OnnxPredictor(path)` becomes a `SegmentationPredictor` when the file's
metadata says `kind = "segmentation"` (`runtime/images.py`). Images of any size
are resized (bilinear) to the model's input; the probabilities come back at
the model's size (`predict`) and masks at each image's own size
(`predict_masks`, nearest-neighbour: class indices stay indices).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerastransfer.runtime.images import OnnxPredictor

__all__ = ["SegmentationPredictor", "resize_images", "resize_masks", "mask_to_png",
           "mask_entry"]


def _pil():
    from PIL import Image

    return Image


def resize_images(images: Sequence[np.ndarray], size: Sequence[int]) -> np.ndarray:
    """Resizes RGB images (any sizes) to `(height, width)`, bilinear, float32."""
    Image = _pil()
    height, width = int(size[0]), int(size[1])
    out = np.empty((len(images), height, width, 3), dtype="float32")
    for i, image in enumerate(images):
        array = np.asarray(image, dtype="float32")
        if array.shape[:2] == (height, width):
            out[i] = array
            continue
        channels = [Image.fromarray(array[..., c]).resize((width, height),
                                                          Image.BILINEAR)
                    for c in range(array.shape[-1])]
        out[i] = np.stack([np.asarray(c) for c in channels], axis=-1)
    return out


def resize_masks(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resizes one mask of class indices to `(height, width)`, nearest-neighbour."""
    Image = _pil()
    height, width = int(size[0]), int(size[1])
    if mask.shape[:2] == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask.astype("uint8")).resize(
        (width, height), Image.NEAREST))


def mask_to_png(mask: np.ndarray) -> bytes:
    """A mask of class indices as PNG bytes (grayscale; value = class)."""
    Image = _pil()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype="uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_entry(probabilities: np.ndarray, class_names: Sequence[str],
               form: str = "png") -> dict[str, Any]:
    """One image's answer for JSON (the edge service): its mask as a base64 PNG
    (`form="png"`, pixel value = class index) or as nested lists of class
    indices (`"indices"`), its size and the pixels per class."""
    mask = np.asarray(probabilities).argmax(axis=-1)
    counts = np.bincount(mask.ravel(), minlength=len(class_names))
    entry: dict[str, Any] = {"height": int(mask.shape[0]), "width": int(mask.shape[1]),
                             "class_names": list(class_names),
                             "class_pixels": {str(n): int(c) for n, c in zip(
                                 class_names, counts, strict=False)}}
    if form == "png":
        entry["mask_png"] = base64.b64encode(mask_to_png(mask)).decode("ascii")
    else:
        entry["mask"] = mask.tolist()
    return entry


class SegmentationPredictor(OnnxPredictor):
    """Per-pixel predictions of an exported `SegmentationModel`.

    Built by `OnnxPredictor(path)` for a segmentation file (same arguments).

    Example:

    >>> predictor = OnnxPredictor("seg.onnx")  # doctest: +SKIP
    >>> masks = predictor.predict_masks(images)  # doctest: +SKIP
    """

    def _init_kind(self) -> None:
        self.kind = "segmentation"

    def _check(self, images: Any) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 4 and tuple(
                images.shape[1:3]) != tuple(self.input_shape[:2]):
            images = resize_images(list(images), self.input_shape[:2])
        return super()._check(images)

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Per-pixel probabilities `(n, height, width, classes)` at the model's
        input size; images of another size are resized first.

        Args:
            images: one image `(h, w, 3)`, a batch `(n, h, w, 3)`, or a list of
                images of any sizes; RGB in [0, 255].
            batch_size: images per onnxruntime call. Defaults to `32`.

        Returns:
            A float32 array.
        """
        if isinstance(images, (list, tuple)):
            images = resize_images(images, self.input_shape[:2])
        return super().predict(images, batch_size=batch_size)

    def predict_masks(self, images: Any, batch_size: int = 32) -> list | np.ndarray:
        """Class indices per pixel, at each image's own size.

        Args:
            images: as for `predict`.
            batch_size: images per onnxruntime call. Defaults to `32`.

        Returns:
            `(n, h, w)` int64 masks for an array input; a list of `(h_i, w_i)`
            masks for a list of images of different sizes. Multilabel models
            give `(…, classes)` 0/1 masks (probability >= 0.5).
        """
        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch = [images] if single else images
        sizes = [np.shape(image)[:2] for image in batch]
        probabilities = self.predict(list(batch) if isinstance(batch, list)
                                     else batch, batch_size=batch_size)
        masks = []
        for probability, size in zip(probabilities, sizes, strict=True):
            if self.task == "multilabel":
                planes = (probability >= 0.5).astype("uint8")
                mask = np.stack([resize_masks(planes[..., c], size)
                                 for c in range(planes.shape[-1])], axis=-1)
            else:
                mask = resize_masks(probability.argmax(axis=-1), size)
            masks.append(mask.astype("int64"))
        if single:
            return masks[0]
        if isinstance(images, np.ndarray):
            return np.stack(masks)
        return masks

    def predict_files(self, paths_or_folder: Any, output_dir: str | None = None,
                      batch_size: int = 8, **unused: Any) -> list[dict[str, Any]]:
        """Predicts image files; optionally writes `<stem>.png` masks.

        Args:
            paths_or_folder: a folder, a file or a list of files.
            output_dir: where to write the mask PNGs (created). Defaults to
                `None` (not written).
            batch_size: images decoded and run at once. Defaults to `8`.

        Returns:
            One dict per readable image: `{"path", "mask", "mask_path",
            "class_pixels": {class: count}}`.
        """
        from kerastransfer.io import atomic_write_bytes
        from kerastransfer.runtime.files import list_image_files

        Image = _pil()
        paths = list_image_files(paths_or_folder)
        results, self.skipped = [], []
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
        for start in range(0, len(paths), batch_size):
            images, good = [], []
            for path in paths[start:start + batch_size]:
                try:
                    with Image.open(path) as image:
                        images.append(np.asarray(image.convert("RGB"), "float32"))
                    good.append(path)
                except Exception as error:  # noqa: BLE001 - PIL raises many types
                    self.skipped.append((path, f"{type(error).__name__}: {error}"))
            if not images:
                continue
            for path, mask in zip(good, self.predict_masks(images), strict=True):
                mask_path = None
                if output_dir is not None:
                    stem = os.path.splitext(os.path.basename(path))[0]
                    mask_path = os.path.join(output_dir, f"{stem}.png")
                    atomic_write_bytes(mask_path, mask_to_png(mask))
                counts = np.bincount(mask.ravel(), minlength=len(self.class_names))
                results.append({"path": path, "mask": mask, "mask_path": mask_path,
                                "class_pixels": {n: int(c) for n, c in zip(
                                    self.class_names, counts, strict=False)}})
        return results

    def encode_mask(self, mask: np.ndarray, form: str = "png") -> Any:
        """A mask for JSON: `"png"` (base64 PNG) or `"indices"` (nested lists)."""
        if form == "png":
            return base64.b64encode(mask_to_png(mask)).decode("ascii")
        return np.asarray(mask).tolist()
