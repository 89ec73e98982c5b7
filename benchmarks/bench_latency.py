"""End-to-end latency of dcae (reference attention, fused attention, fast
mode) and optionally of the official implementation, in one run.

For each variant: ``forward``, ``compress`` and ``decompress`` of one image
(batch 1, random content, random weights unless ``--checkpoint``), median of
``--repeats`` runs with the variants interleaved round-robin, and the peak
extra resident memory of a compress + decompress (RSS sampled every 2 ms).
The official model gets the same weights (``DCAEModel.to_official_state_dict``)
so every variant computes the same function.

On CUDA (``--device cuda``) every timed call is bracketed by
``torch.cuda.synchronize`` and the memory column is the peak of
``torch.cuda.max_memory_allocated`` over a compress + decompress; cuDNN stays
on (the official scripts switch it off).  ``--image`` times a real image
(e.g. a Kodak file) instead of random content.

Usage::

    python benchmarks/bench_latency.py --preset paper --size 768x512 --repeats 3 \\
        --official-repo /path/to/DCAE
    python benchmarks/bench_latency.py --preset small --repeats 5
    python benchmarks/bench_latency.py --device cuda --fast-dtype float16 --repeats 20 \\
        --image /path/to/kodak/kodim01.png --official-repo /path/to/DCAE
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
from dcae.format.pixels import image_to_tensor
from dcae.layers.fast import fast_mode

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


def _backend(name: str, model: torch.nn.Module) -> Callable[[], Any]:
    return lambda: dcae.attention_backend(name, model)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


class PeakCUDA:
    """Peak CUDA memory allocated inside the ``with`` block, as :class:`PeakRSS`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.extra_mb = 0.0

    def __enter__(self) -> PeakCUDA:
        torch.cuda.synchronize(self.device)
        self._base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.cuda.synchronize(self.device)
        self.extra_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20


def build_variants(args: argparse.Namespace) -> List[Variant]:
    torch.manual_seed(0)
    model = dcae.DCAEModel(args.preset).eval()
    if args.checkpoint:
        from dcae.zoo.loading import load_checkpoint  # type: ignore[attr-defined]

        model = load_checkpoint(args.checkpoint).eval()
    model.update(force=True)
    model = model.to(args.device)
    variants = []
    if args.official_repo:
        sys.path.insert(0, args.official_repo)
        from models.dcae import DCAE  # type: ignore[import-not-found]

        official = DCAE().eval()
        official.load_state_dict(model.to_official_state_dict(), strict=False)
        official.update(force=True)
        official = official.to(args.device)
        variants.append(Variant("official", official, _nothing))
    variants.append(Variant("dcae reference", model, _backend("reference", model)))
    variants.append(Variant("dcae fused (auto)", model, _backend("auto", model)))

    @contextlib.contextmanager
    def fast() -> Iterator[None]:
        fast_mode(model, getattr(torch, args.fast_dtype))
        try:
            with dcae.attention_backend("auto", model):
                yield
        finally:
            fast_mode(model, enabled=False)

    short = {"bfloat16": "bf16", "float16": "fp16"}[args.fast_dtype]
    variants.append(Variant(f"dcae fast ({short} g_a/g_s)", model, fast))
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
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--image", default=None, help="time this image instead of random content")
    parser.add_argument("--fast-dtype", default="bfloat16", choices=["bfloat16", "float16"])
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.official_repo and args.preset != "paper":
        parser.error("--official-repo needs --preset paper")
    if args.image:
        x, _ = image_to_tensor(args.image)
        h, w = x.shape[-2:]
    else:
        w, h = (int(v) for v in args.size.lower().split("x"))
        torch.manual_seed(1)
        x = torch.rand(1, 3, h, w)
    x = x.to(args.device)
    cuda = args.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(args.device)

    variants = build_variants(args)
    tasks = ["compress", "decompress"]
    if not args.no_forward:
        tasks.insert(0, "forward")
    times: Dict[str, Dict[str, List[float]]] = {v.name: {t: [] for t in tasks} for v in variants}
    peak: Dict[str, float] = {}
    decoded: Dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for v in variants:  # warm-up, memory, decodability
            with PeakCUDA(args.device) if cuda else PeakRSS() as mem:
                v.compress(x)
                decoded[v.name] = v.decompress(x)["x_hat"]
            peak[v.name] = mem.extra_mb
        for _ in range(args.repeats):
            for v in variants:
                for task in tasks:
                    sync()
                    t0 = time.perf_counter()
                    out = getattr(v, task)(x)
                    sync()
                    times[v.name][task].append(time.perf_counter() - t0)
                    if task == "decompress" and not torch.equal(out["x_hat"], decoded[v.name]):
                        raise RuntimeError(f"{v.name}: decoding is not repeatable")
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} {platform.node()} "
        f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"preset {args.preset}, {w}x{h}, median of {args.repeats}, device {args.device}"
        + (f" ({torch.cuda.get_device_name(args.device)})" if cuda else "")
    )
    print()
    ref = "official" if args.official_repo else "dcae reference"
    med = {n: {t: statistics.median(ts) for t, ts in d.items()} for n, d in times.items()}
    total_ref = med[ref]["compress"] + med[ref]["decompress"]
    head = ["variant", *[f"{t} s" for t in tasks], "comp+decomp s", f"speed-up vs {ref}"]
    head += ["peak extra CUDA MB" if cuda else "peak extra RSS MB", "PSNR vs x (dB)"]
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
