"""`kerastransfer backbones`: the registry's catalog (no model, no TensorFlow)."""

from __future__ import annotations

import click

from kerastransfer.cli._common import echo_json


@click.command()
@click.option("--family", default=None, help="Only this family, e.g. resnet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backbones(family: str | None, as_json: bool) -> None:
    """List the backbone catalog: input sizes, feature dims, preprocessing.

    Reads the registry only: no model is built and nothing is downloaded.

    \b
    Examples:
      kerastransfer backbones
      kerastransfer backbones --family efficientnet --json
    """
    from kerastransfer.backbones.registry import get_backbone, list_backbones

    rows = []
    for name in list_backbones():
        spec = get_backbone(name)
        if family is not None and spec.family != family.lower():
            continue
        rows.append({
            "name": spec.name,
            "family": spec.family,
            "default_size": spec.default_size,
            "min_size": spec.min_size,
            "feature_dim": spec.feature_dim,
            "preprocessing": spec.preprocessing,
            "imagenet": spec.supports_imagenet,
            "aliases": list(spec.aliases),
        })
    if family is not None and not rows:
        families = sorted({get_backbone(n).family for n in list_backbones()})
        raise click.BadParameter(
            f"No backbone of that family. Known families: {', '.join(families)}. "
            f"Received: {family!r}", param_hint="'--family'",
        )
    if as_json:
        echo_json(rows)
        return
    header = ("name", "family", "default", "min", "features", "preprocessing")
    table = [header] + [
        (r["name"], r["family"], str(r["default_size"]), str(r["min_size"]),
         str(r["feature_dim"]), r["preprocessing"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
