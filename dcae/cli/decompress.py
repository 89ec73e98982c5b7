"""``dcae decompress IN.dcae [-o OUT.png]``: ``.dcae`` files to images.

``IN`` is a ``.dcae`` file (``OUT`` defaults to ``IN`` with the suffix
``.png``; a lossless format is chosen by ``OUT``'s suffix, see
:data:`LOSSLESS_FORMATS`) or a directory of them (``OUT`` is then a
directory, default ``IN``); ``-`` is standard input (``IN``) or output (a
PNG; ``OUT``, the default for ``IN`` ``-``).  The model is the shipped one
whose weights digest matches the file, or ``--checkpoint`` (with ``--model
module:Class|NAME`` for a codec other than DCAE).

A lossy output format (``.jpg``, ``.gif``, ``.avif``, ...) is refused: the
decoded image is exact, and writing it as JPEG would add a second, silent
generation of loss, with a rate nobody chose; convert the PNG explicitly
if a lossy copy is wanted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional

from PIL import Image

from ..errors import DCAEError, ModelMismatchError
from . import jobs

__all__ = ["HELP", "LOSSLESS_FORMATS", "add_arguments", "run"]

HELP = "decompress .dcae files to images (PNG by default)"

#: output suffix: (Pillow format, save options) of the lossless formats written
LOSSLESS_FORMATS: Dict[str, Any] = {
    ".png": ("PNG", {}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
    ".ppm": ("PPM", {}),
    ".pgm": ("PPM", {}),
    ".pnm": ("PPM", {}),
    ".webp": ("WEBP", {"lossless": True, "quality": 100}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae decompress``."""
    jobs.add_io_arguments(parser, "decompress")
    jobs.add_checkpoint_argument(
        parser, "model checkpoint that wrote the files (default: the matching shipped model)"
    )
    jobs.add_model_argument(parser)
    jobs.add_device_argument(parser)
    jobs.add_common_arguments(parser, "refuse files recording more pixels")


def _format_for(path: Path) -> Any:
    """``(Pillow format, save options)`` of an output path (PNG for ``-``)."""
    if jobs.is_stdio(path):
        return LOSSLESS_FORMATS[".png"]
    suffix = path.suffix.lower()
    if suffix in LOSSLESS_FORMATS:
        return LOSSLESS_FORMATS[suffix]
    lossless = " ".join(LOSSLESS_FORMATS)
    fmt = Image.registered_extensions().get(suffix)
    if fmt is not None and fmt in Image.SAVE:
        raise DCAEError(
            f"output {path}: {fmt} ({suffix}) would store the decoded image lossily, a "
            f"second loss on top of the .dcae's; write a lossless format ({lossless}) and "
            "convert it yourself if you want a lossy copy"
        )
    raise DCAEError(
        f"cannot write images with suffix {path.suffix!r} ({path}); use a lossless format: "
        f"{lossless}"
    )


def _save(img: Image.Image, out: Any, fmt: Any) -> None:
    name, options = fmt
    img.save(out, format=name, **options)


def _check_model_arguments(args: argparse.Namespace, src: Path, data: bytes) -> None:
    """Before loading ``--checkpoint`` as a DCAE model: refuse it in one line
    naming the file's model when the file was written by another codec."""
    from ..codec import read_stream
    from ..zoo.resolve import model_argument

    if args.checkpoint is None or args.model is not None:
        return
    try:
        stream = read_stream(data, max_pixels=None)
    except DCAEError:
        return  # the file's own error comes when it is decoded
    if stream.model_kind != "dcae":
        raise ModelMismatchError(
            f"{'standard input' if jobs.is_stdio(src) else src} was written by "
            f"{stream.describe_model()}, not by a DCAE model: pass its class, dcae decompress "
            f"--model {model_argument(stream)} --checkpoint {args.checkpoint} (dcae never "
            "imports a module named in a file)"
        )


def run(args: argparse.Namespace) -> int:
    """Decompress; returns 0, or 1 if some files of a directory failed."""
    from ..codec import decode, read_stream
    from ..device import resolve_device
    from ..zoo.resolve import resolve_model

    pairs, is_dir = jobs.collect_jobs(args.input, args.output, (".dcae",), ".png")
    for _, dst in pairs:
        _format_for(dst)
    jobs.check_outputs(pairs, args.force, is_dir)
    first: Optional[bytes] = None
    if pairs:
        first = jobs.read_input(pairs[0][0])  # standard input is read once
        _check_model_arguments(args, pairs[0][0], first)
    device = resolve_device(args.device)  # a one-line error before any model loads
    model = None
    if args.checkpoint is not None or args.model is not None:
        model, _ = resolve_model(checkpoint=args.checkpoint, name=args.model)
        model = model.to(device)
    elif device.type != "cpu":  # the shipped model, on the device (else: decode's own)
        model = resolve_model()[0].to(device)
    max_pixels = args.max_pixels or None

    def code_one(src: Path, dst: Path, prefix: str) -> None:
        nonlocal first
        t0 = time.perf_counter()
        if first is not None and src == pairs[0][0]:
            data, first = first, None
        else:
            data = jobs.read_input(src)
        stream = read_stream(data, max_pixels=max_pixels)
        img = decode(data, model=model, max_pixels=max_pixels)
        fmt = _format_for(dst)
        jobs.write_output(dst, lambda out: _save(img, out, fmt), force=args.force)
        if not args.quiet:
            pixels = stream.width * stream.height
            jobs.report_file(prefix, src, dst, img, data, pixels, time.perf_counter() - t0)

    failures = jobs.run_jobs(pairs, is_dir, code_one)
    if is_dir and not args.quiet:
        print(f"{len(pairs) - failures}/{len(pairs)} files decompressed")
    return jobs.exit_status(failures, len(pairs))
