"""``dcae train``: rate-distortion training (see :mod:`dcae.train`)."""

from __future__ import annotations

import argparse

from ..train import add_arguments as _add_arguments
from ..train import config_from_args, train

__all__ = ["HELP", "add_arguments", "run"]

HELP = "train a DCAE model on a folder of images (torchrun for DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dcae train`` arguments to ``parser``."""
    _add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run training; returns 0."""
    train(config_from_args(args))
    return 0
