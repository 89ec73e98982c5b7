"""End-to-end latency of dcae (reference attention, fused attention, fast
mode) and optionally of the official implementation, in one run.

For each variant: ``forward``, ``compress`` and ``decompress`` of one image
(batch 1, random content, random weights unless ``--checkpoint``), median of
``--repeats`` runs with the variants interleaved round-robin, and the peak
extra resident memory of a compress + decompress (RSS sampled every 2 ms).
The official model gets the same weights (``DCAEModel.to_official_state_dict``)
so every variant computes the same function.

Usage::

    python benchmarks/bench_latency.py --preset paper --size 768x512 --repeats 3 \\
        --official-repo /work/official
    python benchmarks/bench_latency.py --preset small --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

import dcae
from dcae.fast import fast_mode

__all__ = ["main"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        return 0


class PeakRSS:
    """Peak resident memory above the starting level while the block runs."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


class Variant:
    """One way of running the codec: ``forward``, ``compress``, ``decompress``."""

    def __init__(self, name: str, model: Any, setup: Callable[[], Any]):
        self.name, self.model, self.setup = name, model, setup
        self.stream: Optional[Dict[str, Any]] = None

    def forward(self, x: torch.Tensor) -> Any:
        with self.setup():
            return self.model(x)

    def compress(self, x: torch.Tensor) -> Any:
        with self.setup():
            self.stream = self.model.compress(x)
            return self.stream

    def decompress(self, x: torch.Tensor) -> Any:
        assert self.stream is not None
        with self.setup():
            return self.model.decompress(self.stream["strings"], self.stream["shape"])


def _backend(name: str) -> Callable[[], Any]:
    return lambda: dcae.attention_backend(name)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def build_variants(args: argparse.Namespace) -> List[Variant]:
    torch.manual_seed(0)
    model = dcae.DCAEModel(args.preset).eval()
    if args.checkpoint:
        from dcae.pretrained import load_checkpoint  # type: ignore[attr-defined]

        model = load_checkpoint(args.checkpoint).eval()
    model.update(force=True)
    variants = []
    if args.official_repo:
        sys.path.insert(0, args.official_repo)
        from models.dcae import DCAE  # type: ignore[import-not-found]

        official = DCAE().eval()
        official.load_state_dict(model.to_official_state_dict(), strict=False)
        official.update(force=True)
        variants.append(Variant("official", official, _nothing))
    variants.append(Variant("dcae reference", model, _backend("reference")))
    variants.append(Variant("dcae fused (auto)", model, _backend("auto")))

    @contextlib.contextmanager
    def fast() -> Iterator[None]:
        fast_mode(model, torch.bfloat16)
        try:
            with dcae.attention_backend("auto"):
                yield
        finally:
            fast_mode(model, enabled=False)

    variants.append(Variant("dcae fast (bf16 g_a/g_s)", model, fast))
    return variants


def main(argv: Optional[List[str]] = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", default="768x512", help="WxH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--official-repo", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-forward", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.official_repo and args.preset != "paper":
        parser.error("--official-repo needs --preset paper")
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(1)
    x = torch.rand(1, 3, h, w)
    variants = build_variants(args)
    tasks = ["compress", "decompress"]
    if not args.no_forward:
        tasks.insert(0, "forward")
    times: Dict[str, Dict[str, List[float]]] = {v.name: {t: [] for t in tasks} for v in variants}
    peak: Dict[str, float] = {}
    decoded: Dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for v in variants:  # warm-up, memory, decodability
            with PeakRSS() as mem:
                v.compress(x)
                decoded[v.name] = v.decompress(x)["x_hat"]
            peak[v.name] = mem.extra_mb
        for _ in range(args.repeats):
            for v in variants:
                for task in tasks:
                    t0 = time.perf_counter()
                    out = getattr(v, task)(x)
                    times[v.name][task].append(time.perf_counter() - t0)
                    if task == "decompress" and not torch.equal(out["x_hat"], decoded[v.name]):
                        raise RuntimeError(f"{v.name}: decoding is not repeatable")
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} {platform.node()} "
        f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"preset {args.preset}, {w}x{h}, median of {args.repeats}"
    )
    print()
    ref = "official" if args.official_repo else "dcae reference"
    med = {n: {t: statistics.median(ts) for t, ts in d.items()} for n, d in times.items()}
    total_ref = med[ref]["compress"] + med[ref]["decompress"]
    head = ["variant", *[f"{t} s" for t in tasks], "comp+decomp s", f"speed-up vs {ref}"]
    head += ["peak extra RSS MB", "PSNR vs x (dB)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for v in variants:
        total = med[v.name]["compress"] + med[v.name]["decompress"]
        mse = torch.mean((decoded[v.name].clamp(0, 1) - x) ** 2).item()
        psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
        cells = [v.name, *[f"{med[v.name][t]:.2f}" for t in tasks], f"{total:.2f}"]
        cells += [f"{total_ref / total:.2f}x", f"{peak[v.name]:.0f}", f"{psnr:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
