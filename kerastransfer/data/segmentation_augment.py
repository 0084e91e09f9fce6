"""Joint image + mask augmentation for segmentation, in the `tf.data` pipeline.

A flip, rotation or crop must move the mask exactly as it moves the image. Each
example gets one random geometric transform (flips, a rotation, a zoom-in crop
at a random position), applied with `ImageProjectiveTransformV3` to the image
(bilinear) and to the mask (nearest-neighbour: class indices stay indices),
both with reflected borders. It runs on training batches only (a `tf.data`
map), never in the saved model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SegmentationAugmentation", "SEGMENTATION_PRESETS"]

SEGMENTATION_PRESETS = {
    "light": dict(horizontal_flip=True, rotation=0.03, crop=0.0),
    "medium": dict(horizontal_flip=True, rotation=0.08, crop=0.15),
    "heavy": dict(horizontal_flip=True, vertical_flip=True, rotation=0.15, crop=0.3),
}


@dataclass(frozen=True)
class SegmentationAugmentation:
    """Random flips, rotations and crops applied to images and masks together.

    Args:
        horizontal_flip: flip left-right with probability 0.5. Defaults to
            `True`.
        vertical_flip: flip upside-down with probability 0.5. Defaults to
            `False`.
        rotation: largest rotation, as a fraction of a full turn (0.08 = 29
            degrees), as `keras.layers.RandomRotation`'s factor. Defaults to
            `0.0`.
        crop: largest share of the side cut away by a random crop (zoomed back
            to full size). Defaults to `0.0`.
        seed: seed of the random transforms. Defaults to `None`.

    Example:

    >>> augmentation = SegmentationAugmentation(
    ...     rotation=0.05, crop=0.2)  # doctest: +SKIP
    >>> model.fit(images, masks, augmentation=augmentation)  # doctest: +SKIP
    """

    horizontal_flip: bool = True
    vertical_flip: bool = False
    rotation: float = 0.0
    crop: float = 0.0
    seed: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.rotation <= 0.5 or not 0.0 <= self.crop < 1.0:
            raise ValueError(
                "rotation must be in [0, 0.5] and crop in [0, 1). Received: "
                f"rotation={self.rotation}, crop={self.crop}")

    @classmethod
    def preset(cls, name: str, seed: int | None = None) -> SegmentationAugmentation:
        """One of `SEGMENTATION_PRESETS` (`"light"`, `"medium"`, `"heavy"`)."""
        if name not in SEGMENTATION_PRESETS:
            raise ValueError(
                f"Unknown augmentation preset. Use one of "
                f"{sorted(SEGMENTATION_PRESETS)}, a SegmentationAugmentation or "
                f"None. Received: augmentation={name!r}")
        return cls(**SEGMENTATION_PRESETS[name], seed=seed)

    def transforms(self, batch, height: int, width: int):
        """Random `(batch, 8)` projective transforms (output -> input pixel)."""
        import tensorflow as tf

        seed = None if self.seed is None else self.seed

        def uniform(low, high, salt):
            return tf.random.uniform((batch,), low, high,
                                     seed=None if seed is None else seed + salt)

        def sign(enabled, salt):
            if not enabled:
                return tf.ones((batch,))
            return tf.where(uniform(0.0, 1.0, salt) < 0.5, -1.0, 1.0)

        angle = uniform(-self.rotation, self.rotation, 1) * 2.0 * math.pi
        scale = uniform(1.0 - self.crop, 1.0, 2)
        fx, fy = sign(self.horizontal_flip, 3), sign(self.vertical_flip, 4)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        tx = uniform(-1.0, 1.0, 5) * (1.0 - scale) * cx
        ty = uniform(-1.0, 1.0, 6) * (1.0 - scale) * cy
        cos, sin = tf.cos(angle), tf.sin(angle)
        a0, a1 = cos * scale * fx, -sin * scale * fy
        b0, b1 = sin * scale * fx, cos * scale * fy
        a2 = cx + tx - a0 * cx - a1 * cy
        b2 = cy + ty - b0 * cx - b1 * cy
        zeros = tf.zeros((batch,))
        return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def __call__(self, images, masks):
        """Transforms a batch of images `(n, h, w, c)` and masks `(n, h, w)` or
        `(n, h, w, k)` with the same random transform per example."""
        import tensorflow as tf

        shape = tf.shape(images)
        transforms = self.transforms(shape[0], images.shape[1], images.shape[2])
        size = shape[1:3]

        def warp(x, interpolation):
            return tf.raw_ops.ImageProjectiveTransformV3(
                images=x, transforms=transforms, output_shape=size,
                interpolation=interpolation, fill_mode="REFLECT",
                fill_value=0.0)

        out_images = warp(tf.cast(images, tf.float32), "BILINEAR")
        squeeze = masks.shape.rank == 3
        m = masks[..., None] if squeeze else masks
        out_masks = tf.cast(warp(tf.cast(m, tf.float32), "NEAREST"), masks.dtype)
        return out_images, (out_masks[..., 0] if squeeze else out_masks)

    def map_dataset(self, dataset, seed: int | None = None):
        """Maps the augmentation over a batched `(images, masks[, weights])`
        dataset (the hook `kerastransfer.data.augment.augment_dataset` calls)."""
        import tensorflow as tf

        def apply(x, y, *rest):
            return (*self(x, y), *rest)

        return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
