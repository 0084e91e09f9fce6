"""Grad-CAM explanations: where in the image the model looked for a class.

`explain(model, images)` (Selvaraju et al., 2017): the class score's gradients
with respect to a convolutional feature map, averaged over space, weight the map's
channels; the ReLU of the weighted sum, upsampled to the image and scaled to
[0, 1], is the heatmap. Grad-CAM++ (`method="gradcam++"`, Chattopadhyay et al.,
2018) weights positive gradients with its closed-form alphas (exponential-score
form), which separates several instances better. The target layer is taken from
the registry (`BackboneSpec.gradcam_layer`: the last feature map before spatial
pooling, e.g. `block5_conv3` for VGG16); when the spec names none, the backbone's
output if it is a feature map, else its last layer with a rank-4 output.
`plot_class_overlays` draws the overlays of a few validation images per class
for the training report (`gradcam.png`).
"""

from __future__ import annotations

import logging
import os

import numpy as np

__all__ = ["explain", "target_layer", "overlay", "display_image",
           "plot_class_overlays"]

logger = logging.getLogger("kerastransfer")


def target_layer(model, layer: str | None = None):
    """The layer Grad-CAM differentiates, and whether it is inside the backbone.

    Args:
        model: a task (its `backbone` and `backbone_spec`) or a Keras model.
        layer: a layer name. Defaults to `None` (the registry's
            `gradcam_layer`, else the backbone's feature-map output).

    Returns:
        `(layer, inside_backbone)`.

    Raises:
        ValueError: the backbone has no layer with a rank-4 output, or `layer`
            names no such layer.
    """
    backbone = getattr(model, "backbone", None)
    spec = getattr(model, "backbone_spec", None)
    if layer is None and backbone is not None and getattr(spec, "gradcam_layer", None):
        layer = spec.gradcam_layer  # the registry's target for this family
    if layer is not None:
        holder = backbone if backbone is not None and layer in [
            sub.name for sub in getattr(backbone, "layers", [])] else model
        found = holder.get_layer(layer)
        if len(found.output.shape) != 4:
            raise ValueError(f"Grad-CAM needs a layer with a feature-map output "
                             f"(batch, h, w, c). Received: layer={layer!r} with "
                             f"output shape {found.output.shape}")
        return found, holder is backbone
    layers = [sub for sub in getattr(backbone or model, "layers", [])
              if type(sub).__name__ != "InputLayer"]
    convs = [i for i, sub in enumerate(layers)
             if len(getattr(getattr(sub, "kernel", None), "shape", ())) == 4]
    candidates = [sub for sub in layers[convs[0]:] if len(sub.output.shape) == 4
                  ] if convs else []
    if not candidates:
        name = getattr(backbone, "name", getattr(model, "name", "?"))
        raise ValueError(
            "Grad-CAM needs a convolutional layer (a feature-map output), but the "
            "backbone has none. Explain a model with a convolutional backbone. "
            f"Received: backbone={name!r}")
    if backbone is not None and len(backbone.output.shape) == 4:
        return backbone, True
    return candidates[-1], backbone is not None


def explain(model, images, class_index: int | None = None, *, layer: str | None = None,
            method: str = "gradcam") -> np.ndarray:
    """Grad-CAM heatmaps of `images` for a class.

    Args:
        model: a `TransferModel` (or a Keras model whose `backbone` attribute or
            layers give a convolutional feature map).
        images: `(n, h, w, c)` images, as the model takes them.
        class_index: the class to explain. Defaults to `None` (each image's
            predicted class).
        layer: the target layer's name. Defaults to `None` (see `target_layer`).
        method: `"gradcam"` or `"gradcam++"`. Defaults to `"gradcam"`.

    Returns:
        float32 heatmaps `(n, h, w)` in [0, 1].

    Raises:
        ValueError: no convolutional layer, or an unknown method.
    """
    import keras
    import tensorflow as tf

    if method not in ("gradcam", "gradcam++"):
        raise ValueError("method must be 'gradcam' or 'gradcam++'. "
                         f"Received: method={method!r}")
    found, inside = target_layer(model, layer)
    x = np.asarray(images, dtype="float32")
    # A task is preprocessor -> backbone -> head layers (kerastransfer/tasks/base.py):
    # run those parts, with the target's output taken inside the backbone.
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        grad_model = keras.Model(model.inputs, [found.output, model.outputs[0]])
        forward = lambda batch: grad_model(batch, training=False)  # noqa: E731
    else:
        target = backbone.output if found is backbone else found.output
        tail = keras.Model(backbone.inputs, [target, backbone.output])
        preprocessor = getattr(model, "preprocessor", None)

        def forward(batch):
            if preprocessor is not None:
                batch = preprocessor(batch)
            fmap, x = tail(batch, training=False)
            for head_layer in model.head_layers:
                x = head_layer(x, training=False)
            return fmap, x

    with tf.GradientTape() as tape:
        fmap, predictions = forward(tf.convert_to_tensor(x))
        tape.watch(fmap)
        index = (tf.argmax(predictions, axis=-1) if class_index is None
                 else tf.fill([tf.shape(predictions)[0]], int(class_index)))
        score = tf.gather(predictions, index, batch_dims=1)
    grads = tape.gradient(score, fmap)
    if method == "gradcam":
        weights = tf.reduce_mean(grads, axis=(1, 2))
    else:
        g2, g3 = grads ** 2, grads ** 3
        denom = 2.0 * g2 + tf.reduce_sum(fmap, axis=(1, 2), keepdims=True) * g3
        alphas = g2 / tf.where(denom != 0.0, denom, tf.ones_like(denom))
        weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2))
    cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", fmap, weights))[..., None]
    cam = tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0).astype("float32")


def overlay(image, heatmap, alpha: float = 0.45) -> np.ndarray:
    """A uint8 RGB overlay of a heatmap (matplotlib's "jet") on an image.

    Args:
        image: `(h, w, c)` image; 1 or more channels (the first three shown,
            1 channel as gray), min-max scaled for display.
        heatmap: `(h, w)` in [0, 1].
        alpha: the heatmap's opacity. Defaults to `0.45`.
    """
    from matplotlib import colormaps

    img = np.asarray(image, dtype="float32")
    img = np.repeat(img[..., :1], 3, -1) if img.shape[-1] < 3 else img[..., :3]
    low, high = float(img.min()), float(img.max())
    img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    colors = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    return np.uint8(np.round(255 * ((1 - alpha) * img + alpha * colors)))


def display_image(model, image) -> np.ndarray:
    """An image as the model sees it: through its intensity window, if any
    (a CT scan in Hounsfield units is shown as the lung window shows it)."""
    window = getattr(model, "window", None)
    if window is None:
        return np.asarray(image, dtype="float32")
    from kerastransfer.runtime.preprocess import apply_window

    return apply_window(np.asarray(image, dtype="float32"), window)


def _class_examples(validation_data, task: str, classes: int, per_class: int):
    """Up to `per_class` validation images for each class: `{class: [image]}`.

    Reads batches only until every class is filled (a multilabel image counts
    for each of its positive labels)."""
    if isinstance(validation_data, (tuple, list)):
        batches = [(validation_data[0], validation_data[1])]
    else:
        batches = ((element[0], element[1]) for element in validation_data)
    found: dict[int, list] = {c: [] for c in range(classes)}
    for images, labels in batches:
        images, labels = np.asarray(images), np.asarray(labels)
        for image, label in zip(images, labels, strict=True):
            if task == "multilabel":
                positives = np.flatnonzero(label.reshape(-1)[:classes] > 0.5)
            else:  # class indices, or one-hot rows
                positives = [int(np.argmax(label)) if label.ndim else int(label)]
            for c in positives:
                if c < classes and len(found[c]) < per_class:
                    found[c].append(image)
        if all(len(v) == per_class for v in found.values()):
            break
    return {c: np.stack(v) for c, v in found.items() if v}


def plot_class_overlays(model, validation_data, path: str, *, per_class: int = 2,
                        max_classes: int = 12, method: str = "gradcam") -> str | None:
    """Writes Grad-CAM overlays of a few validation images per class (one PNG).

    One row per class (the first `max_classes` classes that have validation
    images), `per_class` images each, every heatmap for the row's class and
    titled with the model's probability of it.

    Args:
        model: a `TransferModel` on images.
        validation_data: `(x, y)` arrays or a dataset of `(images, labels)`.
        path: the PNG to write.
        per_class: images per class. Defaults to `2`.
        max_classes: the most classes drawn. Defaults to `12`.
        method: `"gradcam"` or `"gradcam++"`. Defaults to `"gradcam"`.

    Returns:
        `path`, or `None` when the model cannot be explained (not an image
        model, or a backbone without a convolutional layer; logged).
    """
    shape = tuple(getattr(model, "image_shape", ()) or ())
    if len(shape) != 3 or getattr(model, "backbone", None) is None or any(
            "string" in str(t.dtype) for t in getattr(model, "inputs", [])):
        return None
    try:
        target_layer(model)
    except ValueError as error:
        logger.info("No Grad-CAM overlays in the report: %s", error)
        return None
    from kerastransfer.report.plots import pyplot, save_figure

    plt = pyplot()
    names = [str(n) for n in getattr(model, "class_names", [])]
    classes = min(len(names), max_classes)
    examples = _class_examples(validation_data, getattr(model, "task", "multiclass"),
                               classes, per_class)
    if not examples:
        return None
    fig, axes = plt.subplots(len(examples), per_class, squeeze=False,
                             figsize=(max(3.0, 2.2 * per_class),
                                      max(3.0, 2.2 * len(examples))), dpi=100)
    for row, (c, images) in zip(axes, examples.items(), strict=True):
        heat = explain(model, images, class_index=c, method=method)
        probability = np.asarray(model(images, training=False))[:, c]  # no retrace
        for ax, image, h, p in zip(row, images, heat, probability, strict=False):
            ax.imshow(overlay(display_image(model, image), h))
            ax.set_title(f"{names[c]}  p={p:.2f}", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"{method}: where the model looked for each class", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, os.fspath(path))
