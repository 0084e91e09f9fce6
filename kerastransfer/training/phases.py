"""What is trainable, when, and at which learning rate.

* `Unfreeze` rules say which part of a backbone trains: `"all"`, the top N layers
  (`"top:20"` or `20`), everything from a named layer (`"from:conv5_block1_1_conv"`),
  the top N natural blocks (`"blocks:2"`), the top N blocks after the stem
  (`"top_layers:2"`: transformer layers, counted without the embeddings), or a
  fraction (`"fraction:0.3"` or `0.3`).
* `freeze_backbone()` and `unfreeze()` apply them to a `TransferModel`. BatchNorm
  layers stay frozen (inference mode, moving statistics fixed) unless
  `train_bn=True`: in Keras 3 a BatchNormalization layer with `trainable=False` runs
  in inference mode, while calling the backbone with `training=False` does *not*
  stop its moving statistics from updating during `fit()` (docs/design.md, fact 1).
* `Phase` and `PhasePlan` (kerastransfer/training/plan.py, re-exported here)
  describe a fine-tuning schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras

__all__ = [
    "Unfreeze",
    "freeze_layers",
    "unfreeze_layers",
    "iter_layers",
    "freeze_backbone",
    "unfreeze",
    "backbone_blocks",
    "trainable_summary",
    "learning_rate_groups",
]

_KINDS = ("all", "none", "top", "from", "blocks", "fraction", "top_layers")


@dataclass(frozen=True)
class Unfreeze:
    """Which part of the backbone to unfreeze.

    Args:
        kind: `"all"`, `"none"`, `"top"` (N layers with weights, counted from the
            output), `"from"` (a layer name and everything after it), `"blocks"`
            (the top N natural blocks), `"top_layers"` (the top N blocks after
            the stem: transformer layers) or `"fraction"` (the top share of
            layers with weights).
        value: N, the layer name, or the fraction. Defaults to `None`.

    Example:

    >>> Unfreeze.parse("blocks:2")
    Unfreeze(kind='blocks', value=2)
    >>> Unfreeze.parse(0.25).to_string()
    'fraction:0.25'
    """

    kind: str
    value: Any = None

    @classmethod
    def parse(cls, rule: Unfreeze | str | int | float | dict | None) -> Unfreeze:
        """Reads a rule from its string, number or dict form."""
        if isinstance(rule, Unfreeze):
            return rule
        if rule is None:
            return cls("none")
        if isinstance(rule, dict):
            return cls.parse_parts(rule.get("kind"), rule.get("value"), rule)
        if isinstance(rule, bool):
            return cls("all" if rule else "none")
        if isinstance(rule, int):
            return cls.parse_parts("top", rule, rule)
        if isinstance(rule, float):
            return cls.parse_parts("fraction", rule, rule)
        if isinstance(rule, str):
            kind, _, value = rule.partition(":")
            return cls.parse_parts(kind.strip().lower(), value.strip() or None, rule)
        raise TypeError(
            "An unfreeze rule must be a string such as 'all', 'top:20', "
            "'from:<layer>', 'blocks:2' or 'fraction:0.3', an int (top N layers) "
            f"or a float (fraction). Received: unfreeze={rule!r}"
        )

    @classmethod
    def parse_parts(cls, kind, value, original) -> Unfreeze:
        if kind not in _KINDS:
            raise ValueError(
                f"Unknown unfreeze rule. Use one of 'all', 'none', 'top:N', "
                f"'from:<layer name>', 'blocks:N', 'top_layers:N', 'fraction:F'. "
                f"Received: unfreeze={original!r}"
            )
        if kind in ("all", "none"):
            return cls(kind)
        if value is None:
            raise ValueError(
                f"The unfreeze rule {kind!r} needs a value, e.g. '{kind}:2'. "
                f"Received: unfreeze={original!r}"
            )
        if kind in ("top", "blocks", "top_layers"):
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = -1
            if number < 1 or str(value).strip() not in (str(number),):
                raise ValueError(
                    f"The unfreeze rule {kind!r} needs a positive whole number. "
                    f"Received: unfreeze={original!r}"
                )
            return cls(kind, number)
        if kind == "fraction":
            try:
                fraction = float(value)
            except (TypeError, ValueError):
                fraction = -1.0
            if not 0.0 < fraction <= 1.0:
                raise ValueError(
                    "The unfreeze fraction must be in (0, 1]. "
                    f"Received: unfreeze={original!r}"
                )
            return cls(kind, fraction)
        return cls(kind, str(value))

    def to_string(self) -> str:
        """The rule's string form, e.g. `"blocks:2"` (JSON-safe)."""
        return self.kind if self.value is None else f"{self.kind}:{self.value}"


def _backbone_layers(model) -> list[keras.layers.Layer]:
    return [
        layer
        for layer in getattr(model.backbone, "layers", [model.backbone])
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def backbone_blocks(model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """Returns the backbone's natural blocks, input to output, with their layers.

    Raises:
        ValueError: the backbone has no natural blocks.
    """
    rule = model.block_rule
    layers = _backbone_layers(model)
    if rule is None:
        if len(layers) == 1:  # e.g. a TF-Hub model: a single block
            return [("backbone", layers)]
        raise ValueError(
            f"Backbone {model.backbone_name!r} has no natural blocks. Unfreeze by "
            "'top:N', 'from:<layer>', 'fraction:F' or 'all', or register the "
            "backbone with blocks=BlockRule(...). Received: unfreeze='blocks:...'"
        )
    names = rule.assign([layer.name for layer in layers])
    blocks: dict[str, list] = {}
    for layer, block in zip(layers, names, strict=True):
        blocks.setdefault(block, []).append(layer)
    return list(blocks.items())


def iter_layers(layer: keras.layers.Layer, include_self: bool = True):
    """Yields `layer` and every layer nested in it, at any depth.

    Keras 3.15 has no public way to list the layers inside a custom layer (only
    `Model.layers`, one level deep): this is the one place that uses the private
    `Layer._flatten_layers` (tests/test_phases.py checks it still exists).
    """
    yield from layer._flatten_layers(include_self=include_self, recursive=True)


def _set_bn_trainable(layers, trainable: bool) -> None:
    for layer in layers:
        for sub in iter_layers(layer):
            if isinstance(sub, keras.layers.BatchNormalization):
                sub.trainable = trainable
            elif hasattr(sub, "train_bn"):  # BatchNorm inside a SavedModel (TF-Hub)
                sub.train_bn = trainable


def freeze_layers(model) -> None:
    """Freezes the whole backbone (its BatchNorm layers run in inference mode)."""
    model.backbone.trainable = False


def freeze_backbone(model) -> None:
    """Freezes the whole backbone of a task; same as `model.freeze_backbone()`."""
    model.freeze_backbone()


def _select(model, rule: Unfreeze) -> list[keras.layers.Layer]:
    layers = _backbone_layers(model)
    weighted = [layer for layer in layers if layer.weights]
    if rule.kind == "none":
        return []
    if rule.kind == "all":
        return layers
    if rule.kind == "top":
        if rule.value > len(weighted):
            raise ValueError(
                f"Cannot unfreeze the top {rule.value} layers: backbone "
                f"{model.backbone_name!r} has {len(weighted)} layers with weights. "
                f"Use 'all' or a smaller number. Received: unfreeze='top:{rule.value}'"
            )
        first = weighted[-rule.value]
        return layers[layers.index(first):]
    if rule.kind == "fraction":
        count = max(1, math.ceil(rule.value * len(weighted)))
        first = weighted[-count]
        return layers[layers.index(first):]
    if rule.kind == "from":
        names = [layer.name for layer in layers]
        if rule.value not in names:
            from kerastransfer.errors import closest_names

            close = closest_names(rule.value, names)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise ValueError(
                f"No layer named {rule.value!r} in backbone "
                f"{model.backbone_name!r}.{hint} See model.trainable_summary() or "
                f"model.backbone.summary(). Received: unfreeze='from:{rule.value}'"
            )
        return layers[names.index(rule.value):]
    if rule.kind == "top_layers":  # blocks after the stem: transformer layers
        return _top_layers(model, rule.value)
    # blocks
    blocks = backbone_blocks(model)
    if rule.value > len(blocks):
        raise ValueError(
            f"Cannot unfreeze {rule.value} blocks: backbone {model.backbone_name!r} "
            f"has {len(blocks)} ({', '.join(b for b, _ in blocks)}). Use 'all' or "
            f"a smaller number. Received: unfreeze='blocks:{rule.value}'"
        )
    return [layer for _, group in blocks[-rule.value:] for layer in group]


def _top_layers(model, count: int) -> list[keras.layers.Layer]:
    """The layers of the top `count` blocks, not counting the stem (for a
    transformer: its top `count` transformer layers; the embeddings are the
    stem, see kerastransfer/backbones/kerashub.py)."""
    stem = model.block_rule.stem if model.block_rule is not None else None
    blocks = [b for b in backbone_blocks(model) if b[0] != stem]
    if count > len(blocks):
        raise ValueError(
            f"Cannot unfreeze the top {count} layers: backbone "
            f"{model.backbone_name!r} has {len(blocks)} "
            f"({', '.join(b for b, _ in blocks)}). Use 'all' or a smaller number. "
            f"Received: unfreeze='top_layers:{count}'"
        )
    return [layer for _, group in blocks[-count:] for layer in group]


def unfreeze(
    model, rule: Unfreeze | str | int | float = "all", *, train_bn: bool = False
) -> list[str]:
    """Makes part of the backbone trainable; the rest stays frozen.

    Args:
        model: a `TransferModel`.
        rule: an `Unfreeze` rule or its string/number form. Defaults to `"all"`.
        train_bn: also train BatchNorm layers (and update their moving statistics)
            in the unfrozen part. Defaults to `False`: BatchNorm stays in inference
            mode, which is what small fine-tuning data sets need.

    Returns:
        The names of the backbone layers now trainable.

    Example:

    >>> model = TransferModel("resnet50", num_classes=2, weights=None,
    ...                       input_shape=(32, 32, 3))
    >>> names = unfreeze(model, "blocks:1")
    >>> names[0]
    'conv5_block1_1_conv'
    """
    return model.unfreeze(rule, train_bn=train_bn)


def unfreeze_layers(model, rule: Unfreeze, *, train_bn: bool = False) -> list[str]:
    """Sets the backbone layers' `trainable` flags for `rule` (the work behind
    `TransferTask.unfreeze`, which also records the phase state)."""
    selected = _select(model, rule)
    model.backbone.trainable = True
    chosen = {id(layer) for layer in selected}
    for layer in _backbone_layers(model):
        layer.trainable = id(layer) in chosen
    # Both ways: `layer.trainable = True` is skipped when it is already True, so a
    # BatchNorm frozen by an earlier phase would otherwise stay frozen.
    _set_bn_trainable(selected, bool(train_bn))
    if not selected:
        model.backbone.trainable = False
    return [layer.name for layer in selected]


def trainable_summary(model) -> str:
    """A readable account of what trains: per block (or layer group), how many
    layers and parameters are trainable, and the BatchNorm mode."""
    lines = [f"Backbone {model.backbone_name!r}: phase state {model.phase_state}"]
    try:
        groups = backbone_blocks(model)
    except ValueError:
        groups = [("backbone", _backbone_layers(model))]
    for name, layers in groups:
        weighted = [layer for layer in layers if layer.weights]
        trainable = [layer for layer in weighted if layer.trainable_weights]
        params = sum(int(math.prod(w.shape)) for layer in layers
                     for w in layer.trainable_weights)
        bns = [sub for layer in layers for sub in iter_layers(layer)
               if isinstance(sub, keras.layers.BatchNormalization)]
        bn_state = ""
        if bns:
            training = sum(1 for b in bns if b.trainable)
            bn_state = f", BatchNorm: {training}/{len(bns)} training"
        lines.append(
            f"  {name:<24} {len(trainable):>4}/{len(weighted):<4} layers trainable, "
            f"{params:>11,} params{bn_state}"
        )
    head_params = sum(
        int(math.prod(w.shape)) for w in model.trainable_weights
    ) - sum(int(math.prod(w.shape)) for w in model.backbone.trainable_weights)
    lines.append(f"  {'head':<24} {head_params:>29,} params")
    return "\n".join(lines)


def check_lr_decay(lr_decay) -> None:
    """Raises `ValueError` unless `lr_decay` is None or in (0, 1] (the one check)."""
    if lr_decay is not None and not (
            isinstance(lr_decay, (int, float)) and 0.0 < lr_decay <= 1.0):
        raise ValueError(
            f"lr_decay must be in (0, 1]. Received: lr_decay={lr_decay!r}"
        )


def learning_rate_groups(model, lr_decay: float) -> tuple[list[float], list[list[str]]]:
    """Groups the trainable variables for layer-wise learning-rate decay.

    The head trains at the base rate (multiplier 1); the trainable backbone blocks,
    from the top down, at `lr_decay`, `lr_decay**2`, ... (one group for the whole
    backbone when it has no natural blocks).

    Returns:
        `(multipliers, variable_groups)` for `GroupedOptimizer`.
    """
    check_lr_decay(lr_decay)
    backbone_paths = {v.path for v in model.backbone.trainable_weights}
    head = [v.path for v in model.trainable_weights if v.path not in backbone_paths]
    multipliers, groups = [1.0], [head]
    try:
        blocks = backbone_blocks(model)
    except ValueError:
        blocks = [("backbone", _backbone_layers(model))]
    depth = 0
    for _, layers in reversed(blocks):
        paths = [v.path for layer in layers for v in layer.trainable_weights]
        if paths:
            depth += 1
            multipliers.append(lr_decay**depth)
            groups.append(paths)
    return multipliers, groups

