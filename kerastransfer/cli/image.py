"""The CLI's image-classification hooks (`train --task image`, the default): a
`TransferModel` on `DATA_DIR/<class>/*.jpg` (see `cli/tasks.py` for the hook
contract)."""

from __future__ import annotations

import os

import click

from kerastransfer.cli._common import one_line
from kerastransfer.cli.train import check_folder_and_weights, report_classifier


def check(options: dict) -> None:
    """The backbone, image size, channels, window and --unfreeze, checked (and
    completed: `spec`, `image_size`, `channels`, `window`) before any image is
    read or any model built."""
    from kerastransfer.backbones.registry import get_backbone
    from kerastransfer.errors import InputShapeError, UnknownBackboneError

    check_folder_and_weights(options)
    try:
        spec = get_backbone(options["backbone"])
    except UnknownBackboneError as error:
        raise click.BadParameter(one_line(error), param_hint="'--backbone'") from None
    image_size = options["image_size"]
    if image_size is None:
        if spec.default_size is None:
            raise click.BadParameter(
                f"Backbone {spec.name!r} has no default size; pass one.",
                param_hint="'--image-size'",
            )
        image_size = (spec.default_size, spec.default_size)
    window = options["window"]
    if window is not None:  # a preset name, or "center,width"
        from kerastransfer.runtime.preprocess import resolve_window

        try:
            window = resolve_window(window if "," not in window else window.split(","))
        except ValueError as error:
            raise click.BadParameter(one_line(error), param_hint="'--window'") from None
    try:
        spec.resolve_input_shape((*image_size, spec.channels))
    except InputShapeError as error:
        raise click.BadParameter(one_line(error),
                                 param_hint="'--image-size'") from None
    from kerastransfer.training.phases import Unfreeze

    try:
        Unfreeze.parse(options["unfreeze"])
    except ValueError as error:
        raise click.BadParameter(one_line(error), param_hint="'--unfreeze'") from None
    options.update(spec=spec, image_size=tuple(image_size), window=window,
                   channels=options["channels"] or spec.channels)


def load_data(options: dict):
    from kerastransfer.data import load_image_folder

    return load_image_folder(
        options["data_dir"], image_size=options["image_size"],
        batch_size=options["batch_size"], validation_split=options["validation_split"],
        seed=options["seed"], shuffle=True, strict=options["strict"],
        channels=options["channels"],
    )


def build_model(options: dict, data):
    from kerastransfer.tasks.classifier import TransferModel

    return TransferModel(options["spec"].name, weights=options["weights"],
                         input_shape=(*options["image_size"], options["channels"]),
                         class_names=data.class_names, dropout=options["dropout"],
                         window=options["window"])


def fit_arguments(options: dict, data):
    return data.train, {"train_bn": options["train_bn"],
                        "lr_decay": options["lr_decay"],
                        "validation_data": data.validation}


def describe(options: dict, data, model, history) -> None:
    weights = options["weights"]
    report_classifier(
        options, model, history, validation=data.validation,
        num_validation=data.num_validation, unit="images",
        record={
            "image_size": list(options["image_size"]),
            "backbone": options["spec"].name,
            "weights": weights if weights in (None, "imagenet")
            else os.path.abspath(weights),
            "num_train": data.num_train,
        })
