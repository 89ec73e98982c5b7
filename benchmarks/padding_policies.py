"""Bits and PSNR of the padding policies on odd-size images.

``minimal``: edge replication, the image centred, to a multiple of 16, each
side at least 32 (the latent is ``ceil(H/16) x ceil(W/16)`` for sides of 32
or more).  ``unpadded``: what ``minimal`` was before format version 5, no
padding (the layers pad with zeros and the attention masks its windows).
``official``: centred padding to a multiple of 128, as the official scripts.
Each crop is taken from the centre of a Kodak image; bpp counts the whole file
(header included; for ``unpadded`` the strings plus the same header) and the
payload (strings only) per original pixel; PSNR is on the decoded 8-bit image.

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
import torch
from PIL import Image

from dcae.codec import decode, encode
from dcae.format.container import unpack
from dcae.format.pixels import image_to_tensor, tensor_to_uint8

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


def unpadded(model, ref: Image.Image, quality) -> tuple:
    """``(payload bytes, decoded array)`` of the model coding ``ref`` as it is
    (the ``minimal`` policy of format versions 3 and 4)."""
    x, _ = image_to_tensor(ref)
    kwargs = {} if quality is None else {"quality": quality}
    with torch.inference_mode():
        out = model.compress(x, portable=True, associated_data=None, **kwargs)
        x_hat = model.decompress(
            out["strings"], out["shape"], portable=True, associated_data=None
        )["x_hat"]
    return sum(len(s[0]) for s in out["strings"]), tensor_to_uint8(x_hat).numpy()


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
    policies = ("minimal", "unpadded", "official")
    header = f"{'HxW':>9} | " + " | ".join(
        f"{p + ' bpp':>13} {'payload':>8} {'PSNR':>6} {'s':>5}" for p in policies
    )
    print(header)
    print("-" * len(header))
    quality = getattr(model, "default_quality", None)
    for spec in args.sizes:
        h, w = (int(v) for v in spec.lower().split("x"))
        res = {p: [0.0, 0.0, 0.0, 0.0] for p in policies}
        for path in files:
            ref = centre_crop(Image.open(path).convert("RGB"), h, w)
            ref_arr = np.asarray(ref)
            header_bytes = 0  # of the minimal file (the policies come in this order)
            for policy, acc in res.items():
                t0 = time.perf_counter()
                if policy == "unpadded":
                    payload, out = unpadded(model, ref, quality)
                    size = payload + header_bytes
                else:
                    data = encode(ref, model=model, padding=policy)
                    out = np.asarray(decode(data, model=model))
                    size, payload = len(data), unpack(data).payload_bytes
                    header_bytes = header_bytes or size - payload
                acc[3] += time.perf_counter() - t0
                acc[0] += 8 * size / (h * w)
                acc[1] += 8 * payload / (h * w)
                acc[2] += psnr(out, ref_arr)
        n = len(files)
        cells = []
        for p in policies:
            v = [x / n for x in res[p]]
            cells.append(f"{v[0]:>13.4f} {v[1]:>8.4f} {v[2]:>6.2f} {v[3]:>5.2f}")
        print(f"{spec:>9} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
