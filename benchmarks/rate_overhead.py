"""Real ``.dcae`` size vs the ``-log2`` likelihood estimate on Kodak.

For each image: the estimated bits of ``y`` and ``z`` from the eval-mode
``forward`` likelihoods, the real bits of the ``y`` and ``z`` strings of the
file written by :func:`dcae.encode` (header and CRC excluded, reported
apart), and the overhead ``real / estimate - 1``.

Usage::

    python benchmarks/rate_overhead.py [--limit N] [--checkpoint PATH | --quality Q]

Without ``--checkpoint`` the shipped model is used when dcae ships weights,
otherwise a random-weight ``small`` model (seed 0; figures then only show the
coding overhead of an untrained model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import torch

from dcae import DCAEModel
from dcae.codec import encode
from dcae.format.container import unpack
from dcae.format.pixels import image_to_tensor
from dcae.zoo import shipped
from dcae.zoo.loading import load_checkpoint

__all__ = ["KODAK", "kodak_images", "main", "pick_model"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images


def pick_model(
    checkpoint: Optional[str], quality: Optional[int], preset: str = "small"
) -> Tuple[DCAEModel, str]:
    """``(model, description)``: a checkpoint, the shipped model, or a random one."""
    if checkpoint:
        return load_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    if shipped.available_qualities():
        q = shipped.default_quality() if quality is None else quality
        return shipped.load_pretrained(q), f"shipped model, quality {q}"
    torch.manual_seed(0)
    model = DCAEModel(preset).eval()
    model.update(force=True)
    return model, f"random-weight {preset!r} model (seed 0; no weights shipped yet)"


def kodak_images(directory: Path, limit: Optional[int]):
    files = sorted(directory.glob("*.png"))
    if not files:
        sys.exit(f"no PNG images in {directory}")
    return files[:limit] if limit else files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=KODAK, help="directory of PNG images")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--checkpoint", help="model checkpoint (default: shipped model)")
    parser.add_argument("--quality", type=float, help="quality of the shipped model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, what = pick_model(args.checkpoint, args.quality)
    print(f"model: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (
        f"{'image':<12} {'size':>9} {'est y':>9} {'est z':>8} {'real y':>9} {'real z':>8} "
        f"{'overhead':>9} {'rare':>6} {'hdr B':>6} {'bpp':>7} {'enc s':>6}"
    )
    print(header)
    print("-" * len(header))
    tot_est = tot_real = tot_est_y = tot_real_y = tot_est_z = tot_real_z = 0.0
    for path in kodak_images(args.data, args.limit):
        x, _ = image_to_tensor(path)
        with torch.inference_mode():
            lik = model.eval()(x)["likelihoods"]
        est_y = float(-torch.log2(lik["y"]).sum())
        est_z = float(-torch.log2(lik["z"]).sum())
        # symbols the estimate prices above 16 bits: the 16-bit CDF tables give
        # every in-range symbol at least 2^-16, so their real cost is capped
        rare = int((lik["y"] < 2**-16).sum())
        t0 = time.perf_counter()
        data = encode(path, model=model)
        seconds = time.perf_counter() - t0
        stream = unpack(data)
        real_y, real_z = 8 * len(stream.strings[0]), 8 * len(stream.strings[1])
        est, real = est_y + est_z, real_y + real_z
        tot_est, tot_real = tot_est + est, tot_real + real
        tot_est_y, tot_real_y = tot_est_y + est_y, tot_real_y + real_y
        tot_est_z, tot_real_z = tot_est_z + est_z, tot_real_z + real_z
        hdr = len(data) - stream.payload_bytes
        pixels = stream.width * stream.height
        print(
            f"{path.stem:<12} {stream.width:>4}x{stream.height:<4} {est_y:>9.0f} {est_z:>8.0f} "
            f"{real_y:>9} {real_z:>8} {100 * (real / est - 1):>8.3f}% {rare:>6} {hdr:>6} "
            f"{8 * len(data) / pixels:>7.4f} {seconds:>6.2f}"
        )
    print("-" * len(header))
    print(
        f"total: y {100 * (tot_real_y / tot_est_y - 1):.3f}%, "
        f"z {100 * (tot_real_z / tot_est_z - 1):.3f}%, "
        f"y+z {100 * (tot_real / tot_est - 1):.3f}% over the estimate "
        f"({tot_real / 8:.0f} bytes vs {tot_est / 8:.0f})"
    )
    print(
        "rare: y symbols with estimated probability < 2^-16 (cost capped near 16 bits by the "
        "16-bit CDF tables, so real < estimate when many occur, as with untrained weights)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
