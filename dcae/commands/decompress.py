"""``dcae decompress IN.dcae [-o OUT.png]``: ``.dcae`` files to images.

``IN`` is a ``.dcae`` file (``OUT`` defaults to ``IN`` with the suffix
``.png``; any format Pillow writes is chosen by ``OUT``'s suffix) or a
directory of them (``OUT`` is then a directory, default ``IN``).  The model is
the shipped one whose weights digest matches the file, or ``--checkpoint``
(with ``--model module:Class|NAME`` for a codec other than DCAE).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

from ..errors import DCAEError
from . import jobs

__all__ = ["HELP", "add_arguments", "run"]

HELP = "decompress .dcae files to images (PNG by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae decompress``."""
    jobs.add_io_arguments(parser, "decompress")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="model checkpoint that wrote the files (default: the matching shipped model)",
    )
    jobs.add_model_argument(parser)
    jobs.add_common_arguments(parser, "refuse files recording more pixels")


def _format_for(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise DCAEError(f"cannot write images with suffix {path.suffix!r} ({path}); use .png")
    return fmt


def run(args: argparse.Namespace) -> int:
    """Decompress; returns 0, or 1 if some files of a directory failed."""
    from ..codec import decode, read_stream, resolve_model

    pairs, is_dir = jobs.collect_jobs(args.input, args.output, (".dcae",), ".png")
    jobs.check_outputs(pairs, args.force, is_dir)
    for _, dst in pairs:
        _format_for(dst)
    model = None
    if args.checkpoint is not None or args.model is not None:
        model, _ = resolve_model(checkpoint=args.checkpoint, name=args.model)
    max_pixels = args.max_pixels or None

    def code_one(src: Path, dst: Path, prefix: str) -> None:
        t0 = time.perf_counter()
        data = src.read_bytes()
        stream = read_stream(data, max_pixels=max_pixels)
        img = decode(data, model=model, max_pixels=max_pixels)
        fmt = _format_for(dst)
        jobs.write_atomic(dst, lambda tmp: img.save(tmp, format=fmt), force=args.force)
        seconds = time.perf_counter() - t0
        if not args.quiet:
            bpp = 8 * len(data) / (stream.width * stream.height)
            print(
                f"{prefix}{src} -> {dst}: {img.width}x{img.height} {img.mode}, "
                f"{bpp:.4f} bpp, {len(data)} bytes, {seconds:.2f} s"
            )

    failures = jobs.run_jobs(pairs, is_dir, code_one)
    if is_dir and not args.quiet:
        print(f"{len(pairs) - failures}/{len(pairs)} files decompressed")
    return jobs.exit_status(failures, len(pairs))
