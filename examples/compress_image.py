"""Compress an image with DCAE and decompress it again.

Uses the model shipped with dcae when there is one (``--quality``, any real
number in its range), a
checkpoint of any layout (``--checkpoint``: dcae, the authors' official files
or CompressAI's port), or else an untrained ``small`` model (the bits are
real, the picture is not: train one with ``dcae train``)::

    python examples/compress_image.py photo.png --out photo_rec.png
    python examples/compress_image.py photo.png --checkpoint 0.05checkpoint_best.pth.tar
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from PIL import Image
from torchvision.transforms.functional import to_pil_image, to_tensor

import dcae
from dcae.zoo.loading import load_model
from dcae.zoo.shipped import available_qualities, load_pretrained


def get_model(checkpoint: Optional[Path], quality: Optional[float]) -> dcae.DCAEModel:
    """The model to use: a checkpoint, the shipped weights, or an untrained one."""
    if checkpoint is not None:
        return load_model(checkpoint)
    if available_qualities():
        return load_pretrained(quality)
    print("no shipped weights: using an untrained 'small' model")
    torch.manual_seed(0)
    model = dcae.DCAEModel("small").eval()
    model.update(force=True)
    return model


@torch.no_grad()
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Compress, decompress, report bits per pixel and PSNR."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", type=Path)
    p.add_argument("--checkpoint", type=Path, help="checkpoint in any layout")
    p.add_argument(
        "--quality", type=float, help="quality of the shipped model (any real number in its range)"
    )
    p.add_argument("--out", type=Path, help="write the reconstruction here")
    args = p.parse_args(argv)

    model = get_model(args.checkpoint, args.quality)
    x = to_tensor(Image.open(args.image).convert("RGB")).unsqueeze(0)

    # any size; a variable-rate model codes at its default quality (load_pretrained's
    # quality), recorded in enc["shape"] with the image size
    enc = model.compress(x)
    x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]

    num_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
    bpp = num_bytes * 8 / (x.shape[2] * x.shape[3])
    mse = torch.mean((x_hat - x) ** 2).item()
    psnr = -10 * math.log10(max(mse, 1e-10))
    print(f"{args.image}: {num_bytes} bytes, {bpp:.4f} bpp, {psnr:.2f} dB PSNR")
    if args.out:
        to_pil_image(x_hat[0]).save(args.out)
    return {"bytes": num_bytes, "bpp": bpp, "psnr": psnr, "x_hat": x_hat}


if __name__ == "__main__":
    main()
