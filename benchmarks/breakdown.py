"""Where the time of a compress + decompress goes, against the hardware limit.

For each part of the codec (``g_a``, the hyperprior, the entropy model's
compress and decompress, ``g_s``): its floating-point operations (counted by
``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions), its
median time, and the GFLOP/s it reaches; then the machine's own peak, a
large square matmul measured in the same run, and the lower bound on the
whole compress + decompress that this peak implies.

Usage::

    python benchmarks/breakdown.py --preset paper --size 768x512 --repeats 3
    python benchmarks/breakdown.py --preset paper --dtype bfloat16   # fast mode's transforms
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from dcae import DCAEModel
from dcae.layers.fast import run_autocast

__all__ = ["main", "matmul_peak"]


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: caches, allocator, oneDNN primitives
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n`` by ``n x n`` matmul in ``dtype`` (median)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    seconds = _median_time(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, float]]:
    """Print the table; returns one row per part."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", default="768x512", help="WxH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="precision of g_a/g_s (bfloat16: as in fast mode)",
    )
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    model = DCAEModel(args.preset).eval()
    model.update(force=True)
    x = torch.rand(1, 3, h, w)
    dtype = getattr(torch, args.dtype)

    def transform(t: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
        return t(v) if dtype == torch.float32 else run_autocast(t, v, dtype)

    with torch.no_grad():
        y = transform(model.g_a, x)
        hyper = model.latent_codec.hyper
        h_out = hyper.compress(y)
        params = h_out["params"]
        em = model.entropy_model
        y_out = em.compress(y, params)
        parts = {
            "g_a (analysis)": lambda: transform(model.g_a, x),
            "hyperprior compress": lambda: hyper.compress(y),
            "entropy model compress": lambda: em.compress(y, params),
            "hyperprior decompress": lambda: hyper.decompress(h_out["strings"], h_out["shape"]),
            "entropy model decompress": lambda: em.decompress(
                y_out["strings"], y_out["shape"], params
            ),
            "g_s (synthesis)": lambda: transform(model.g_s, y_out["y_hat"]),
        }
        rows = []
        for name, fn in parts.items():
            flops = _flops(fn)
            seconds = _median_time(fn, args.repeats)
            rows.append({"part": name, "gflop": flops / 1e9, "seconds": seconds})
    peak = {dt: matmul_peak(getattr(torch, dt)) for dt in ("float32", "bfloat16")}
    print(
        f"# {datetime.date.today()}  {platform.processor() or platform.machine()}  "
        f"torch {torch.__version__}  {torch.get_num_threads()} threads  preset {args.preset}  "
        f"{w}x{h}  transforms in {args.dtype}  median of {args.repeats}"
    )
    header = f"{'part':<26} {'GFLOP':>8} {'seconds':>8} {'GFLOP/s':>8} {'of peak':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        is_transform = r["part"].startswith("g_")
        ref = peak[args.dtype] if is_transform else peak["float32"]
        rate = r["gflop"] / r["seconds"]
        print(
            f"{r['part']:<26} {r['gflop']:8.1f} {r['seconds']:8.3f} {rate:8.1f} "
            f"{100 * rate / ref:7.0f}%"
        )
    total_flop = sum(r["gflop"] for r in rows)
    total_s = sum(r["seconds"] for r in rows)
    bound = sum(
        r["gflop"] / (peak[args.dtype] if r["part"].startswith("g_") else peak["float32"])
        for r in rows
    )
    print("-" * len(header))
    overall = total_flop / total_s
    print(f"{'compress + decompress':<26} {total_flop:8.1f} {total_s:8.3f} {overall:8.1f}")
    print(
        f"matmul peak (4096^3): float32 {peak['float32']:.0f} GFLOP/s, "
        f"bfloat16 {peak['bfloat16']:.0f} GFLOP/s; "
        f"lower bound at peak for these FLOPs: {bound:.2f} s "
        f"(measured {total_s:.2f} s = {total_s / bound:.2f}x the bound)"
    )
    return rows


if __name__ == "__main__":
    main()
