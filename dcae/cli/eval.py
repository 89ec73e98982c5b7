"""``dcae eval DIR``: rate-distortion report of dcae against JPEG, WebP, AVIF and anchors.

Evaluates the shipped model at several qualities (or ``--checkpoint`` files:
DCAE, or any CompressAI model with ``--model module:Class|NAME``) with real
entropy coding on every image in ``DIR``, sweeps Pillow JPEG, WebP and AVIF
over qualities on the same images, and writes CompressAI results JSON, a per-image CSV, a
BD-rate table and an RD plot to ``--output``. See :mod:`dcae.eval.evaluate`.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from ..device import resolve_device
from ..errors import DCAEError
from .jobs import add_device_argument, add_io_arguments, add_model_argument

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_AVIF_QUALITIES",
    "DEFAULT_JPEG_QUALITIES",
    "DEFAULT_WEBP_QUALITIES",
    "HELP",
    "add_arguments",
    "run",
]

HELP = "rate-distortion evaluation against JPEG, WebP, AVIF and published anchors"

DEFAULT_JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
DEFAULT_WEBP_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: About 0.06 to 1.8 bpp on Kodak at ``speed=4``.
DEFAULT_AVIF_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80)


def _int_list(text: str) -> List[int]:
    """``"5,10,20"`` -> ``[5, 10, 20]``; ``""`` or ``"none"`` -> ``[]``."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _quality_list(text: str) -> List[float]:
    """``"1,2.5,4"`` -> ``[1.0, 2.5, 4.0]``: real qualities, finite."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 1,2.5,4, got {text!r}"
        )
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae eval``."""
    add_io_arguments(parser, "eval", default=Path("eval-results"))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="evaluate these checkpoints (one rate point each) instead of the shipped models",
    )
    add_model_argument(parser)
    parser.add_argument(
        "--qualities",
        type=_quality_list,
        help="qualities of the shipped model to evaluate, real numbers in its range, "
        "e.g. 1,2.5,4 (default: its integer rate points)",
    )
    parser.add_argument(
        "--name", help="name of the evaluated curve (default: dcae, or the --model name)"
    )
    for fmt, defaults in (
        ("JPEG", DEFAULT_JPEG_QUALITIES),
        ("WebP", DEFAULT_WEBP_QUALITIES),
        ("AVIF", DEFAULT_AVIF_QUALITIES),
    ):
        parser.add_argument(
            f"--{fmt.lower()}-qualities",
            type=_int_list,
            default=list(defaults),
            help=f"Pillow {fmt} qualities, comma-separated, 'none' to skip (default: %(default)s)",
        )
    for option, top, default, what in (
        ("--webp-method", 6, 6, "WebP encoder method, 0 fastest .. 6 best"),
        ("--avif-speed", 10, 4, "AVIF encoder speed, 0 slowest and best .. 10 fastest"),
    ):
        parser.add_argument(
            option,
            type=int,
            choices=range(top + 1),
            default=default,
            metavar=f"0..{top}",
            help=f"{what} (default: %(default)s)",
        )
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument(
        "--anchors",
        type=Path,
        help="folder of published anchors: the DCAE paper's RD data and CompressAI's results "
        "JSON (default: $DCAE_ANCHORS; the evaluation guide says where to get them)",
    )
    parser.add_argument("--no-anchors", action="store_true", help="compare with no anchors")
    parser.add_argument(
        "--anchor-dataset",
        default="kodak",
        help="dataset of the anchors to compare with (default: %(default)s)",
    )
    parser.add_argument(
        "--bd-method",
        choices=("cubic", "pchip"),
        default="cubic",
        help="Bjontegaard interpolation: cubic (VCEG-M33) or pchip (VCEG-AL22) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--estimate-rate",
        action="store_true",
        help="also run the model's forward pass and report real vs estimated bpp",
    )
    parser.add_argument(
        "--no-ms-ssim",
        dest="ms_ssim",
        action="store_false",
        help="report PSNR and bpp only (MS-SSIM as n/a): for images under 161 pixels per "
        "side, MS-SSIM's minimum",
    )
    add_device_argument(parser)
    parser.add_argument("--no-plot", action="store_true", help="do not write rd.png")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _model_points(args: argparse.Namespace) -> List[Tuple[str, Callable[[], torch.nn.Module]]]:
    from ..zoo.loading import load_model, resolve_class
    from ..zoo.shipped import available_qualities, load_pretrained

    if args.model is not None:
        if not args.checkpoint:
            raise DCAEError(f"--model {args.model} needs --checkpoint PATH ... (its weights)")
        resolve_class(args.model)  # fail before any work
    if args.checkpoint and len(args.checkpoint) == 1 and args.model is None:
        variable = _variable_rate_points(args.checkpoint[0], args.qualities)
        if variable is not None:
            return variable
    if args.checkpoint:
        if args.qualities:
            raise DCAEError(
                "--qualities selects the qualities of a variable-rate model (the shipped one "
                "or one variable-rate --checkpoint)"
            )
        points = []
        seen = set()
        for path in args.checkpoint:
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint {path} does not exist")
            label = path.name.split(".")[0] or path.name
            while label in seen:
                label += "'"
            seen.add(label)
            points.append((label, functools.partial(load_model, path, args.model)))
        return points
    shipped = available_qualities()
    if not shipped:
        raise DCAEError(
            "this installation of dcae ships no pretrained weights; pass --checkpoint PATH ..."
        )
    qualities = args.qualities or shipped
    lo, hi = min(shipped), max(shipped)
    outside = sorted({q for q in qualities if not lo <= q <= hi})
    if outside:
        raise DCAEError(
            f"qualities {', '.join(f'{q:g}' for q in outside)} are outside the shipped "
            f"model's range {lo:g}..{hi:g}"
        )
    # each point is a fresh model coding at q (its default_quality), q as given
    return [(f"q{q:g}", functools.partial(load_pretrained, q)) for q in sorted(set(qualities))]


def _variable_rate_points(
    path: Path, qualities: Optional[List[float]]
) -> Optional[List[Tuple[str, Callable[[], torch.nn.Module]]]]:
    """Points of a variable-rate DCAE checkpoint (its integer rate points, or
    ``qualities``); ``None`` if it holds another model."""
    from ..models.dcae import DCAEModel
    from ..zoo.loading import load_model

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    model = load_model(path)
    if not isinstance(model, DCAEModel) or not model.variable_rate:
        return None
    lo, hi = model.quality_range
    wanted = qualities or list(range(int(lo), int(hi) + 1))
    for q in wanted:
        model.check_quality(q)  # refuses before any work

    def at(q: float) -> torch.nn.Module:
        net = load_model(path)
        net.default_quality = q  # type: ignore[union-attr]
        return net

    return [(f"q{q:g}", functools.partial(at, q)) for q in sorted(set(wanted))]


def run(args: argparse.Namespace) -> int:
    """Run ``dcae eval``; returns the exit code."""
    from PIL import __version__ as pil_version

    from ..eval.anchors import find_anchors_dir
    from ..eval.evaluate import run_evaluation
    from ..eval.pillow import pillow_supports

    points = _model_points(args)
    device = str(resolve_device(args.device))
    anchors = None
    if not args.no_anchors:
        anchors = args.anchors or find_anchors_dir()
        if anchors is None:
            print(
                "dcae eval: no published anchors (pass --anchors DIR or set $DCAE_ANCHORS; "
                "--no-anchors to silence this)",
                file=sys.stderr,
            )
    log = (lambda _: None) if args.quiet else functools.partial(print, file=sys.stderr)
    avif_qualities = args.avif_qualities
    if avif_qualities and not pillow_supports("AVIF"):
        print(
            f"dcae eval: Pillow {pil_version} has no AVIF support (needs Pillow >= 11.2 "
            "with libavif); skipping the AVIF sweep",
            file=sys.stderr,
        )
        avif_qualities = []
    report = run_evaluation(
        args.directory,
        args.output,
        points,
        name=args.name or args.model or "dcae",
        jpeg_qualities=args.jpeg_qualities,
        webp_qualities=args.webp_qualities,
        avif_qualities=avif_qualities,
        webp_method=args.webp_method,
        avif_speed=args.avif_speed,
        anchors_dir=anchors,
        anchor_dataset=args.anchor_dataset,
        method=args.bd_method,
        plot=not args.no_plot,
        limit=args.limit,
        device=device,
        estimate_rate=args.estimate_rate,
        log=log,
        ms_ssim=args.ms_ssim,
    )
    print(report.files["summary"].read_text())
    written: Sequence[Path] = sorted(set(report.files.values()))
    print("wrote: " + ", ".join(str(p) for p in written))
    return 0
