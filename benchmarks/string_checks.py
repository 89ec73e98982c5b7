"""Byte cost and speed of the self-checking ``y`` strings on Kodak.

For every shipped quality: the mean bytes of the ``y`` and ``z`` strings of
``DCAEModel.compress`` per image, the check bytes inside each ``y`` string
(:mod:`dcae.latent_codecs.slice_coders`) and their share of the strings' bytes, and the
median ``compress`` / ``decompress`` times (one image at a time, batch 1).

The script uses only ``DCAEModel.compress``/``decompress`` and the shipped
models, so it runs unchanged on a dcae from before the self-checking strings
(whose ``y`` strings are raw rANS and whose check count is 0): run it in a
worktree of that commit for the "before" column::

    python benchmarks/string_checks.py [--limit N] [--qualities 1,2,3,4]
    git worktree add /tmp/dcae-before f357530 && \\
        PYTHONPATH=/tmp/dcae-before python benchmarks/string_checks.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import dcae
from dcae.format.pixels import image_to_tensor
from dcae.zoo import shipped

__all__ = ["main"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=KODAK, help="directory of PNG images")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--qualities", default=None, help="comma-separated (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(args.data.glob("*.png"))[: args.limit or None]
    if not files:
        sys.exit(f"no PNG images in {args.data}")
    qualities = (
        [int(q) for q in args.qualities.split(",")]
        if args.qualities
        else shipped.available_qualities()
    )
    print(
        f"dcae from {Path(dcae.__file__).parent}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {len(files)} images"
    )
    header = (
        f"{'quality':>7} {'bpp':>7} {'y bytes':>9} {'z bytes':>8} {'check B':>8} "
        f"{'share':>8} {'compress ms':>12} {'decompress ms':>14}"
    )
    print(header)
    print("-" * len(header))
    images = [image_to_tensor(p)[0] for p in files]
    for q in qualities:
        model = shipped.load_pretrained(q)
        checks = getattr(model.entropy_model, "string_overhead", 0)
        y_bytes, z_bytes, enc_t, dec_t, pixels = [], [], [], [], 0
        with torch.inference_mode():
            for x in images:
                t0 = time.perf_counter()
                out = model.compress(x)
                t1 = time.perf_counter()
                model.decompress(out["strings"], out["shape"])
                t2 = time.perf_counter()
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
                (y,), (z,) = out["strings"]
                y_bytes.append(len(y))
                z_bytes.append(len(z))
                pixels += x.shape[2] * x.shape[3]
        total = sum(y_bytes) + sum(z_bytes)
        print(
            f"{q:>7} {8 * total / pixels:>7.4f} {statistics.mean(y_bytes):>9.1f} "
            f"{statistics.mean(z_bytes):>8.1f} {checks:>8} "
            f"{100 * checks * len(images) / total:>7.3f}% "
            f"{1000 * statistics.median(enc_t):>12.1f} {1000 * statistics.median(dec_t):>14.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
