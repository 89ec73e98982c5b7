"""Rate and PSNR cost of fast mode (reduced-precision ``g_a``/``g_s``) on
trained weights.

For each shipped quality (or ``--checkpoint``) and each image: compress and
decompress in float32 and in fast mode, with real entropy coding; prints the
mean bpp (entropy-coded strings) and PSNR of both, their differences, the
largest per-image PSNR drop, and the median speed-up of compress +
decompress.  A fast-mode stream is also decoded in float32 mode to show that
the streams stay decodable across modes.

Usage::

    python benchmarks/fast_mode_quality.py [--data DIR] [--limit N] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from dcae.eval.metrics import psnr
from dcae.format.pixels import image_to_tensor
from dcae.layers.fast import fast_mode
from dcae.zoo import shipped
from dcae.zoo.loading import load_checkpoint

__all__ = ["main"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images


def _code(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, object]:
    t0 = time.perf_counter()
    enc = model.compress(x)
    x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    seconds = time.perf_counter() - t0
    n_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
    return {"enc": enc, "x_hat": x_hat, "bytes": n_bytes, "seconds": seconds}


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, float]]:
    """Print the table; returns one row per quality."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=KODAK, help="directory of PNG images")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--qualities", default=None, help="comma-separated (default: all)")
    parser.add_argument("--checkpoint", help="a model checkpoint instead of the shipped ones")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    files = sorted(args.data.glob("*.png"))[: args.limit]
    if not files:
        raise SystemExit(f"no PNG images in {args.data}")
    if args.checkpoint:
        models = {0: load_checkpoint(args.checkpoint)}
    else:
        wanted = args.qualities.split(",") if args.qualities else shipped.available_qualities()
        models = {int(q): shipped.load_pretrained(int(q)) for q in wanted}
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"torch {torch.__version__}  {torch.get_num_threads()} threads  "
        f"{len(files)} images from {args.data}  fast dtype {args.dtype}"
    )
    header = (
        f"{'quality':>7} | {'fp32 bpp':>8} {'fp32 PSNR':>9} | {'fast bpp':>8} {'fast PSNR':>9} | "
        f"{'d bpp %':>7} {'d PSNR':>7} {'worst d PSNR':>12} | {'speed-up':>8} | cross-mode"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for quality, model in models.items():
        model.eval()
        bpp = {"fp32": [], "fast": []}
        quality_db = {"fp32": [], "fast": []}
        ratios, cross_ok = [], True
        with torch.no_grad():
            for path in files:
                x, _ = image_to_tensor(path)
                pixels = x.shape[2] * x.shape[3]
                ref = _code(model, x)
                fast_mode(model, dtype)
                try:
                    fast = _code(model, x)
                finally:
                    fast_mode(model, enabled=False)
                # a fast-mode stream decodes in float32 mode (entropy model in
                # fp32): the per-slice checksums raise DecodingError otherwise
                enc = fast["enc"]
                cross = model.decompress(enc["strings"], enc["shape"])
                cross_ok &= bool(torch.isfinite(cross["x_hat"]).all())
                for key, out in (("fp32", ref), ("fast", fast)):
                    bpp[key].append(8 * out["bytes"] / pixels)
                    quality_db[key].append(psnr(x, out["x_hat"].clamp(0, 1)))
                ratios.append(ref["seconds"] / fast["seconds"])
        d_psnr = [f - r for f, r in zip(quality_db["fast"], quality_db["fp32"])]
        row = {
            "quality": quality,
            "fp32_bpp": statistics.fmean(bpp["fp32"]),
            "fp32_psnr": statistics.fmean(quality_db["fp32"]),
            "fast_bpp": statistics.fmean(bpp["fast"]),
            "fast_psnr": statistics.fmean(quality_db["fast"]),
            "worst_d_psnr": min(d_psnr),
            "speedup": statistics.median(ratios),
        }
        rows.append(row)
        d_bpp = 100 * (row["fast_bpp"] / row["fp32_bpp"] - 1)
        print(
            f"{quality:>7} | {row['fp32_bpp']:8.4f} {row['fp32_psnr']:9.3f} | "
            f"{row['fast_bpp']:8.4f} {row['fast_psnr']:9.3f} | {d_bpp:+7.2f} "
            f"{row['fast_psnr'] - row['fp32_psnr']:+7.3f} {row['worst_d_psnr']:+12.3f} | "
            f"{row['speedup']:7.2f}x | {'ok' if cross_ok else 'FAILED'}"
        )
        sys.stdout.flush()
    return rows


if __name__ == "__main__":
    main()
