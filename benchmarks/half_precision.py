"""float16 numerics of a DCAE model, measured on the CPU with real half tensors.

A GPU without bfloat16 (or ``--amp`` with float16 autocast) runs the
network in float16, whose range ends at 65504 and whose smallest normal
number is 6.1e-5.  This script runs a model twice on the same images, once in
float32 and once converted to float16 (``model.half()``, half inputs; the
CPU executes real half arithmetic, so no GPU is needed), and compares what
each kind of block returns:

* non-finite values (inf/NaN) per block kind, which must be 0;
* the largest and the mean difference to float32, relative to the largest
  float32 magnitude of that block's output (``max |h - f| / max |f|``), per
  block kind: LayerNorm, window attention, dictionary cross-attention, the
  entropy parameters (means, scales), the likelihoods, and ``x_hat``.  The
  differences include what earlier blocks passed on: a latent that rounds
  to another integer in float16 changes every later block's input (the
  largest differences of the likelihoods are such flips);
* the rate (bpp from the likelihoods) and PSNR in both precisions.

Usage (Kodak or any folder of images; centre crops)::

    python benchmarks/half_precision.py --images /path/to/kodak \\
        --presets small-vr,paper --crop 256 --max-images 4

``small-vr`` uses the shipped weights, other presets random weights (seed 0).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from dcae import DCAEModel
from dcae.format.images import image_files
from dcae.format.pixels import image_to_tensor
from dcae.layers.dictionary import DictionaryCrossAttention
from dcae.layers.window_attention import WindowAttention


def model_for(preset: str) -> DCAEModel:
    if preset == "small-vr":
        from dcae.zoo.shipped import load_pretrained

        return load_pretrained().eval()
    torch.manual_seed(0)
    return DCAEModel(preset).eval()


def kind_of(name: str, module: nn.Module) -> str:
    if isinstance(module, nn.LayerNorm):
        return "LayerNorm"
    if isinstance(module, WindowAttention):
        return "window attention"
    if isinstance(module, DictionaryCrossAttention):
        return "dictionary cross-attention"
    if ".mean_transforms." in f".{name}." and name.count(".") == 3:
        return "entropy means"
    if ".scale_transforms." in f".{name}." and name.count(".") == 3:
        return "entropy scales"
    return ""


def capture(model: nn.Module) -> Tuple[Dict[str, List[Tensor]], List]:
    """Forward hooks recording every watched block's outputs by name."""
    outputs: Dict[str, List[Tensor]] = defaultdict(list)
    handles = []
    for name, module in model.named_modules():
        if kind_of(name, module):

            def hook(_m, _i, out, name=name):
                outputs[name].append(out.detach().float())

            handles.append(module.register_forward_hook(hook))
    return outputs, handles


def run(model: DCAEModel, x: Tensor, quality) -> Tuple[Dict, Dict[str, List[Tensor]]]:
    outputs, handles = capture(model)
    kw = {} if quality is None else {"quality": quality}
    with torch.no_grad():
        out = model(x, **kw)
    for h in handles:
        h.remove()
    return out, outputs


def record(s: Dict[str, float], a: Tensor, b: Tensor) -> None:
    """Add one float32 (``a``) / float16 (``b``) output pair to a block's stats."""
    s["bad"] += int((~torch.isfinite(b)).sum())
    scale = float(a.abs().max()) or 1.0
    s["diff"] = max(s["diff"], float((b - a).abs().max()) / scale)
    s["sum"] += float((b - a).abs().mean()) / scale
    s["n"] += 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of images (e.g. Kodak)")
    p.add_argument("--presets", default="small-vr,paper")
    p.add_argument("--crop", type=int, default=256, help="centre crop side")
    p.add_argument("--max-images", type=int, default=4)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = image_files(args.images)[: args.max_images]
    if not files:
        print(f"no images in {args.images}", file=sys.stderr)
        return 1
    xs = []
    for f in files:
        x, _ = image_to_tensor(f)
        h, w = x.shape[-2:]
        c = min(args.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        xs.append(x[:, :, top : top + c, left : left + c])
    print(
        f"float16 against float32 on the CPU, {len(xs)} images ({args.crop}x{args.crop} centre "
        f"crops of {args.images.name}), torch {torch.__version__}\n"
    )
    for preset in args.presets.split(","):
        ref = model_for(preset)
        half = copy.deepcopy(ref).half()
        quality = ref.default_quality if ref.variable_rate else None
        stats: Dict[str, Dict[str, float]] = defaultdict(
            lambda: {"bad": 0, "diff": 0.0, "sum": 0.0, "n": 0}
        )
        rows = []
        for x in xs:
            out_f, blocks_f = run(ref, x, quality)
            out_h, blocks_h = run(half, x.half(), quality)
            for name, outs in blocks_f.items():
                kind = kind_of(name, dict(ref.named_modules())[name])
                for a, b in zip(outs, blocks_h[name]):
                    record(stats[kind], a, b)
            for key, a, b in (
                ("likelihoods y", out_f["likelihoods"]["y"], out_h["likelihoods"]["y"].float()),
                ("likelihoods z", out_f["likelihoods"]["z"], out_h["likelihoods"]["z"].float()),
                ("x_hat", out_f["x_hat"], out_h["x_hat"].float()),
            ):
                record(stats[key], a, b)
            n = x.shape[-1] * x.shape[-2]
            for label, out in (("float32", out_f), ("float16", out_h)):
                bpp = (
                    sum(float(-torch.log2(v.float()).sum()) for v in out["likelihoods"].values())
                    / n
                )
                mse = float(((out["x_hat"].float().clamp(0, 1) - x) ** 2).mean())
                rows.append((label, bpp, -10 * math.log10(max(mse, 1e-12))))
        print(f"## {preset}" + (f" (quality {quality:g})" if quality is not None else ""))
        print(f"{'block':30s} {'inf/NaN':>8s} {'max rel. diff':>14s} {'mean rel. diff':>15s}")
        for kind, s in stats.items():
            mean = s["sum"] / max(s["n"], 1)
            print(f"{kind:30s} {s['bad']:8d} {s['diff']:14.2e} {mean:15.2e}")
        for label in ("float32", "float16"):
            sel = [r for r in rows if r[0] == label]
            bpp = sum(r[1] for r in sel) / len(sel)
            psnr = sum(r[2] for r in sel) / len(sel)
            print(f"{label}: {bpp:.4f} bpp, {psnr:.2f} dB (mean of {len(sel)})")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
