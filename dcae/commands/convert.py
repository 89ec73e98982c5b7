"""``dcae convert IN OUT --to {dcae,official,compressai}``: checkpoint layouts.

Reads a checkpoint in any layout (the official ``train.py`` files
``{"state_dict": ...}``, possibly with ``module.`` prefixes; CompressAI's own
DCAE port; dcae files, the shipped ``.pt.xz`` files) with
:func:`dcae.pretrained.read_checkpoint` (``torch.load(weights_only=True)``)
and writes it in the requested one:

- ``dcae``: ``{"config": ..., "state_dict": ...}`` as
  :func:`dcae.pretrained.save_checkpoint` writes it (loadable by every dcae
  tool and by ``compressai.utils.eval_model``);
- ``official``: ``{"state_dict": ...}`` as the official ``train.py`` writes it
  (``eval.py`` of LabShuHangGU/DCAE reads it);
- ``compressai``: a plain state dict for ``compressai.models.dcae.DCAE``.

Every conversion is exact (tensors are copied, never recomputed).  The result
is checked by building the model it describes unless ``--no-verify``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

import torch

from ..errors import DCAEError, ModelMismatchError

__all__ = ["HELP", "add_arguments", "convert_file", "run"]

HELP = "convert a checkpoint between the dcae, official and CompressAI-port layouts"

LAYOUTS = ("dcae", "official", "compressai")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dcae convert`` arguments to ``parser``."""
    parser.add_argument("input", type=Path, help="checkpoint to convert (any layout)")
    parser.add_argument("output", type=Path, help="file to write")
    parser.add_argument(
        "--to", choices=LAYOUTS, default="dcae", help="target layout (default: %(default)s)"
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip building a model from the result (faster for the paper model)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def convert_file(
    src: Path, dst: Path, to: str = "dcae", verify: bool = True, force: bool = False
) -> Dict[str, Any]:
    """Convert checkpoint ``src`` to layout ``to`` and write it to ``dst``.

    Returns a summary: source and target layouts, number of tensors, config.

    Raises:
        DCAEError: unreadable input, unknown layout, or ``dst`` exists
            without ``force``.
    """
    from ..convert import config_of, detect_layout, to_layout
    from ..model import DCAEModel
    from ..pretrained import read_checkpoint

    if to not in LAYOUTS:
        raise ValueError(f"--to must be one of {LAYOUTS}, got {to!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DCAEError(f"{src} does not exist")
    if dst.exists() and not force:
        raise DCAEError(f"{dst} exists; pass --force to overwrite it")
    obj = {"state_dict": read_checkpoint(src)["state_dict"]}  # any layout, shipped files too
    source = detect_layout(obj)
    sd = to_layout(obj, to)
    cfg = config_of(sd)
    if verify:
        model = DCAEModel(cfg)
        try:
            model.load_state_dict(to_layout(sd, "dcae"))
        except RuntimeError as e:
            raise ModelMismatchError(f"{src} does not fit the model it describes: {e}") from e
    if to == "dcae":
        out: Any = {"config": cfg.to_dict(), "state_dict": sd}
    elif to == "official":
        out = {"state_dict": sd}
    else:
        out = sd
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    return {"from": source, "to": to, "tensors": len(sd), "config": cfg}


def run(args: argparse.Namespace) -> int:
    """Run ``dcae convert``; returns 0."""
    info = convert_file(
        args.input, args.output, to=args.to, verify=not args.no_verify, force=args.force
    )
    print(
        f"{args.input} ({info['from']} layout) -> {args.output} ({info['to']} layout), "
        f"{info['tensors']} tensors, M={info['config'].M}, "
        f"slices={info['config'].slice_sizes or info['config'].num_slices}"
    )
    return 0
