"""Bits and PSNR of the two padding policies on odd-size images.

``minimal``: no padding, the latent is ``ceil(H/16) x ceil(W/16)`` (windows
padded and masked inside attention).  ``official``: centred zero padding to a
multiple of 128, as the official scripts.  Each crop is taken from the centre
of a Kodak image; bpp counts the whole file (header included) and the payload
(strings only) per original pixel; PSNR is on the decoded 8-bit image.

Usage::

    python benchmarks/padding_policies.py [--limit N] [--sizes 97x131 ...]
                                          [--checkpoint PATH | --quality Q]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dcae.bitstream import unpack
from dcae.codec import decode, encode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate_overhead import KODAK, kodak_images, pick_model  # noqa: E402

__all__ = ["main", "psnr"]

DEFAULT_SIZES = ["1x1", "17x29", "97x131", "129x257", "250x333", "383x511", "511x767"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def centre_crop(img: Image.Image, h: int, w: int) -> Image.Image:
    if h > img.height or w > img.width:
        img = img.rotate(90, expand=True)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, default=4, help="Kodak images per size")
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="HxW crops")
    parser.add_argument("--checkpoint")
    parser.add_argument("--quality", type=float)
    args = parser.parse_args(argv)
    model, what = pick_model(args.checkpoint, args.quality)
    files = kodak_images(args.data, args.limit)
    print(f"model: {what}; {len(files)} Kodak crops per size")
    header = (
        f"{'HxW':>9} | {'minimal bpp':>11} {'payload':>8} {'PSNR':>6} {'s':>5} | "
        f"{'official bpp':>12} {'payload':>8} {'PSNR':>6} {'s':>5} | {'d bpp':>7} {'d PSNR':>7}"
    )
    print(header)
    print("-" * len(header))
    for spec in args.sizes:
        h, w = (int(v) for v in spec.lower().split("x"))
        res = {p: [0.0, 0.0, 0.0, 0.0] for p in ("minimal", "official")}
        for path in files:
            ref = centre_crop(Image.open(path).convert("RGB"), h, w)
            ref_arr = np.asarray(ref)
            for policy, acc in res.items():
                t0 = time.perf_counter()
                data = encode(ref, model=model, padding=policy)
                out = np.asarray(decode(data, model=model))
                acc[3] += time.perf_counter() - t0
                acc[0] += 8 * len(data) / (h * w)
                acc[1] += 8 * unpack(data).payload_bytes / (h * w)
                acc[2] += psnr(out, ref_arr)
        n = len(files)
        m = [v / n for v in res["minimal"]]
        o = [v / n for v in res["official"]]
        print(
            f"{spec:>9} | {m[0]:>11.4f} {m[1]:>8.4f} {m[2]:>6.2f} {m[3]:>5.2f} | "
            f"{o[0]:>12.4f} {o[1]:>8.4f} {o[2]:>6.2f} {o[3]:>5.2f} | "
            f"{100 * (o[1] / m[1] - 1):>+6.1f}% {o[2] - m[2]:>+7.2f}",
            flush=True,
        )
    print("d bpp: payload of official relative to minimal; d PSNR: official - minimal (dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
