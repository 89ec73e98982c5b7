"""Speed of portable coding against the default float32 coding.

Two tables:

* **layers**: the dense float64 convolutions that dominate portable coding,
  at the shapes of the shipped model's mean/scale/LRP networks (a 48x32
  latent, Kodak): float32 ``conv2d`` (oneDNN), float64 ``conv2d`` (PyTorch's
  im2col fallback), one float64 product per kernel tap
  (``dcae.latent_codecs.float64_layers.DenseConv64``, for other kernel sizes) and the
  float64 Winograd F(2x2, 3x3) portable coding uses for 3x3 kernels
  (``WinogradConv64``); median of 15 calls.
* **codec**: compress + decompress of the shipped model in both modes,
  interleaved in one process, per thread count: the median time of each mode
  over ``--repeats`` runs of every image, and the ratio portable / default
  of each adjacent pair of runs (median and interquartile range), which
  shrugs off the drift of a shared machine.

Usage::

    python benchmarks/portable_cost.py [--limit 3] [--threads 1,2] [--quality 4]

To time another dcae (for example the first portable version, git 9dff24c),
run this file with that checkout first on ``PYTHONPATH`` and ``--no-layers``.
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
from typing import Callable, List

import torch
import torch.nn.functional as F

import dcae
from dcae.format.pixels import image_to_tensor
from dcae.zoo import shipped

__all__ = ["main"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images


def _median_ms(fn: Callable[..., object], *args: object, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _layers() -> None:
    from dcae.latent_codecs.float64_layers import DenseConv64, WinogradConv64

    print(
        "| layer (48x32) | float32 conv2d | float64 conv2d | float64 per-tap "
        "| float64 Winograd | Winograd / f32 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for cin, cout in ((384, 64), (352, 64), (320, 64), (288, 64), (64, 48), (48, 32)):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        x = torch.randn(1, cin, 32, 48)
        conv64 = torch.nn.Conv2d(cin, cout, 3, padding=1).double()
        conv64.load_state_dict(conv.state_dict())
        dense, winograd = DenseConv64(conv64), WinogradConv64(conv64)
        x64 = x.double()
        with torch.no_grad():
            t32 = _median_ms(conv, x)
            t64 = _median_ms(F.conv2d, x64, conv64.weight, conv64.bias, 1, 1)
            tap = _median_ms(dense, x64)
            wino = _median_ms(winograd, x64)
        print(
            f"| {cin} -> {cout}, 3x3 | {t32:.2f} ms | {t64:.2f} ms | {tap:.2f} ms "
            f"| {wino:.2f} ms | {wino / t32:.2f}x |"
        )


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--quality", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-layers", action="store_true")
    args = parser.parse_args(argv)
    files = sorted(args.images.glob("*.png"))[: args.limit]
    if not files:
        sys.exit(f"no PNG images in {args.images}")
    model = shipped.load_pretrained(args.quality).eval()
    print(
        f"# portable cost, {datetime.date.today()}, {platform.machine()}, torch "
        f"{torch.__version__}, dcae at {Path(dcae.__file__).parent}, shipped model "
        f"q{args.quality:g}, {len(files)} images"
    )
    saved = torch.get_num_threads()
    try:
        if not args.no_layers:
            torch.set_num_threads(1)
            print("\nlayers, 1 thread:\n")
            _layers()
        print("\n| threads | default | portable | portable / default (median, IQR of pairs) |")
        print("|---:|---:|---:|---:|")
        for n in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(n)
            times = {False: [], True: []}
            ratios = []
            for path in files:
                x = image_to_tensor(path)[0]
                for rep in range(args.repeats + 1):  # the first round warms up
                    pair = {}
                    for portable in (False, True):
                        with torch.inference_mode():
                            t0 = time.perf_counter()
                            out = model.compress(x, args.quality, portable=portable)
                            model.decompress(out["strings"], out["shape"], portable=portable)
                            pair[portable] = time.perf_counter() - t0
                    if rep:
                        times[False].append(pair[False])
                        times[True].append(pair[True])
                        ratios.append(pair[True] / pair[False])
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            d, p = (statistics.median(times[k]) for k in (False, True))
            print(f"| {n} | {d:.3f} s | {p:.3f} s | {q2:.3f}x ({q1:.3f}-{q3:.3f}) |")
    finally:
        torch.set_num_threads(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
