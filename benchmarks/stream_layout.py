"""Byte cost of one rANS stream per sample (all slices) vs one stream per slice.

dcae writes one stream per sample holding every slice, as the official code
does.  This script codes the same symbols both ways and prints the sizes.

    python benchmarks/stream_layout.py [--images DIR] [--limit N] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder
from PIL import Image

from dcae import DCAEModel
from dcae.zoo.loading import load_checkpoint
from dcae.zoo.shipped import available_qualities, load_pretrained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--images",
        default=os.environ.get("DCAE_KODAK", "kodak"),
        help="folder of the Kodak PNG images (default: $DCAE_KODAK or ./kodak)",
    )
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--quality", type=float, default=None)
    args = p.parse_args()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        name = args.checkpoint
    elif available_qualities():
        model = load_pretrained(args.quality)
        name = f"shipped q{args.quality or 'default'}"
    else:
        torch.manual_seed(0)
        model = DCAEModel("small").eval()
        model.update()
        name = "small, random weights"
    em = model.entropy_model
    gc = em.gaussian_conditional
    cdfs = gc.quantized_cdf.tolist()
    lengths = gc.cdf_length.reshape(-1).int().tolist()
    offsets = gc.offset.reshape(-1).int().tolist()
    files = sorted(Path(args.images).glob("*.png"))[: args.limit]
    rows = []
    for f in files:
        x = torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255)
        x = x.permute(2, 0, 1)[None]
        recorded: list = []
        handle = em.register_params_hook(lambda i, m, s, out=recorded: out.append((m, s)))
        with torch.no_grad():
            y = model.g_a(x)
            enc = model.compress(x)
        handle.remove()
        shared = len(enc["strings"][0][0])
        per_slice = 0
        for (means, scales), y_slice in zip(recorded, y.split(em.slice_sizes, 1)):
            symbols = torch.round(y_slice - means).int().flatten().tolist()
            indexes = em.build_indexes(scales).flatten().tolist()
            coder = BufferedRansEncoder()
            coder.encode_with_indexes(symbols, indexes, cdfs, lengths, offsets)
            per_slice += len(coder.flush())
        rows.append((f.name, shared, per_slice))
    print(f"model: {name}; {len(rows)} images; {em.num_slices} slices")
    print("| image | one stream (bytes) | one per slice (bytes) | extra |")
    print("|---|---:|---:|---:|")
    for n, a, b in rows:
        print(f"| {n} | {a} | {b} | {b - a:+d} ({100 * (b - a) / a:+.2f}%) |")
    extra = [b - a for _, a, b in rows]
    rel = [100 * (b - a) / a for _, a, b in rows]
    print(
        f"| median | | | {statistics.median(extra):+.0f} bytes ({statistics.median(rel):+.2f}%) |"
    )


if __name__ == "__main__":
    main()
