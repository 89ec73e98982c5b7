"""What ``dcae compress`` and ``dcae decompress`` share: turning INPUT/OUTPUT
into (source, destination) jobs, refusing clashes before any work, running
the jobs with per-file errors in directory mode, and atomic writes that never
leave a partial or lost file."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

from ..errors import DCAEError

__all__ = [
    "add_common_arguments",
    "add_io_arguments",
    "add_model_argument",
    "check_outputs",
    "check_writable",
    "collect_jobs",
    "exit_status",
    "progress_prefix",
    "run_jobs",
    "write_atomic",
]


#: ``command: (input name, its help, help of -o/--output)``
_IO_HELP = {
    "compress": (
        "input",
        "image file or directory of images",
        "output .dcae file (or directory when INPUT is one); default: next to the input",
    ),
    "decompress": (
        "input",
        ".dcae file or directory of .dcae files",
        "output image (format from its suffix, e.g. .png) or directory; default: next to "
        "the input, as PNG",
    ),
    "eval": ("directory", "folder of images (e.g. the Kodak set)", "output folder"),
}


def add_io_arguments(parser: argparse.ArgumentParser, command: str, **output: Any) -> None:
    """The positional input and ``-o/--output`` of ``command`` (``output``:
    more ``add_argument`` options, e.g. a default)."""
    name, input_help, output_help = _IO_HELP[command]
    if "default" in output:
        output_help += " (default: %(default)s)"
    parser.add_argument(name, type=Path, help=input_help)
    parser.add_argument("-o", "--output", type=Path, help=output_help, **output)


def add_common_arguments(parser: argparse.ArgumentParser, max_pixels_help: str) -> None:
    """``--max-pixels``, ``-f/--force`` and ``-q/--quiet`` of compress and decompress."""
    from ..bitstream import DEFAULT_MAX_PIXELS

    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"{max_pixels_help} (0: no bound; default: %(default)s, about 8 GB to code)",
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model module:Class|NAME``: the model class of ``--checkpoint``."""
    parser.add_argument(
        "--model",
        metavar="module:Class|NAME",
        help="the model of --checkpoint when it is not DCAE: your CompressionModel as "
        "module:Class (importable; the current folder is searched too) or a CompressAI "
        "model name such as bmshj2018-factorized",
    )


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


def check_writable(directory: Path) -> None:
    """Refuse before any work if files cannot be created in ``directory``
    (missing, not a directory, read-only): the error names ``directory``."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise FileNotFoundError(f"output directory {directory} {what}")
    try:  # os.access says yes to root and knows nothing of read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".dcae-probe.", dir=directory)
    except OSError as e:
        message = f"cannot write to output directory {directory}: {e.strerror}"
        raise OSError(e.errno, message) from e
    os.close(fd)
    os.unlink(probe)


def check_outputs(jobs: List[Tuple[Path, Path]], force: bool, is_dir: bool = False) -> None:
    """Refuse before any work if an output exists (without ``force``), two
    inputs map to one output, or an output directory is missing or read-only
    (in directory mode the output directory is created first)."""
    if is_dir and jobs:
        try:
            jobs[0][1].parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(
                e.errno, f"cannot create output directory {jobs[0][1].parent}: {e.strerror}"
            ) from e
    for directory in dict.fromkeys(dst.parent for _, dst in jobs):
        check_writable(directory)
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(
    path: Union[str, os.PathLike], write: Callable[[str], None], *, force: bool = False
) -> None:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the
    same directory, which then replaces ``path`` (``os.replace``) or, without
    ``force``, is linked to it only if ``path`` does not exist yet.  On any
    failure the temporary file is removed and ``path`` is left untouched.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {path.parent} does not exist")
    if not force and path.exists():
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the user's path, not the temporary file's
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:  # disk full, quota, ...: name the user's path
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
