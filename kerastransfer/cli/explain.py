"""`kerastransfer explain`: Grad-CAM overlays of image files (DICOM, NIfTI,
PNG, ...) for a .keras image classifier (`kerastransfer.report.explain`)."""

from __future__ import annotations

import os

import click

from kerastransfer.cli._common import (
    check_out_path,
    import_tensorflow_quietly,
    model_kind,
)


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("image", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", default="cam.png", show_default=True,
              help="The overlay PNG to write.")
@click.option("--class", "class_name", default=None,
              help="The class to explain (name or index). Default: the predicted "
                   "class.")
@click.option("--method", type=click.Choice(["gradcam", "gradcam++"]),
              default="gradcam", show_default=True)
@click.option("--layer", default=None,
              help="The target layer. Default: the backbone's Grad-CAM layer from "
                   "the registry.")
def explain(model_path, image, out, class_name, method, layer):
    """Write a Grad-CAM overlay of IMAGE for a .keras MODEL.

    IMAGE is read as in training and prediction (DICOM and NIfTI in their own
    units, 16-bit PNG/TIFF kept); the overlay shows it through the model's
    intensity window when it has one. Prints the explained class and its
    probability.

    \b
    Examples:
      kerastransfer explain model.keras scan.dcm --out cam.png
      kerastransfer explain model.keras photo.jpg --class cat --method gradcam++
    """
    model_kind(model_path, "'MODEL'", (".keras",))
    out = check_out_path(out, ".png", "'--out'")
    import_tensorflow_quietly()
    import numpy as np
    from PIL import Image

    from kerastransfer.io import atomic_path
    from kerastransfer.report.explain import display_image, overlay
    from kerastransfer.report.explain import explain as grad_cam
    from kerastransfer.runtime.files import decode_images
    from kerastransfer.saving import load_model

    model = load_model(model_path)
    shape = tuple(getattr(model, "image_shape", ()) or ())
    if len(shape) != 3 or None in shape[:2]:
        raise click.BadParameter(
            "explain needs an image model with a fixed input size. Received: "
            f"input shape {shape}", param_hint="'MODEL'")
    images, failed = decode_images([image], shape[:2], channels=shape[-1])
    if failed:
        raise click.ClickException(f"Cannot read the image: {failed[0][1]}")
    names = list(model.class_names)
    index = None
    if class_name is not None:
        if class_name in names:
            index = names.index(class_name)
        elif class_name.isdigit() and int(class_name) < len(names):
            index = int(class_name)
        else:
            raise click.BadParameter(
                f"Unknown class. Use one of {names} or an index below {len(names)}. "
                f"Received: {class_name!r}", param_hint="'--class'")
    try:
        heat = grad_cam(model, images, class_index=index, layer=layer, method=method)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    probabilities = np.asarray(model.predict(images, verbose=0))[0]
    if index is None:
        index = int(np.argmax(probabilities))
    with atomic_path(out, ".png") as tmp:
        Image.fromarray(overlay(display_image(model, images[0]), heat[0])).save(
            tmp, format="PNG")
    click.echo(f"{os.path.basename(image)}: {names[index]} "
               f"{float(probabilities[index]):.3f} -> {out}")
