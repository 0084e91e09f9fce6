"""The `kerastransfer` command line: thin commands over the public API.

One module per command (`backbones.py`, `train.py`, `export.py`, `predict.py`,
`evaluate.py`, `info.py`, `benchmark.py`); what they share (error handling,
logging, parameter types, JSON output, the quiet TensorFlow import) is in
`_common.py`; the click group is here.

Commands that only deploy (`backbones`, `info x.onnx`, `predict x.onnx`,
`benchmark`) never import TensorFlow: everything TensorFlow-heavy is imported
inside the commands that need it.

Exit codes: 0 success, 1 a runtime failure (bad data, corrupt model, failed
export...; one line on stderr, `--debug` shows the traceback), 2 a usage error
(a bad option or argument, named in the message).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

# The command modules stay attributes of this package (`kerastransfer.cli.train`
# is the module, its command is `kerastransfer.cli.train.train`).
from kerastransfer.cli import (
    backbones,
    benchmark,
    evaluate,
    explain,
    export,
    info,
    predict,
    train,
)
from kerastransfer.cli._common import Group, configure_logging

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True,
              help="Show the full Python traceback when a command fails.")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.option("-v", "--verbose", count=True,
              help="More log output: -v progress, -vv debug (with tf2onnx and "
                   "TensorFlow's own start-up logs).")
@click.version_option(package_name="kerastransfer", prog_name="kerastransfer")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, verbose: int) -> None:
    """Transfer learning with Keras 3, exported to ONNX.

    \b
    Examples:
      kerastransfer backbones
      kerastransfer train data/ --backbone mobilenet_v3_small --weights imagenet \\
          --image-size 224 --epochs 5 --fine-tune-epochs 5 --out model.keras
      kerastransfer export model.keras model.onnx
      kerastransfer predict model.onnx cat.jpg dog.jpg --top-k 3
      kerastransfer evaluate model.keras data/test/
      kerastransfer explain model.keras scan.dcm --out cam.png
      kerastransfer info model.onnx
      kerastransfer benchmark model.onnx --batch-size 1 --runs 100
    """
    if quiet and verbose:
        raise click.BadParameter("Use --quiet or --verbose, not both.",
                                 param_hint="'--quiet' / '--verbose'")
    ctx.meta["kerastransfer.debug"] = debug
    ctx.meta["kerastransfer.quiet"] = quiet
    ctx.meta["kerastransfer.verbose"] = verbose
    configure_logging(ctx, quiet, verbose)


for _module in (backbones, train, export, predict, evaluate, explain, info, benchmark):
    cli.add_command(getattr(_module, _module.__name__.rsplit(".", 1)[-1]))
del _module


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    cli.main(args=list(argv) if argv is not None else None,
             prog_name="kerastransfer")


if __name__ == "__main__":
    main()
