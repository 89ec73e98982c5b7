"""Peak memory (RSS) and time of :func:`dcae.encode` / :func:`dcae.decode`
on large images, each phase in a fresh subprocess.

Usage::

    python benchmarks/memory_large.py [--sizes 1024 2048 4096] [--preset small]
                                      [--checkpoint PATH]

The image is a Kodak photo resized to ``size x size``.  Peak RSS is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the subprocess (it includes
the Python interpreter, torch and the model: the ``base`` column is the peak
before the phase starts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

KODAK_IMAGE = Path(os.environ.get("DCAE_KODAK", "kodak")) / "kodim23.png"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from dcae import DCAEModel
    from dcae.codec import decode, encode
    from dcae.zoo.loading import load_checkpoint

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = DCAEModel(args.preset).eval()
        model.update(force=True)
    src = Image.open(KODAK_IMAGE).convert("RGB")
    size = args.size
    img = src.resize((size, size), Image.BICUBIC) if args.phase == "encode" else None
    base = _peak_mib()
    t0 = time.perf_counter()
    if args.phase == "encode":
        Path(args.file).write_bytes(encode(img, model=model))
    else:
        out = decode(Path(args.file).read_bytes(), model=model)
        assert out.size == (size, size), out.size
    seconds = time.perf_counter() - t0
    print(json.dumps({"base_mib": base, "peak_mib": _peak_mib(), "seconds": seconds}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--preset", default="small", help="random-weight preset")
    parser.add_argument("--checkpoint", help="use this checkpoint instead of a random model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["encode", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    model = args.checkpoint or f"random-weight {args.preset!r}"
    print(f"model: {model}; {args.threads} threads; peak RSS per phase (fresh process)")
    header = f"{'size':>11} {'phase':>7} {'base MiB':>9} {'peak MiB':>9} {'time s':>8} {'bpp':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            file = Path(tmp) / f"{size}.dcae"
            for phase in ("encode", "decode"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"--phase={phase}",
                    f"--size={size}",
                    f"--file={file}",
                    f"--preset={args.preset}",
                    f"--threads={args.threads}",
                ]
                if args.checkpoint:
                    cmd.append(f"--checkpoint={args.checkpoint}")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()[-1:] or ["killed?"]
                    print(
                        f"{size:>5}x{size:<5} {phase:>7} failed (rc {proc.returncode}): {tail[0]}"
                    )
                    break
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                bpp = 8 * file.stat().st_size / size**2
                print(
                    f"{size:>5}x{size:<5} {phase:>7} {r['base_mib']:>9.0f} {r['peak_mib']:>9.0f} "
                    f"{r['seconds']:>8.1f} {bpp:>7.4f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
