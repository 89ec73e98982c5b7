"""Section ``compile``: ``torch.compile``, while ``--budget`` leaves time.

Fast mode with the per-slice entropy networks compiled
(``mode="reduce-overhead"``, i.e. CUDA graphs, on a GPU) against eager fast
mode, on the latency section's model and image; then ``g_a`` and ``g_s``
compiled (compile time, difference to eager, latency).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time
from typing import Any, Dict, Iterator, List

import bench_latency as bl
import torch
from torch import nn

from dcae.format.pixels import image_to_tensor
from dcae.layers.fast import tf32

from .common import Budget, Report, load_image, sync
from .latency import latency_rows, setup, time_variants

__all__ = ["section_compile"]


class _Cloned(nn.Module):
    """A compiled module whose outputs are cloned: CUDA-graph replays reuse
    their output memory, and the slice loop keeps earlier slices' outputs."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module(*args).clone()


def _raise_recompile_limit() -> None:
    """The per-slice networks share ``forward`` code objects (``nn.Sequential``)
    with other shapes; torch's default of 8 graphs per code object would send
    the later slices back to eager mode."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(64, getattr(cfg, name)))


def compile_transform(
    rep: Report, args: argparse.Namespace, st: Dict[str, Any], which: str
) -> None:
    """``torch.compile`` of ``g_a`` or ``g_s``: compile time, difference, latency."""
    dev, model = args.device, st["check_model"]
    x = image_to_tensor(load_image(st["kodak"][0], args.check_size))[0].to(dev)
    with tf32(False), torch.no_grad():
        module = getattr(model, which)
        inp = x if which == "g_a" else model.g_a(x)
        eager = module(inp)
        compiled = torch.compile(module, dynamic=False)
        sync(dev)
        t0 = time.perf_counter()
        out = compiled(inp)
        sync(dev)
        compile_s = time.perf_counter() - t0
        times: Dict[str, List[float]] = {"eager": [], "compiled": []}
        for _ in range(args.repeats):
            for kind, fn in (("eager", module), ("compiled", compiled)):
                sync(dev)
                t0 = time.perf_counter()
                fn(inp)
                sync(dev)
                times[kind].append(time.perf_counter() - t0)
    st.setdefault("compile_rows", []).append(
        {
            "transform": which,
            "preset": args.check_preset,
            "input": "x".join(map(str, inp.shape)),
            "compile s (first call)": round(compile_s, 1),
            "max |compiled - eager|": float((out - eager).abs().max()),
            "eager ms": round(1e3 * statistics.median(times["eager"]), 2),
            "compiled ms": round(1e3 * statistics.median(times["compiled"]), 2),
        }
    )
    rep.table(f"torch.compile({which}, dynamic=False), float32 TF32 off", st["compile_rows"][-1:])


@contextlib.contextmanager
def _graph_step(model: Any) -> Iterator[None]:
    """Fast mode, and a new CUDA-graph generation per compress/decompress."""
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    if mark is not None and torch.cuda.is_available():
        mark()
    with setup(model, backend="auto", fast=torch.bfloat16):
        yield


def compile_entropy_networks(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    """Fast mode with the per-slice networks compiled (CUDA graphs on a GPU)
    against eager fast mode, on the latency section's model and image."""
    dev, x = args.device, st["latency_x"]
    base = st["latency_model"]
    model = copy.deepcopy(base)
    em = model.entropy_model
    n = min(args.compile_slices, em.num_slices)
    mode = "reduce-overhead" if dev.type == "cuda" else "default"
    for i in range(n):
        nets = [em.cross_attention, em.mean_transforms, em.scale_transforms]
        nets += [em.lrp_transforms] if em.lrp else []
        for nets_i in nets:
            nets_i[i] = _Cloned(torch.compile(nets_i[i], mode=mode, dynamic=False))
    label = f"dcae fast bf16 + {mode} slice nets ({n} of {em.num_slices} slices)"
    compiled = bl.Variant(label, model, lambda: _graph_step(model))
    eager = bl.Variant(
        "dcae fast bf16", base, lambda: setup(base, backend="auto", fast=torch.bfloat16)
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled.compress(x)
        compiled.decompress(x)
    rep.note(
        f"compiling the entropy networks ({mode}) took {time.perf_counter() - t0:.1f} s "
        "(first compress + decompress)"
    )
    res = time_variants([eager, compiled], x, dev, args.repeats, args.warmup)
    rep.table(
        "per-slice entropy networks compiled (same image and weights as latency)",
        latency_rows(res, dev, "dcae fast bf16"),
    )


def section_compile(
    rep: Report, args: argparse.Namespace, st: Dict[str, Any], budget: Budget
) -> None:
    """Entropy networks first (a latency target), then ``g_a`` and ``g_s``
    (compiling them is also a ``cuda`` test on the small preset)."""
    _raise_recompile_limit()
    steps = [
        (
            "entropy networks",
            functools.partial(compile_entropy_networks, rep, args, st),
            args.compile_need,
        )
    ]
    for which in ("g_a", "g_s"):
        fn = functools.partial(compile_transform, rep, args, st, which)
        steps.append((which, fn, args.transform_compile_need))
    for name, fn, need in steps:
        if budget.left() < need:
            rep.note(f"{name}: skipped, {budget.left():.0f} s of the budget left (< {need} s)")
            continue
        if name == "entropy networks" and "latency_model" not in st:
            rep.note(f"{name}: skipped, the latency section built no model")
            continue
        rep.step(name, fn)
