"""``dcae compress IN [-o OUT]``: images to ``.dcae`` files.

``IN`` is an image file (``OUT`` defaults to ``IN`` with the suffix
``.dcae``; a file ``OUT`` must end in ``.dcae``) or a directory (every image
in it, not recursive; ``OUT`` is then a directory, default ``IN``); ``-`` is
standard input (``IN``) or output (``OUT``, the default for ``IN`` ``-``).
Outputs are written atomically and never overwritten without ``--force``.
The model is the shipped variable-rate one (``--quality`` any real number
in its range, or ``--target-bpp B``), a DCAE checkpoint (``--quality`` too
if it is variable-rate), or any CompressAI model: ``--model
module:Class|NAME --checkpoint PATH``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from ..format.images import IMAGE_SUFFIXES, open_image
from ..format.padding import PADDING_POLICIES
from . import jobs

__all__ = [
    "HELP",
    "IMAGE_SUFFIXES",
    "add_arguments",
    "run",
]

HELP = "compress images to .dcae files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae compress``."""
    jobs.add_io_arguments(parser, "compress")
    jobs.add_checkpoint_argument(
        parser, "model checkpoint (DCAE: dcae or official layout; another codec: with --model)"
    )
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument(
        "--quality",
        type=float,
        help="quality of a variable-rate model (the shipped one: any real number in its "
        "range, 1 = lowest rate; default: the model's default)",
    )
    rate.add_argument(
        "--target-bpp",
        type=float,
        metavar="B",
        help="find the quality that codes each image at B bits per pixel (within 3%%, "
        "a few encodes)",
    )
    jobs.add_model_argument(parser)
    jobs.add_device_argument(parser)
    parser.add_argument(
        "--padding",
        choices=PADDING_POLICIES,
        help="minimal: no padding (DCAE's default); official: centred to a multiple of 128; "
        "multiple: centred to a multiple of the model's downsampling factor (the default "
        "of other models, as CompressAI's eval_model)",
    )
    parser.add_argument(
        "--portable",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="portable coding (the default for DCAE models): the file decodes under any "
        "attention backend, thread count, compiler or device, for about 1.3x the coding time "
        "on a CPU; --no-portable writes a file that may only decode on the same backend and "
        "device",
    )
    jobs.add_common_arguments(
        parser, "refuse images with more pixels, read from the header before decoding"
    )


def _write_bytes(out: object, data: bytes) -> None:
    """``data`` into a path (the atomic writer's temporary file) or a buffer."""
    if isinstance(out, (str, Path)):
        Path(out).write_bytes(data)
    else:
        out.write(data)  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    """Compress; returns 0, or 1 if some files of a directory failed."""
    from ..codec import encode, find_quality
    from ..device import resolve_device
    from ..errors import DCAEError
    from ..zoo.resolve import resolve_model

    pairs, is_dir = jobs.collect_jobs(args.input, args.output, IMAGE_SUFFIXES, ".dcae")
    for _, dst in pairs:
        if not jobs.is_stdio(dst) and dst.suffix.lower() != ".dcae":
            raise DCAEError(
                f"output {dst}: dcae compress writes .dcae files, not {dst.suffix or 'files '}"
                f"{'' if dst.suffix else 'without a suffix'}: name it *.dcae (or - for "
                "standard output)"
            )
    jobs.check_outputs(pairs, args.force, is_dir)
    max_pixels = args.max_pixels or None
    device = resolve_device(args.device)  # a one-line error before any model loads
    model, quality = resolve_model(
        quality=args.quality, checkpoint=args.checkpoint, name=args.model
    )
    model = model.to(device)  # a fresh instance: moving it changes nothing shared
    if args.target_bpp is not None and quality is None:
        raise DCAEError("--target-bpp needs a variable-rate model; this one has a single rate")
    totals = {"bytes": 0, "pixels": 0}

    def code_one(src: Path, dst: Path, prefix: str) -> None:
        t0 = time.perf_counter()
        if jobs.is_stdio(src):
            img = open_image(io.BytesIO(jobs.read_input(src)), max_pixels=max_pixels)
        else:
            img = open_image(src, max_pixels=max_pixels)
        options = {"padding": args.padding, "portable": args.portable, "max_pixels": max_pixels}
        if args.target_bpp is not None:  # the model resolved above: loaded once
            q, data = find_quality(img, args.target_bpp, model=model, **options)
        else:
            q, data = quality, encode(img, model=model, quality=args.quality, **options)
        jobs.write_output(dst, lambda out: _write_bytes(out, data), force=args.force)
        pixels = img.width * img.height
        totals["bytes"] += len(data)
        totals["pixels"] += pixels
        if not args.quiet:
            at = "" if q is None else f"quality {q:.4g}, "
            jobs.report_file(prefix, src, dst, img, data, pixels, time.perf_counter() - t0, at)

    failures = jobs.run_jobs(pairs, is_dir, code_one)
    if is_dir and not args.quiet:
        pixels = totals["pixels"]
        bpp = 8 * totals["bytes"] / pixels if pixels else float("nan")
        print(f"{len(pairs) - failures}/{len(pairs)} files compressed, {bpp:.4f} bpp overall")
    return jobs.exit_status(failures, len(pairs))
