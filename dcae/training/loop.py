"""Rate-distortion training of DCAE models (single process or ``torchrun`` DDP).

Loss (Lu et al., CVPR 2025, following Ballé et al.)::

    mse:     L = lambda * 255^2 * MSE(x, x_hat) + bpp
    ms-ssim: L = lambda * (1 - MS-SSIM(x, x_hat)) + bpp

The entropy-bottleneck quantiles get their own optimizer on CompressAI's
auxiliary loss.  Batches are random crops with random flips drawn by a seeded
``torch.Generator`` in the main process, so a run resumed from a checkpoint
(model, both optimizers, scheduler, step, all RNG states) continues exactly as
if it had never stopped.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node K -m dcae train ...``;
each rank draws its own crops (seed + rank) and gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel` (``gloo`` on CPU, ``nccl``
on CUDA).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import DCAEConfig, TrainConfig
from ..device import resolve_device
from ..errors import DCAEError
from ..layers.fast import fast_mode
from ..models.dcae import DCAEModel
from ..zoo.checkpoints import save_checkpoint
from ..zoo.files import torch_load
from .data import datasets
from .loss import RateDistortionLoss, evaluate_loss
from .rng import rng_state, set_rng_state
from .warm_start import initial_model

__all__ = ["train"]


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _distributed() -> Tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _split_params(model: nn.Module) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
    main, aux = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else main).append(p)
    return main, aux


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _setup_process(cfg: TrainConfig) -> Tuple[int, int, int, torch.device]:
    """``(rank, world, local rank, device)``; joins the process group under
    ``torchrun``, sets the thread count and seeds every RNG."""
    rank, world, local = _distributed()
    device = resolve_device(cfg.device, local if world > 1 else None)
    use_cuda = device.type == "cuda"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if rank == 0:
        Path(cfg.output).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    return rank, world, local, device


_TRAIN_COLUMNS = ["step", "loss", "bpp", "mse", "psnr", "aux", "lr", "seconds"]
_VAL_COLUMNS = ["step", "loss", "bpp", "mse", "psnr", "quality"]


def _append_row(path: Path, row: Sequence[Any], mode: str = "a") -> None:
    with open(path, mode, newline="") as f:
        csv.writer(f).writerow(row)


class _Run:
    """One training run: the model, its optimizers, the step counter and the
    RNG of the crops, with what :func:`train` does to them."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, local: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.use_cuda = device.type == "cuda"
        self.out_dir = Path(cfg.output)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1000 * rank)
        self.data, self.val_set = datasets(cfg)
        # resuming: the checkpoint's own architecture, read once; --init is not read
        # again (its CDF tables may have other sizes than the checkpoint's)
        ckpt = None
        if cfg.resume:
            ckpt = torch_load(Path(cfg.resume), str(device))
            self.model = DCAEModel(DCAEConfig.from_dict(dict(ckpt["config"])))
        else:
            self.model = initial_model(cfg)
        self.model.to(device).train()
        if cfg.bf16:
            fast_mode(self.model)
        self.best = math.inf
        self.criterion = RateDistortionLoss(cfg.lmbda, cfg.metric)
        self.main_params, aux_params = _split_params(self.model)
        self.optimizer = torch.optim.Adam(self.main_params, lr=cfg.lr)
        self.aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        # loss scaling only for float16 autocast (bfloat16 needs none, and the
        # scaler reads a flag back to the host on every step)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=cfg.amp and self.use_cuda and not torch.cuda.is_bf16_supported()
        )
        self.step = 0
        if ckpt is not None:
            self.resume(ckpt)
        self.net: nn.Module = self.model
        if world > 1:
            ids = [local] if self.use_cuda else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.train_log = self.out_dir / "train.csv"
        self.val_log = self.out_dir / "val.csv"
        if rank == 0 and self.step == 0:
            _append_row(self.train_log, _TRAIN_COLUMNS, "w")
            _append_row(self.val_log, _VAL_COLUMNS, "w")

    def resume(self, ckpt: Dict[str, Any]) -> None:
        """Continue from a loaded ``checkpoint.pt``: weights, optimizers, step and RNGs."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best = float(ckpt.get("best", math.inf))
        states = ckpt["rng"]
        set_rng_state(states[self.rank] if isinstance(states, list) else states, self.gen)

    def save(self) -> None:
        """Write the resumable ``checkpoint.pt`` (every rank's RNG state)."""
        rng = rng_state(self.gen)
        if self.world > 1:
            gathered: List[Any] = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng = gathered  # type: ignore[assignment]
        if self.rank == 0:
            _atomic_save(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "aux_optimizer": self.aux_optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "step": self.step,
                    "best": self.best,
                    "rng": rng,
                    "config": self.model.config.to_dict(),
                    "train_config": dataclasses.asdict(self.cfg),
                },
                self.out_dir / "checkpoint.pt",
            )

    def train_step(self) -> Dict[str, Tensor]:
        """One optimizer step on a fresh batch; returns its loss terms as
        detached tensors on the device (no host synchronisation: nothing in
        the step reads a device value back)."""
        cfg = self.cfg
        x = self.data.batch(cfg.batch_size, cfg.patch_size, self.gen).to(self.device)
        quality = lmbda = None
        if self.model.variable_rate:  # a real quality per sample, uniform over the range
            lo, hi = self.model.quality_range
            u = torch.rand(cfg.batch_size, generator=self.gen)
            if cfg.quality_power != 1.0:  # weighted toward the top rates (P > 1)
                u = u.pow(1.0 / cfg.quality_power)
            quality = lo + (hi - lo) * u
            lmbda = self.model.lambda_for(quality)
            quality = quality.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        amp = contextlib.nullcontext()
        if cfg.amp and self.use_cuda:  # --amp: CUDA only (bfloat16 where supported)
            bf16 = torch.cuda.is_bf16_supported()
            amp = torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
        with amp:
            out = self.net(x) if quality is None else self.net(x, quality)
        out["x_hat"] = out["x_hat"].float()
        terms = self.criterion(out, x, lmbda)
        self.scaler.scale(terms["loss"]).backward()
        if cfg.clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.main_params, cfg.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        aux = self.model.aux_loss()
        aux.backward()
        self.aux_optimizer.step()
        self.scheduler.step()
        self.step += 1
        # detached tensors on the device: reading them here would cost a host
        # synchronisation per step; train() reads their means once per log row
        values = {k: terms[k].detach() for k in ("loss", "bpp", "mse")}
        values["aux"] = aux.detach()
        return values

    def log_train(self, means: Dict[str, float], elapsed: float) -> None:
        """A row of ``train.csv`` and a progress line on stderr."""
        psnr = -10 * math.log10(max(means["mse"], 1e-10))
        lr = self.scheduler.get_last_lr()[0]
        _append_row(
            self.train_log,
            [self.step, f"{means['loss']:.5f}", f"{means['bpp']:.5f}", f"{means['mse']:.7f}",
             f"{psnr:.3f}", f"{means['aux']:.3f}", f"{lr:.3e}", f"{elapsed:.1f}"],
        )  # fmt: skip
        print(
            f"[{self.step}/{self.cfg.steps}] loss {means['loss']:.4f} bpp {means['bpp']:.4f} "
            f"psnr {psnr:.2f} aux {means['aux']:.1f} ({elapsed:.0f}s)",
            file=sys.stderr,
            flush=True,
        )

    def validate(self) -> float:
        """Rows of ``val.csv``: the loss over the validation images (a
        variable-rate model: one row per rate point, then a summary row with
        an empty quality: the geometric mean of the losses, the mean of the
        rest); returns the (summary) loss."""
        assert self.val_set is not None
        if not self.model.variable_rate:
            v = evaluate_loss(self.model, self.val_set.images, self.criterion, self.device)
            rows = [(v, "")]
        else:
            rows = []
            for k, lam in enumerate(self.model.config.rate_lambdas or (), start=1):
                crit = RateDistortionLoss(lam, self.cfg.metric)
                v = evaluate_loss(self.model, self.val_set.images, crit, self.device, quality=k)
                rows.append((v, str(k)))
            mean = {key: sum(v[key] for v, _ in rows) / len(rows) for key in rows[0][0]}
            # the losses of the rate points differ in scale by their lambdas:
            # the summary loss is their geometric mean, which weighs them alike
            mean["loss"] = math.exp(sum(math.log(v["loss"]) for v, _ in rows) / len(rows))
            rows.append((mean, ""))
        for v, q in rows:
            _append_row(
                self.val_log,
                [self.step, f"{v['loss']:.5f}", f"{v['bpp']:.5f}", f"{v['mse']:.7f}",
                 f"{v['psnr']:.3f}", q],
            )  # fmt: skip
        return rows[-1][0]["loss"]

    def export(self, path: str, final: bool = False) -> None:
        """The model with CDF tables, as :func:`~dcae.zoo.checkpoints.save_checkpoint`:
        a copy (training goes on), or with ``final`` the run's model itself
        (eval mode, full precision, tables built, on the CPU: what
        :func:`train` returns)."""
        cfg = self.cfg
        model = self.model if final else copy.deepcopy(self.model)
        model = model.cpu().eval()
        fast_mode(model, enabled=False)
        model.update(force=True)
        extra: Dict[str, Any] = {"metric": cfg.metric, "steps": self.step}
        if not model.variable_rate:
            extra["lambda"] = cfg.lmbda
        if cfg.quality is not None:
            extra["quality"] = cfg.quality
        save_checkpoint(model, path, **extra)


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def _check_finite(loss: float, first: int, last: int) -> None:
    if not math.isfinite(loss):
        raise DCAEError(f"loss is not finite in steps {first}-{last}")


def train(cfg: TrainConfig) -> DCAEModel:
    """Train a model as configured; returns the (unwrapped) model.

    Writes ``checkpoint.pt`` (resumable), ``train.csv`` and ``val.csv`` into
    ``cfg.output``; with ``cfg.export`` also a shipped-style checkpoint with
    CDF tables (``update()`` applied).
    """
    rank, world, local, device = _setup_process(cfg)
    run = _Run(cfg, rank, world, local, device)
    t0 = time.time()
    sums: Dict[str, Tensor] = {}
    count = 0
    first = run.step + 1
    while run.step < cfg.steps:
        for k, v in run.train_step().items():
            sums[k] = sums[k] + v if k in sums else v
        count += 1
        if _due(run.step, cfg.log_every, cfg.steps):
            # the one host read of the loss terms per log row
            means = {k: float(v) / count for k, v in sums.items()}
            _check_finite(means["loss"], first, run.step)
            if rank == 0:
                run.log_train(means, time.time() - t0)
            sums, count, first = {}, 0, run.step + 1
        if run.val_set is not None and rank == 0 and _due(run.step, cfg.val_every, cfg.steps):
            loss = run.validate()
            if loss < run.best:
                run.best = loss
                if cfg.keep_best:
                    run.export(str(run.out_dir / "best.pt"))
        if _due(run.step, cfg.save_every, cfg.steps):
            if sums:  # never checkpoint weights a non-finite loss has touched
                _check_finite(float(sums["loss"]), first, run.step)
            run.save()
    if cfg.export and rank == 0:
        run.export(cfg.export, final=True)
    if world > 1:
        dist.barrier()
    return run.model
