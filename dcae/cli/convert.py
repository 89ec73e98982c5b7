"""``dcae convert IN OUT --to {dcae,official,compressai}``: checkpoint layouts.

Reads a checkpoint in any layout (the official ``train.py`` files
``{"state_dict": ...}``, possibly with ``module.`` prefixes; CompressAI's own
DCAE port; dcae files, the shipped ``.pt.xz`` files) with
:func:`dcae.zoo.checkpoints.read_checkpoint` (``torch.load(weights_only=True)``)
and writes it in the requested one:

- ``dcae``: ``{"config": ..., "state_dict": ...}`` as
  :func:`dcae.zoo.checkpoints.save_checkpoint` writes it (loadable by every dcae
  tool and by ``compressai.utils.eval_model``);
- ``official``: ``{"state_dict": ...}`` as the official ``train.py`` writes it
  (``eval.py`` of LabShuHangGU/DCAE reads it);
- ``compressai``: a plain state dict for ``compressai.models.dcae.DCAE``.

Every conversion is exact (tensors are copied, never recomputed).  The
output is written atomically (:func:`dcae.cli.jobs.write_atomic`, as
``dcae compress``): a failure or an interruption leaves no partial file and
an existing ``OUT`` (``--force``) intact.  The result
is checked by building the model it describes unless ``--no-verify``.

A checkpoint of another codec (``--model module:Class|NAME``) converts to the
``dcae`` layout only: the model is loaded (:func:`dcae.zoo.loading.load_model`:
wrappers and ``module.`` prefixes removed), its CDF tables built with
``update(force=True)``, and ``{"architecture": NAME, "state_dict": ...}``
written (:func:`dcae.zoo.loading.save_model`), ready for every dcae tool.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..errors import DCAEError, ModelMismatchError
from .jobs import add_model_argument, write_atomic

__all__ = ["HELP", "add_arguments", "convert_file", "run"]

HELP = (
    "convert a checkpoint between the dcae, official and CompressAI-port layouts "
    "(another codec's checkpoint: --model, to the dcae layout with CDF tables)"
)

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
    add_model_argument(parser)


def convert_file(
    src: Path,
    dst: Path,
    to: str = "dcae",
    verify: bool = True,
    force: bool = False,
    model: Optional[str] = None,
) -> Dict[str, Any]:
    """Convert checkpoint ``src`` to layout ``to`` and write it to ``dst``.

    Returns a summary: source and target layouts, number of tensors, config
    (``None`` for another codec than DCAE).

    Args:
        model: the checkpoint's model when it is not DCAE (``module:Class`` or
            a CompressAI name); only ``to="dcae"`` is possible then.

    Raises:
        DCAEError: unreadable input, unknown layout, or ``dst`` exists
            without ``force``.
    """
    from ..config import DCAEConfig
    from ..models.dcae import DCAEModel
    from ..models.infer_config import config_of
    from ..models.layouts import detect_layout, to_layout
    from ..zoo.checkpoints import read_checkpoint
    from ..zoo.loading import resolve_class

    if to not in LAYOUTS:
        raise ValueError(f"--to must be one of {LAYOUTS}, got {to!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DCAEError(f"{src} does not exist")
    if dst.exists() and not force:
        raise DCAEError(f"{dst} exists; pass --force to overwrite it")
    if model is not None and not issubclass(resolve_class(model), DCAEModel):
        return _convert_codec(src, dst, to, model, force)
    ckpt = read_checkpoint(src)  # any layout, shipped files too
    obj = {"state_dict": ckpt["state_dict"]}
    try:
        source = detect_layout(obj)
    except ModelMismatchError as e:
        raise ModelMismatchError(
            f"{src}: {e}; a checkpoint of another codec needs --model module:Class|NAME"
        ) from e
    sd = to_layout(obj, to)
    stored = ckpt.get("config")
    cfg = DCAEConfig.from_dict(dict(stored)) if isinstance(stored, Mapping) else config_of(sd)
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
    import torch

    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dst, lambda tmp: torch.save(out, tmp), force=force)
    return {"from": source, "to": to, "tensors": len(sd), "config": cfg}


def _convert_codec(src: Path, dst: Path, to: str, name: str, force: bool) -> Dict[str, Any]:
    from ..zoo.loading import load_model, save_model

    if to != "dcae":
        raise DCAEError(
            f"--to {to} is a layout of DCAE checkpoints; a {name} checkpoint converts "
            "--to dcae only"
        )
    net = load_model(src, name)  # checks that the weights fit, builds CDF tables
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dst, lambda tmp: save_model(net, tmp, name), force=force)
    return {"from": name, "to": to, "tensors": len(net.state_dict()), "config": None}


def run(args: argparse.Namespace) -> int:
    """Run ``dcae convert``; returns 0."""
    info = convert_file(
        args.input,
        args.output,
        to=args.to,
        verify=not args.no_verify,
        force=args.force,
        model=args.model,
    )
    if info["config"] is None:
        print(
            f"{args.input} ({info['from']}) -> {args.output} (dcae layout with CDF tables), "
            f"{info['tensors']} tensors"
        )
        return 0
    print(
        f"{args.input} ({info['from']} layout) -> {args.output} ({info['to']} layout), "
        f"{info['tensors']} tensors, M={info['config'].M}, "
        f"slices={info['config'].slice_sizes or info['config'].num_slices}"
    )
    return 0
