"""Cross-decoding table: encode under one configuration, decode under another.

Encode configurations: attention backend {reference, fused, sdpa} x torch
threads {1, 2} x entropy networks {eager, compiled} x transforms {fp32, bf16
fast mode}; decode configurations: backend x threads x {eager, compiled}
(fast mode changes only ``g_s``, after decoding, so it cannot matter there).
For every image and pair the strings are decoded (``y_hat`` only) and a
``DecodingError`` counts as a lost image.  Identical strings from different
encode configurations are decoded once.  ``--mode legacy`` runs the same
table for the non-portable float32 coding (the default of ``model.compress``).

The same run measures the cost of the mode against legacy coding under the
default configuration: bytes of the strings and compress + decompress time
(median over the images, both modes interleaved).

Usage::

    python benchmarks/portable_cross.py [--limit N] [--quality Q] [--mode portable|legacy]
    python benchmarks/portable_cross.py --preset paper --limit 2   # random weights, seed 0
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

import dcae
from dcae import DCAEModel, DecodingError, attention_backend
from dcae.eval.metrics import psnr
from dcae.format.pixels import image_to_tensor
from dcae.latent_codecs.coding_mode import CodingMode
from dcae.layers.fast import fast_mode
from dcae.zoo import shipped

__all__ = ["main"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images
BACKENDS = ("reference", "fused", "sdpa")


def _entropy_networks(model: DCAEModel) -> List[Tuple[torch.nn.Module, str, torch.nn.Module]]:
    em = model.entropy_model
    out = [(model.latent_codec.hyper, "h_s", model.latent_codec.hyper.h_s)]
    for name in ("cross_attention", "mean_transforms", "scale_transforms", "lrp_transforms"):
        modules = getattr(em, name)
        for i in range(len(modules)):
            out.append((modules, str(i), modules[i]))
    return out


class Compiled:
    """Context: the entropy networks wrapped by ``torch.compile`` (restored after)."""

    def __init__(self, model: DCAEModel, enabled: bool):
        self.model, self.enabled = model, enabled

    def __enter__(self) -> None:
        self.saved = _entropy_networks(self.model) if self.enabled else []
        for parent, name, module in self.saved:
            parent._modules[name] = torch.compile(module, dynamic=False)

    def __exit__(self, *exc) -> None:
        for parent, name, module in self.saved:
            parent._modules[name] = module


class Config:
    """Context: backend, threads, compiled entropy networks, fast mode."""

    def __init__(self, model, backend, threads, compiled, fast=False):
        self.model, self.backend, self.threads = model, backend, threads
        self.compiled, self.fast = compiled, fast

    def __enter__(self) -> None:
        self.saved_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        fast_mode(self.model, enabled=self.fast)
        self.stack = [
            attention_backend(self.backend, self.model),
            Compiled(self.model, self.compiled),
        ]
        for c in self.stack:
            c.__enter__()

    def __exit__(self, *exc) -> None:
        for c in reversed(self.stack):
            c.__exit__(*exc)
        fast_mode(self.model, enabled=False)
        torch.set_num_threads(self.saved_threads)


def _label(backend, threads, compiled, fast=None) -> str:
    text = f"{backend}/{threads}t/{'comp' if compiled else 'eager'}"
    return text if fast is None else text + ("/bf16" if fast else "/fp32")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=KODAK, help="directory of PNG images")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--quality", type=float, help="shipped model quality (default: default)")
    parser.add_argument("--preset", help="a random-weight model of this preset instead")
    parser.add_argument("--mode", choices=("portable", "legacy"), default="portable")
    parser.add_argument(
        "--crop", type=int, help="code the centred SxS crop of each image (slow presets)"
    )
    parser.add_argument("--no-compile", action="store_true", help="leave out compiled networks")
    parser.add_argument(
        "--cost-only", action="store_true", help="only the rate, PSNR and time of the modes"
    )
    args = parser.parse_args(argv)
    portable = args.mode == "portable"
    files = sorted(args.data.glob("*.png"))[: args.limit or None]
    if not files:
        sys.exit(f"no PNG images in {args.data}")
    if args.preset:
        torch.manual_seed(0)
        model = DCAEModel(args.preset).eval()
        model.update(force=True)
        what = f"random-weight {args.preset!r} model (seed 0)"
    else:
        q = args.quality or shipped.default_quality()
        model = shipped.load_pretrained(q)
        what = f"shipped model, quality {q}"
    compiles = (False,) if args.no_compile else (False, True)
    enc_configs = list(itertools.product(BACKENDS, (1, 2), compiles, (False, True)))
    dec_configs = list(itertools.product(BACKENDS, (1, 2), compiles))
    print(
        f"{datetime.date.today()}, {platform.machine()} {platform.processor() or ''}, "
        f"torch {torch.__version__}, dcae {dcae.__version__}; {what}; mode {args.mode}; "
        f"{len(files)} images; {len(enc_configs)} encode x {len(dec_configs)} decode configs"
    )
    lost: Dict[Tuple, int] = {}
    cost: Dict[str, List[float]] = {
        k + m: [] for m in ("legacy", "portable") for k in ("", "t_", "psnr_")
    }
    with torch.no_grad():
        x = _crop(image_to_tensor(files[0])[0], args.crop)
        for mode in (False, True):  # warm-up: first calls allocate and pick kernels
            out = model.compress(x, portable=mode)
            model.decompress(out["strings"], out["shape"], portable=mode)
        for path in files:
            x = _crop(image_to_tensor(path)[0], args.crop)
            for mode in ("legacy", "portable"):  # cost under the default configuration
                t0 = time.perf_counter()
                out = model.compress(x, portable=mode == "portable")
                x_hat = model.decompress(
                    out["strings"], out["shape"], portable=mode == "portable"
                )["x_hat"]
                cost["t_" + mode].append(time.perf_counter() - t0)
                cost[mode].append(sum(len(s[0]) for s in out["strings"]))
                cost["psnr_" + mode].append(float(psnr(x, x_hat.clamp(0, 1))))
            if args.cost_only:
                continue
            by_strings: Dict[Tuple, List[Tuple]] = {}
            for cfg in enc_configs:
                with Config(model, *cfg):  # nothing bound but the latent: decoded to
                    # y_hat below (skipping g_s)
                    enc = model.compress(x, portable=portable, associated_data=None)
                key = (tuple(enc["strings"][0]), tuple(enc["strings"][1]))
                by_strings.setdefault(key, []).append((cfg, enc))
            for group in by_strings.values():
                enc = group[0][1]
                for dcfg in dec_configs:
                    with Config(model, *dcfg):
                        try:
                            model.decompress_latent(
                                enc["strings"],
                                enc["shape"],
                                CodingMode.of(portable=portable),
                                associated_data=None,
                            )
                            ok = True
                        except DecodingError:
                            ok = False
                    for cfg, _ in group:
                        lost[(cfg, dcfg)] = lost.get((cfg, dcfg), 0) + (not ok)
            print(f"  {path.name}: {len(by_strings)} distinct streams", flush=True)
    print()
    if not args.cost_only:
        _table(files, enc_configs, dec_configs, lost)
    rate = 100 * (sum(cost["portable"]) / sum(cost["legacy"]) - 1)
    t_ratio = statistics.median(cost["t_portable"]) / statistics.median(cost["t_legacy"])
    d_psnr = statistics.mean(cost["psnr_portable"]) - statistics.mean(cost["psnr_legacy"])
    print(
        f"portable vs legacy (default config): bytes {rate:+.3f}%, PSNR {d_psnr:+.4f} dB, "
        f"compress + decompress median {statistics.median(cost['t_portable']):.3f} s vs "
        f"{statistics.median(cost['t_legacy']):.3f} s ({t_ratio:.2f}x)"
    )
    return 0


def _crop(x: torch.Tensor, size) -> torch.Tensor:
    if not size:
        return x
    top, left = max(0, (x.shape[2] - size) // 2), max(0, (x.shape[3] - size) // 2)
    return x[:, :, top : top + size, left : left + size].contiguous()


def _table(files, enc_configs, dec_configs, lost) -> None:
    print(f"lost images per encode configuration (of {len(files)} per decode configuration):")
    header = f"{'encoded with':<28} {'lost (all decode configs)':>26} {'worst decode config':>28}"
    print(header)
    print("-" * len(header))
    total = 0
    for cfg in enc_configs:
        row = {d: lost[(cfg, d)] for d in dec_configs}
        worst = max(row, key=row.get)
        total += sum(row.values())
        print(
            f"{_label(*cfg):<28} {sum(row.values()):>26} {_label(*worst) + f' ({row[worst]})':>28}"
        )
    pairs = len(files) * len(enc_configs) * len(dec_configs)
    print(f"total lost: {total} of {pairs} (image, encode, decode) triples")


if __name__ == "__main__":
    sys.exit(main())
