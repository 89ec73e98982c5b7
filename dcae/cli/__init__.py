"""The ``dcae`` command line: ``dcae compress|decompress|eval|train|convert``.

Each subcommand lives in its module (:mod:`dcae.cli.compress`,
:mod:`dcae.cli.decompress`, :mod:`dcae.cli.eval`, :mod:`dcae.cli.train`,
:mod:`dcae.cli.convert`) and provides ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; what they share is
:mod:`dcae.cli.jobs`.  The parsers
import neither torch nor CompressAI (``dcae --help`` starts in 0.1 s); the
commands import what they use when they run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import List, Optional

from ..errors import DCAEError

__all__ = ["main"]

COMMANDS = ("compress", "decompress", "eval", "train", "convert")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per available command."""
    from ..version import __version__

    parser = argparse.ArgumentParser(
        prog="dcae", description="DCAE learned image compression (Lu et al., CVPR 2025)."
    )
    parser.add_argument("--version", action="version", version=f"dcae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"dcae.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name != f"dcae.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            # compressai 1.2.x scripts a helper at import time, which torch >= 2.10
            # flags as deprecated: a warning about CompressAI, not for the user of
            # the command (the filter is this command's, restored when it returns)
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.script.*", category=FutureWarning
            )
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("dcae: interrupted", file=sys.stderr)
        return 130
    except (DCAEError, OSError, ValueError) as e:
        message = " ".join(str(e).split())  # always one line
        if len(message) > 400:
            message = message[:397] + "..."
        print(f"dcae: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
