"""Augmentation: presets of Keras preprocessing layers, mapped over `tf.data`.

Augmentation is a `tf.data` map of Keras preprocessing layers called with
`training=True`: it runs only on training batches and is never part of the model
that gets saved or exported (nothing to strip before export).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AUGMENTATION_PRESETS", "augmentation_layers", "augment_dataset"]

# Augmentation presets: (layer class name, kwargs), images in [0, 255].
AUGMENTATION_PRESETS: dict[str, list[tuple[str, dict]]] = {
    "light": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.03}),
    ],
    "medium": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.08}),
        ("RandomZoom", {"height_factor": 0.15}),
        ("RandomContrast", {"factor": 0.2, "value_range": (0, 255)}),
    ],
    "heavy": [
        ("RandomFlip", {"mode": "horizontal"}),
        ("RandomRotation", {"factor": 0.15}),
        ("RandomZoom", {"height_factor": 0.25}),
        ("RandomTranslation", {"height_factor": 0.1, "width_factor": 0.1}),
        ("RandomContrast", {"factor": 0.35, "value_range": (0, 255)}),
        ("RandomBrightness", {"factor": 0.2, "value_range": (0, 255)}),
    ],
}


def augmentation_layers(preset: str | Sequence | None, seed: int | None = None):
    """The Keras preprocessing layers of an augmentation preset.

    Args:
        preset: `"light"`, `"medium"`, `"heavy"`, `None`, a Keras layer, or a
            list of Keras layers used as given.
        seed: seed of the random layers (layer `i` gets `seed + i`). Defaults
            to `None`.

    Returns:
        A `keras.Sequential` (the layer itself for a layer, `None` for
        `preset=None`).

    Raises:
        ValueError: an unknown preset name.
        TypeError: anything else than the above.

    Example:

    >>> layers = augmentation_layers("light", seed=1)  # doctest: +SKIP
    >>> [type(layer).__name__ for layer in layers.layers]  # doctest: +SKIP
    ['RandomFlip', 'RandomRotation']
    """
    import keras

    if preset is None:
        return None
    if isinstance(preset, keras.Layer):
        return preset
    if isinstance(preset, str):
        if preset not in AUGMENTATION_PRESETS:
            raise ValueError(
                f"Unknown augmentation preset. Use one of "
                f"{sorted(AUGMENTATION_PRESETS)} or None. Received: "
                f"augmentation={preset!r}"
            )
        layers = [getattr(keras.layers, name)(**kwargs, seed=None if seed is None
                                               else seed + i)
                  for i, (name, kwargs) in enumerate(AUGMENTATION_PRESETS[preset])]
        return keras.Sequential(layers, name=f"augmentation_{preset}")
    if isinstance(preset, Sequence):
        return keras.Sequential(list(preset), name="augmentation")
    raise TypeError("augmentation must be a preset name, a list of Keras layers or "
                    f"None. Received: augmentation={preset!r}")


def augment_dataset(dataset, preset, *, seed: int | None = None):
    """Applies an augmentation preset to the images of a `(x, y[, w])` dataset.

    The layers run in the `tf.data` pipeline with `training=True`, so they never
    become part of the model (nothing to strip before export).

    Args:
        dataset: a batched `tf.data.Dataset`.
        preset: as for `augmentation_layers`.
        seed: seed of the random layers. Defaults to `None`.

    Returns:
        The augmented dataset (the same dataset for `preset=None`).

    Example:

    >>> train = augment_dataset(data.train, "medium", seed=1)  # doctest: +SKIP
    """
    import tensorflow as tf

    if hasattr(preset, "map_dataset"):
        # A joint (image, target) augmentation, e.g. segmentation's
        # (kerastransfer/data/segmentation_augment.py): it maps the pairs itself.
        return preset.map_dataset(dataset, seed=seed)
    layers = augmentation_layers(preset, seed)
    if layers is None:
        return dataset

    def apply(x, *rest):
        return (layers(x, training=True), *rest)

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
