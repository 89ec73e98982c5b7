"""Window attention backends of dcae, timed against each other in one run.

Times one :class:`dcae.layers.window_attention.WindowAttention` forward (qkv projection,
attention, output projection, partition/merge) at the shapes of the paper
preset for a 768x512 image, for every backend, with the variants interleaved
round-robin (so that load from other processes hits all of them alike) and
reports the median and the minimum of ``--repeats`` runs plus the ratio to the
reference backend.

Optional rows: ``--official-repo PATH`` adds the official ``WMSA`` (needs its
dependencies: timm, einops), ``--flex`` a compiled FlexAttention core and
``--compile`` a ``torch.compile``-d module (compile time is reported apart).

Usage::

    python benchmarks/bench_attention.py --repeats 7
    python benchmarks/bench_attention.py --chunk-kib 256 1024 4096   # chunk sweep
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

from dcae.layers.attention import attention_backend
from dcae.layers.window_attention import WindowAttention

__all__ = ["SHAPES", "main"]

#: name -> (channels, head_dim, window, H, W, shifted): the Swin stages of the
#: paper preset for a 768x512 image (g_a stage 1-3, hyperprior stage)
SHAPES: Dict[str, Tuple[int, int, int, int, int, bool]] = {
    "stage1 96ch/8 256x384 W": (96, 8, 8, 256, 384, False),
    "stage2 144ch/16 128x192 SW": (144, 16, 8, 128, 192, True),
    "stage3 256ch/32 64x96 SW": (256, 32, 8, 64, 96, True),
    "stage3 256ch/32 60x90 SW (padded)": (256, 32, 8, 60, 90, True),
    "hyper 192ch/32 w4 16x24 W": (192, 32, 4, 16, 24, False),
}


def _official_module(repo: str, module: WindowAttention) -> torch.nn.Module:
    sys.path.insert(0, repo)
    from models.dcae import WMSA  # type: ignore[import-not-found]

    official = WMSA(
        module.dim,
        module.dim,
        module.head_dim,
        module.window_size,
        "SW" if module.shifted else "W",
    )
    official.embedding_layer.load_state_dict(module.qkv.state_dict())
    official.linear.load_state_dict(module.proj.state_dict())
    official.relative_position_params.data.copy_(module.relative_position_bias.data)
    return official.eval()


Core = Callable[..., torch.Tensor]
Layer = Callable[[torch.Tensor], torch.Tensor]


def _all_windows(module: WindowAttention, core: Core) -> Layer:
    """The module's window attention over all windows at once (no chunking),
    with ``core(q, k, v, geo)`` computing the attention output."""

    def run(x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        geo = module.geometry(b, h, w, x.device)
        heads, d, p = module.num_heads, module.head_dim, module.window_size**2
        tokens = x.reshape(-1, c)
        if geo.padded:
            tokens = torch.cat([tokens, tokens.new_zeros(1, c)])
        qkv = module.qkv(tokens.index_select(0, geo.index))
        n = geo.types.shape[0]
        q, k, v = qkv.view(n, p, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        o = core(q, k, v, geo)
        o = module.proj(o.transpose(1, 2).reshape(n * p, c))
        out = o.new_empty(tokens.shape[0], c).index_copy_(0, geo.index, o)
        return out[: b * h * w].view(b, h, w, c)

    return run


def _flex_fn(module: WindowAttention) -> Layer:
    """The module with its attention core replaced by compiled FlexAttention."""
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention, dynamic=False)

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, geo: Any) -> torch.Tensor:
        additive = module.additive(geo, q.dtype)
        types = geo.types

        def score_mod(score, bi, hi, qi, ki):  # noqa: ANN001, ANN202
            return score + additive[types[bi], hi, qi, ki]

        return flex(q, k, v, score_mod=score_mod, scale=module.scale)

    return _all_windows(module, core)


def _sdpa_unchunked(module: WindowAttention) -> Layer:
    """SDPA on all windows at once (no chunking), for comparison."""

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, geo: Any) -> torch.Tensor:
        mask = module.additive(geo, q.dtype).index_select(0, geo.types)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=module.scale)

    return _all_windows(module, core)


def _with_backend(
    name: str, module: WindowAttention, fn: Callable[[], torch.Tensor]
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with attention_backend(name, module):
            return fn()

    return run


def _with_chunk(
    kib: int, module: WindowAttention, fn: Callable[[], torch.Tensor]
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        saved = module.chunk_bytes
        module.chunk_bytes = kib << 10
        try:
            return fn()
        finally:
            module.chunk_bytes = saved

    return run


def time_round_robin(
    fns: Dict[str, Callable[[], torch.Tensor]], repeats: int, sync: Callable[[], None]
) -> Dict[str, List[float]]:
    """Run every function ``repeats`` times, interleaved; seconds per run."""
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up (caches, allocator)
        fn()
    sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: List[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--shapes", nargs="*", default=None, help="substrings of shape names")
    parser.add_argument("--chunk-kib", type=int, nargs="*", default=[], help="chunk sweep")
    parser.add_argument("--official-repo", default=None)
    parser.add_argument("--flex", action="store_true", help="add compiled FlexAttention")
    parser.add_argument("--compile", action="store_true", help="add torch.compile(module)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"# bench_attention {datetime.date.today()} {platform.node()} "
        f"{platform.processor() or platform.machine()} torch {torch.__version__} "
        f"threads {torch.get_num_threads()} device {device} dtype {args.dtype} "
        f"repeats {args.repeats}"
    )
    print()
    print("| shape | variant | median ms | min ms | vs reference (median) | max abs err |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for name, shape in SHAPES.items():
        if not args.shapes or any(s in name for s in args.shapes):
            _bench_shape(name, shape, args, device, dtype, sync)


def _bench_shape(
    name: str,
    shape: Tuple[int, int, int, int, int, bool],
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    sync: Callable[[], None],
) -> None:
    c, hd, ws, hh, ww, shifted = shape
    module = WindowAttention(c, hd, ws, shifted).to(device, dtype).eval()
    x = torch.randn(1, hh, ww, c, device=device, dtype=dtype)
    fns: Dict[str, Callable[[], torch.Tensor]] = {}
    for backend in ("reference", "fused", "sdpa"):
        fns[backend] = _with_backend(backend, module, lambda: module(x))
        for kib in args.chunk_kib:
            fns[f"{backend} chunk {kib} KiB"] = _with_chunk(kib, module, fns[backend])
    unchunked = _sdpa_unchunked(module)
    fns["sdpa, no chunks"] = lambda: unchunked(x)
    if args.official_repo and hh % ws == 0 and ww % ws == 0:
        official = _official_module(args.official_repo, module).to(device, dtype)
        fns["official WMSA"] = lambda: official(x)
    if args.flex:
        flex = _flex_fn(module)
        t0 = time.perf_counter()
        with torch.no_grad():
            flex(x)
        print(f"| {name} | flex compile | {1e3 * (time.perf_counter() - t0):.0f} | | | |")
        fns["flex (compiled)"] = lambda: flex(x)
    if args.compile:
        compiled = torch.compile(module, fullgraph=True, dynamic=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(x)
        print(f"| {name} | compile time | {1e3 * (time.perf_counter() - t0):.0f} | | | |")
        fns["torch.compile(module)"] = lambda: compiled(x)
    with torch.no_grad():
        with attention_backend("reference", module):
            ref = module(x).float()
        errors = {k: (fn().float() - ref).abs().max().item() for k, fn in fns.items()}
        times = time_round_robin(fns, args.repeats, sync)
    base = statistics.median(times["reference"])
    for k, ts in times.items():
        med = statistics.median(ts)
        print(
            f"| {name} | {k} | {1e3 * med:.1f} | {1e3 * min(ts):.1f} | "
            f"{base / med:.2f}x | {errors[k]:.1e} |"
        )


if __name__ == "__main__":
    main()
