"""``dcae compress IN [-o OUT]``: images to ``.dcae`` files.

``IN`` is an image file (``OUT`` defaults to ``IN`` with the suffix
``.dcae``) or a directory (every image in it, not recursive; ``OUT`` is then
a directory, default ``IN``).  Outputs are written atomically and never
overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ..bitstream import PADDING_POLICIES
from ..codec import encode, open_image, resolve_model, write_atomic
from ..errors import DCAEError

__all__ = [
    "HELP",
    "IMAGE_SUFFIXES",
    "add_arguments",
    "check_outputs",
    "collect_jobs",
    "progress_prefix",
    "run",
]

HELP = "compress images to .dcae files"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae compress``."""
    parser.add_argument("input", type=Path, help="image file or directory of images")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output .dcae file (or directory when INPUT is one); default: next to the input",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--checkpoint", type=Path, help="model checkpoint (dcae or official layout)"
    )
    model.add_argument("--quality", type=int, help="quality of the shipped model (1 = lowest)")
    parser.add_argument(
        "--padding",
        choices=PADDING_POLICIES,
        default="minimal",
        help="minimal: latent ceil(H/16) x ceil(W/16); official: pad to a multiple of 128 "
        "(default: %(default)s)",
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def progress_prefix(i: int, n: int, width: int = 20) -> str:
    """``[#####-----]  3/24`` for item ``i`` (1-based) of ``n``."""
    done = round(width * i / n)
    return f"[{'#' * done}{'-' * (width - done)}] {i:>{len(str(n))}}/{n}"


def collect_jobs(
    inp: Path, out: Optional[Path], suffixes: Tuple[str, ...], new_suffix: str
) -> Tuple[List[Tuple[Path, Path]], bool]:
    """``[(input, output)]`` and whether ``inp`` is a directory."""
    if inp.is_dir():
        files = sorted(p for p in inp.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DCAEError(f"no {'/'.join(suffixes)} files in directory {inp}")
        out_dir = inp if out is None else out
        if out_dir.exists() and not out_dir.is_dir():
            raise DCAEError(f"output {out_dir} is not a directory (input {inp} is one)")
        return [(p, out_dir / (p.stem + new_suffix)) for p in files], True
    if not inp.exists():
        raise FileNotFoundError(f"{inp}: no such file or directory")
    target = inp.with_suffix(new_suffix) if out is None else out
    if target.is_dir():
        target = target / (inp.stem + new_suffix)
    return [(inp, target)], False


def check_outputs(jobs: List[Tuple[Path, Path]], force: bool) -> None:
    """Refuse before any work if an output exists (without ``force``) or two
    inputs map to one output."""
    seen = {}
    for src, dst in jobs:
        if dst in seen:
            raise DCAEError(f"{seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
        if not force and dst.exists():
            raise FileExistsError(f"{dst} exists (use --force to overwrite)")
        if dst.resolve() == src.resolve():
            raise DCAEError(f"output {dst} is the input file")


def run_jobs(
    jobs: List[Tuple[Path, Path]], is_dir: bool, code_one: Callable[[Path, Path, str], None]
) -> int:
    """Run ``code_one(src, dst, prefix)`` on every job; returns the number of
    failures.  A single file raises its error; in a directory run an error is
    printed for its file and the others go on."""
    if is_dir:
        jobs[0][1].parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    for i, (src, dst) in enumerate(jobs, 1):
        prefix = f"{progress_prefix(i, len(jobs))} " if is_dir else ""
        try:
            code_one(src, dst, prefix)
        except (DCAEError, OSError, ValueError) as e:
            if not is_dir:
                raise
            failures += 1
            print(f"{prefix}{src.name}: error: {e}", file=sys.stderr)
    return failures


def exit_status(failures: int, total: int) -> int:
    """0, or 1 after a one-line summary on stderr if some files failed."""
    if failures:
        print(f"dcae: error: {failures} of {total} files failed", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Compress; returns 0, or 1 if some files of a directory failed."""
    jobs, is_dir = collect_jobs(args.input, args.output, IMAGE_SUFFIXES, ".dcae")
    check_outputs(jobs, args.force)
    model, quality = resolve_model(quality=args.quality, checkpoint=args.checkpoint)
    totals = {"bytes": 0, "pixels": 0}

    def code_one(src: Path, dst: Path, prefix: str) -> None:
        t0 = time.perf_counter()
        img = open_image(src)
        if quality:  # the shipped model (cached): the file records its quality
            data = encode(img, quality=quality, padding=args.padding)
        else:
            data = encode(img, model=model, padding=args.padding)
        write_atomic(dst, lambda tmp: Path(tmp).write_bytes(data), force=args.force)
        seconds = time.perf_counter() - t0
        pixels = img.width * img.height
        totals["bytes"] += len(data)
        totals["pixels"] += pixels
        if not args.quiet:
            print(
                f"{prefix}{src} -> {dst}: {img.width}x{img.height} {img.mode}, "
                f"{8 * len(data) / pixels:.4f} bpp, {len(data)} bytes, {seconds:.2f} s"
            )

    failures = run_jobs(jobs, is_dir, code_one)
    if is_dir and not args.quiet:
        pixels = totals["pixels"]
        bpp = 8 * totals["bytes"] / pixels if pixels else float("nan")
        print(f"{len(jobs) - failures}/{len(jobs)} files compressed, {bpp:.4f} bpp overall")
    return exit_status(failures, len(jobs))
