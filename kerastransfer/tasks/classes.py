"""The class list every task head checks the same way: `num_classes` and
`class_names`, either given, consistent, unique."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["resolve_classes"]


def resolve_classes(num_classes, class_names: Sequence | None, *, minimum: int = 1,
                    head: str = "head", missing: str = "Pass num_classes (or "
                    "class_names).", below: str = "", names_must_match: bool = True
                    ) -> tuple[int, list[str]]:
    """Checks and completes a task's `num_classes` and `class_names`.

    Args:
        num_classes: an int, or `None` to take `len(class_names)`.
        class_names: unique names, or `None` for `"0"`, `"1"`, ...
        minimum: the fewest classes the head can learn. Defaults to `1`.
        head: what the head is called in the error (`"multiclass head"`).
            Defaults to `"head"`.
        missing: the error's advice when neither is given.
        below: advice added when `num_classes < minimum`.
        names_must_match: whether `len(class_names)` must equal `num_classes`
            (not for a regression head). Defaults to `True`.

    Returns:
        `(num_classes, class_names)`.

    Raises:
        TypeError: `num_classes` is not an int.
        ValueError: too few classes, names not unique or not one per class.

    Example:

    >>> resolve_classes(None, ["cat", "dog"], minimum=2)
    (2, ['cat', 'dog'])
    """
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names):
            raise ValueError(
                f"class_names must be unique. Received: class_names={class_names}")
    if num_classes is None:
        if class_names is None:
            raise ValueError(f"{missing} Received: num_classes=None")
        num_classes = len(class_names)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(
            f"num_classes must be an int. Received: num_classes={num_classes!r}")
    if num_classes < minimum:
        raise ValueError(f"A {head} needs num_classes >= {minimum}.{below} "
                         f"Received: num_classes={num_classes}")
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    elif names_must_match and len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names but num_classes is "
            f"{num_classes}. Pass one name per class. Received: "
            f"class_names={class_names}")
    return int(num_classes), class_names
