"""Section ``latency``: compress and decompress times, paper preset.

The same weights in every variant, one Kodak image (768x512): the official
code (with ``--official-repo``) with torch defaults and with TF32 off, dcae
exact float32 (TF32 off), dcae with torch defaults, dcae fast mode (bfloat16,
float16 on CUDA, bfloat16 with portable coding); median of ``--repeats`` after
warm-up, synchronised, variants interleaved; peak memory of one compress +
decompress.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import statistics
import time
from typing import Any, Dict, Iterator, List, Optional

import bench_latency as bl
import torch
from PIL import Image
from torch import Tensor

from dcae.format.pixels import image_to_tensor
from dcae.layers.fast import fast_mode, tf32

from .common import Report, load_image, mem_column, peak_memory, psnr, sync, use_backend

__all__ = ["latency_rows", "section_latency", "setup", "time_variants"]


@contextlib.contextmanager
def setup(
    model: Any = None,
    tf32_on: Optional[bool] = None,
    backend: Optional[str] = None,
    fast: Optional[torch.dtype] = None,
) -> Iterator[None]:
    """TF32 on/off, an attention backend and fast mode for a block; ``None``
    leaves each as it is."""
    with contextlib.ExitStack() as stack:
        if tf32_on is not None:
            stack.enter_context(tf32(tf32_on))
        if backend is not None:
            stack.enter_context(use_backend(backend, model))
        if fast is not None:
            fast_mode(model, fast)
            stack.callback(fast_mode, model, enabled=False)
        yield


def time_variants(
    variants: List[bl.Variant], x: Tensor, device: torch.device, repeats: int, warmup: int
) -> Dict[str, Dict[str, Any]]:
    """Compress/decompress medians (interleaved round-robin), peak memory, checks."""
    res: Dict[str, Dict[str, Any]] = {}
    decoded: Dict[str, Tensor] = {}
    with torch.no_grad():
        for v in variants:
            for _ in range(warmup):
                v.compress(x)
                v.decompress(x)
            with peak_memory(device) as mem:
                out = v.compress(x)
                decoded[v.name] = v.decompress(x)["x_hat"]
            nbytes = sum(len(s[0]) for s in out["strings"])
            res[v.name] = {"compress": [], "decompress": [], "peak": mem.extra_mb, "bytes": nbytes}
            res[v.name]["repeatable"] = True
        for _ in range(repeats):
            for v in variants:
                for task in ("compress", "decompress"):
                    sync(device)
                    t0 = time.perf_counter()
                    out = getattr(v, task)(x)
                    sync(device)
                    res[v.name][task].append(time.perf_counter() - t0)
                    if task == "decompress" and not torch.equal(out["x_hat"], decoded[v.name]):
                        res[v.name]["repeatable"] = False
    for v in variants:
        res[v.name]["psnr"] = psnr(decoded[v.name].clamp(0, 1), x)
    return res


def latency_rows(
    res: Dict[str, Dict[str, Any]], device: torch.device, ref: Optional[str]
) -> List[Dict[str, Any]]:
    rows = []
    total = lambda r: statistics.median(r["compress"]) + statistics.median(r["decompress"])  # noqa: E731
    for name, r in res.items():
        row: Dict[str, Any] = {
            "variant": name,
            "compress ms": round(1e3 * statistics.median(r["compress"]), 1),
            "decompress ms": round(1e3 * statistics.median(r["decompress"]), 1),
            "comp+decomp ms": round(1e3 * total(r), 1),
        }
        if ref and ref in res:
            row[f"speed-up vs {ref}"] = f"{total(res[ref]) / total(r):.2f}x"
        row[mem_column(device)] = round(r["peak"])
        row["bytes"] = r["bytes"]
        row["PSNR dB"] = round(r["psnr"], 3)
        row["decode repeatable"] = r["repeatable"]
        rows.append(row)
    return rows


class _PortableCalls:
    """A model's ``compress``/``decompress`` with ``portable=True``."""

    def __init__(self, model: Any):
        self.model = model

    def compress(self, x: Tensor) -> Dict[str, Any]:
        return self.model.compress(x, portable=True)

    def decompress(self, strings: Any, shape: Any) -> Dict[str, Any]:
        return self.model.decompress(strings, shape, portable=True)


def section_latency(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev = args.device
    path = next((f for f in st["kodak"] if Image.open(f).size == (768, 512)), st["kodak"][0])
    img = load_image(path, args.size)
    x = image_to_tensor(img)[0].to(dev)
    ns = argparse.Namespace(
        preset="paper",
        checkpoint=None,
        device=dev,
        official_repo=args.official_repo,
        fast_dtype="bfloat16",
    )
    built = {v.name: v for v in bl.build_variants(ns)}  # same weights in every variant
    model = built["dcae reference"].model
    st["latency_model"], st["latency_x"] = model, x
    variants = []
    if "official" in built:
        official = built["official"].model
        st["official_model"] = official
        variants.append(bl.Variant("official (torch defaults)", official, lambda: setup()))
        variants.append(bl.Variant("official (TF32 off)", official, lambda: setup(tf32_on=False)))
    variants.append(
        bl.Variant(
            "dcae exact fp32 (TF32 off)",
            model,
            lambda: setup(model, tf32_on=False, backend="auto"),
        )
    )
    variants.append(
        bl.Variant("dcae (torch defaults)", model, lambda: setup(model, backend="auto"))
    )
    variants.append(
        bl.Variant(
            "dcae fast bf16", model, lambda: setup(model, backend="auto", fast=torch.bfloat16)
        )
    )
    if "portable" in inspect.signature(model.compress).parameters:
        variants.append(
            bl.Variant(
                "dcae fast bf16, portable coding",
                _PortableCalls(model),
                lambda: setup(model, backend="auto", fast=torch.bfloat16),
            )
        )
    if dev.type == "cuda":
        variants.append(
            bl.Variant(
                "dcae fast fp16", model, lambda: setup(model, backend="auto", fast=torch.float16)
            )
        )
    rep.note(
        f"{path.name} {img.width}x{img.height}, paper preset, random weights (seed 0), "
        f"official with dcae's weights (to_official_state_dict); median of {args.repeats} "
        f"after {args.warmup} warm-up(s), variants interleaved, synchronised"
    )
    res = time_variants(variants, x, dev, args.repeats, args.warmup)
    ref = "official (torch defaults)" if "official" in built else None
    rep.table("latency (compress, decompress)", latency_rows(res, dev, ref))
    if ref:
        r = res
        tot = lambda n: statistics.median(r[n]["compress"]) + statistics.median(r[n]["decompress"])  # noqa: E731
        best_fast = min((n for n in r if n.startswith("dcae fast")), key=tot)
        rep.note(
            f"targets: fast < 30 ms: {1e3 * tot(best_fast):.1f} ms ({best_fast}); fast >= 3x "
            f"official: {tot(ref) / tot(best_fast):.2f}x; exact >= 1.5x official: "
            f"{tot(ref) / tot('dcae exact fp32 (TF32 off)'):.2f}x (vs official TF32 off: "
            f"{tot('official (TF32 off)') / tot('dcae exact fp32 (TF32 off)'):.2f}x)"
        )
