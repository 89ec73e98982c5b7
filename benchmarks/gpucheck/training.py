"""Section ``training``: training steps per second and peak memory.

Paper preset, batches of Kodak crops (8 of 256x256 by default), the same
batches for every row: dcae's training step (as ``dcae.training`` does it) and,
with ``--official-repo``, the official model with the official ``train.py``
loss, each with bfloat16 autocast and in float32.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import time
from typing import Any, Callable, Dict, List, Tuple

import bench_latency as bl
import torch
from torch import Tensor, nn

import dcae
from dcae.training.data import ImageFolder
from dcae.training.loss import RateDistortionLoss

from .common import LAMBDA, Report, official_class, official_loss_class, sync

__all__ = ["section_training"]


def dcae_step(
    model: Any,
    opt: Any,
    aux_opt: Any,
    scaler: Any,
    criterion: Any,
    x: Tensor,
    amp: bool,
    main_params: List[Tensor],
) -> float:
    """One step as ``dcae.training.loop.train`` does it."""
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out["x_hat"] = out["x_hat"].float()
    terms = criterion(out, x)
    scaler.scale(terms["loss"]).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(main_params, 1.0)
    scaler.step(opt)
    scaler.update()
    aux = model.aux_loss()
    aux.backward()
    aux_opt.step()
    return float(terms["loss"].detach())


def official_step(
    model: Any, opt: Any, aux_opt: Any, criterion: Any, x: Tensor, amp: bool
) -> float:
    """One step as the official ``train.py`` (``train_one_epoch``) does it, with
    an optional bfloat16 autocast around the forward."""
    opt.zero_grad()
    aux_opt.zero_grad()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out["x_hat"] = out["x_hat"].float()
    loss = criterion(out, x)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    aux_opt.step()
    return float(loss.detach())


def _split(model: nn.Module) -> Tuple[List[Tensor], List[Tensor]]:
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return main, aux


def train_throughput(
    rep: Report,
    args: argparse.Namespace,
    name: str,
    batches: List[Tensor],
    amp: bool,
    make: Callable[[], Tuple[nn.Module, Callable[..., float]]],
) -> Dict[str, Any]:
    dev = args.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    mem = bl.PeakRSS() if dev.type != "cuda" else contextlib.nullcontext()
    with mem:
        model, step = make()
        losses = []
        for x in batches[: args.train_warmup]:
            losses.append(step(x))
        sync(dev)
        t0 = time.perf_counter()
        for x in batches[args.train_warmup :]:
            losses.append(step(x))
        sync(dev)
        seconds = time.perf_counter() - t0
    timed = len(batches) - args.train_warmup
    row: Dict[str, Any] = {"model + step": name, "autocast": "bf16" if amp else "fp32"}
    row["steps/s"] = round(timed / seconds, 3)
    row["ms/step"] = round(1e3 * seconds / timed, 1)
    if dev.type == "cuda":
        row["peak CUDA MB (model, optimizers, activations)"] = round(
            (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        )
    else:
        row["peak extra RSS MB"] = round(mem.extra_mb)  # type: ignore[union-attr]
    row["first, last loss"] = f"{losses[0]:.3f}, {losses[-1]:.3f}"
    row["finite"] = all(math.isfinite(v) for v in losses)
    del model
    return row


def section_training(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev = args.device
    data = ImageFolder(files=st["kodak"])
    gen = torch.Generator().manual_seed(0)
    n = args.train_warmup + args.train_steps
    batches = [data.batch(args.train_batch, args.train_patch, gen).to(dev) for _ in range(n)]
    rep.note(
        f"paper preset, batch {args.train_batch} of {args.train_patch}x{args.train_patch} "
        f"Kodak crops (the same {n} batches for every row), {args.train_warmup} warm-up "
        f"+ {args.train_steps} timed steps, Adam lr 1e-4 / aux 1e-3, clip 1.0, "
        f"lambda {LAMBDA}, TF32 torch defaults"
    )
    use_scaler = dev.type == "cuda"

    def make_dcae(amp: bool) -> Callable[[], Tuple[nn.Module, Callable[..., float]]]:
        def make():
            torch.manual_seed(0)
            model = dcae.DCAEModel("paper").to(dev).train()
            main, aux = _split(model)
            opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
            scaler = torch.amp.GradScaler(dev.type, enabled=amp and use_scaler)
            crit = RateDistortionLoss(LAMBDA)
            return model, lambda x: dcae_step(model, opt, aux_opt, scaler, crit, x, amp, main)

        return make

    def make_official(amp: bool) -> Callable[[], Tuple[nn.Module, Callable[..., float]]]:
        def make():
            torch.manual_seed(0)
            model = official_class(args.official_repo)().to(dev).train()
            main, aux = _split(model)
            opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
            crit = official_loss_class(args.official_repo)(lmbda=LAMBDA)
            return model, lambda x: official_step(model, opt, aux_opt, crit, x, amp)

        return make

    runs: List[Tuple[str, bool, Callable[[], Any]]] = [
        ("dcae (dcae.training step)", True, make_dcae(True))
    ]
    if args.official_repo:
        runs.append(("official (train.py model + loss)", True, make_official(True)))
    runs.append(("dcae (dcae.training step)", False, make_dcae(False)))
    if args.official_repo:
        runs.append(("official (train.py model + loss)", False, make_official(False)))
    rows: List[Dict[str, Any]] = []
    for name, amp, make in runs:
        run = functools.partial(train_throughput, rep, args, name, batches, amp, make)
        rep.step(f"{name} amp={amp}", lambda run=run: rows.append(run()))
    rep.table("training throughput", rows)
