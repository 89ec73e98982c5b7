"""What ``dcae compress`` and ``dcae decompress`` share: turning INPUT/OUTPUT
into (source, destination) jobs, refusing clashes before any work, running
the jobs with per-file errors in directory mode, atomic writes that never
leave a partial or lost file, and ``-`` for standard input and output."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

from ..errors import DCAEError

__all__ = [
    "STDIO",
    "add_checkpoint_argument",
    "add_common_arguments",
    "add_io_arguments",
    "add_model_argument",
    "check_outputs",
    "check_writable",
    "collect_jobs",
    "exit_status",
    "is_stdio",
    "progress_prefix",
    "read_input",
    "report_file",
    "report_stream",
    "run_jobs",
    "write_atomic",
    "write_output",
]

#: ``-`` as INPUT or ``-o``: standard input or standard output
STDIO = Path("-")


#: ``command: (input name, its help, help of -o/--output)``
_IO_HELP = {
    "compress": (
        "input",
        "image file or directory of images; - reads an image from standard input",
        "output .dcae file (or directory when INPUT is one); - writes to standard output; "
        "default: next to the input (standard output for input -)",
    ),
    "decompress": (
        "input",
        ".dcae file or directory of .dcae files; - reads a .dcae file from standard input",
        "output image, of a lossless format chosen by its suffix (.png .bmp .tif .tiff "
        ".ppm .pgm .pnm .webp, written lossless) or directory; - writes a PNG to standard "
        "output; default: next to the input, as PNG (standard output for input -)",
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
    from ..format.limits import DEFAULT_MAX_PIXELS

    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"{max_pixels_help} (0: no bound; default: %(default)s, about 8 GB to code)",
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def add_checkpoint_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--checkpoint PATH``: the weights of the model to code with."""
    parser.add_argument("--checkpoint", type=Path, help=help)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model module:Class|NAME``: the model class of ``--checkpoint``."""
    parser.add_argument(
        "--model",
        metavar="module:Class|NAME",
        help="the model of --checkpoint when it is not DCAE: your CompressionModel as "
        "module:Class (importable; the current folder is searched too) or a CompressAI "
        "model name such as bmshj2018-factorized",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the model runs (``auto``: CUDA when available)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the model runs: auto (default: CUDA when available, else the CPU), "
        "cpu, cuda or cuda:N; portable files are the same bytes on every device",
    )


def progress_prefix(i: int, n: int, width: int = 20) -> str:
    """``[#####-----]  3/24`` for item ``i`` (1-based) of ``n``."""
    done = round(width * i / n)
    return f"[{'#' * done}{'-' * (width - done)}] {i:>{len(str(n))}}/{n}"


def is_stdio(path: Optional[Path]) -> bool:
    """Whether ``path`` is ``-``: standard input (INPUT) or output (``-o``);
    a file named ``-`` is ``./-``."""
    return path is not None and str(path) == "-"


def collect_jobs(
    inp: Path, out: Optional[Path], suffixes: Tuple[str, ...], new_suffix: str
) -> Tuple[List[Tuple[Path, Path]], bool]:
    """``[(input, output)]`` and whether ``inp`` is a directory.  ``-`` as
    ``inp`` is standard input (the output defaults to standard output), as
    ``out`` standard output (:data:`STDIO` in the jobs).

    Raises:
        DCAEError: standard output for a directory, binary data for a
            terminal, or an image expected from a terminal.
    """
    if is_stdio(inp) or is_stdio(out):
        if is_stdio(out) and inp.is_dir() and not is_stdio(inp):
            raise DCAEError(
                f"-o - writes one file to standard output; {inp} is a directory: give an "
                "output directory"
            )
        if is_stdio(inp) and sys.stdin.isatty():
            raise DCAEError("input - reads standard input, which is a terminal: pipe a file in")
        target = STDIO if out is None else out
        if is_stdio(target) and sys.stdout.isatty():
            raise DCAEError(
                "refusing to write binary data to a terminal: redirect standard output "
                "(> FILE or | ...) or pass -o FILE"
            )
        if not is_stdio(inp) and not inp.exists():
            raise FileNotFoundError(f"{inp}: no such file or directory")
        if target.is_dir():
            raise DCAEError(f"input - has no name: -o {target} must name a file")
        return [(STDIO if is_stdio(inp) else inp, STDIO if is_stdio(target) else target)], False
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
    jobs = [(src, dst) for src, dst in jobs if not is_stdio(dst)]
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
        if not is_stdio(src) and dst.resolve() == src.resolve():
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


def read_input(src: Path) -> bytes:
    """The bytes of ``src``, or of standard input for ``-``."""
    if is_stdio(src):
        return sys.stdin.buffer.read()
    return src.read_bytes()


def write_output(dst: Path, write: Callable[[Any], None], *, force: bool = False) -> None:
    """``write(target)`` into ``dst`` atomically (:func:`write_atomic`), or
    into standard output for ``-`` (``target`` a binary buffer then)."""
    if not is_stdio(dst):
        write_atomic(dst, write, force=force)
        return
    buffer = io.BytesIO()
    write(buffer)  # complete before anything reaches the pipe
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()


def report_file(
    prefix: str,
    src: Path,
    dst: Path,
    img: Any,
    data: bytes,
    pixels: int,
    seconds: float,
    note: str = "",
) -> None:
    """The progress line of one coded file: sizes, mode, ``note``, the rate of
    ``data`` over ``pixels`` and the time (on stderr when the output is
    standard output)."""
    print(
        f"{prefix}{src} -> {dst}: {img.width}x{img.height} {img.mode}, {note}"
        f"{8 * len(data) / pixels:.4f} bpp, {len(data)} bytes, {seconds:.2f} s",
        file=report_stream(dst),
    )


def report_stream(dst: Path) -> Any:
    """Where a command's progress lines go: standard error when the output
    itself goes to standard output, else standard output."""
    return sys.stderr if is_stdio(dst) else sys.stdout


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
