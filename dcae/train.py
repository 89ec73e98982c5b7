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

import argparse
import csv
import dataclasses
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .config import get_config
from .errors import DCAEError
from .model import DCAEModel
from .pretrained import load_checkpoint, save_checkpoint

__all__ = ["ImageFolder", "RateDistortionLoss", "TrainConfig", "train", "add_arguments"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ImageFolder:
    """All images of a folder held in memory as uint8 tensors ``(3, H, W)``.

    Args:
        root: folder (not recursive).
        files: explicit list of files instead of ``root``'s content.
    """

    def __init__(self, root: Optional[str] = None, files: Optional[Sequence[Path]] = None):
        from PIL import Image

        if files is None:
            if root is None or not Path(root).is_dir():
                raise DCAEError(f"training folder {root!r} does not exist")
            files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DCAEError(f"no images in {root!r}")
        self.files = list(files)
        self.images: List[Tensor] = []
        for f in self.files:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
            self.images.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, batch_size: int, patch: int, generator: torch.Generator) -> Tensor:
        """Random crops (padded by reflection if an image is smaller) with random
        horizontal/vertical flips, as floats in [0, 1]."""
        idx = torch.randint(len(self.images), (batch_size,), generator=generator)
        out = []
        for i in idx.tolist():
            img = self.images[i]
            _, h, w = img.shape
            if h < patch or w < patch:
                img = F.pad(
                    img[None].float(),
                    (0, max(0, patch - w), 0, max(0, patch - h)),
                    mode="replicate",
                )[0].to(torch.uint8)
                _, h, w = img.shape
            top = int(torch.randint(h - patch + 1, (1,), generator=generator))
            left = int(torch.randint(w - patch + 1, (1,), generator=generator))
            crop = img[:, top : top + patch, left : left + patch]
            flips = torch.rand(2, generator=generator)
            if flips[0] < 0.5:
                crop = crop.flip(-1)
            if flips[1] < 0.5:
                crop = crop.flip(-2)
            out.append(crop)
        return torch.stack(out).float().div_(255.0)


class RateDistortionLoss(nn.Module):
    """``lambda * D + bpp`` with ``D = 255^2 * MSE`` or ``1 - MS-SSIM``.

    Args:
        lmbda: the rate-distortion trade-off ``lambda``.
        metric: ``"mse"`` or ``"ms-ssim"``.
    """

    def __init__(self, lmbda: float, metric: str = "mse"):
        super().__init__()
        if metric not in ("mse", "ms-ssim"):
            raise ValueError(f"metric must be 'mse' or 'ms-ssim', got {metric!r}")
        self.lmbda = float(lmbda)
        self.metric = metric

    def forward(self, output: Dict[str, Any], target: Tensor) -> Dict[str, Tensor]:
        n, _, h, w = target.shape
        num_pixels = n * h * w
        bpp = sum(
            torch.log(lik).sum() / (-math.log(2) * num_pixels)
            for lik in output["likelihoods"].values()
        )
        mse = F.mse_loss(output["x_hat"], target)
        out = {"bpp": bpp, "mse": mse}
        if self.metric == "mse":
            out["loss"] = self.lmbda * 255**2 * mse + bpp
        else:
            from .metrics import ms_ssim

            out["ms_ssim"] = ms_ssim(output["x_hat"].clamp(0, 1), target, data_range=1.0)
            out["loss"] = self.lmbda * (1 - out["ms_ssim"]) + bpp
        return out


@dataclasses.dataclass
class TrainConfig:
    """Options of :func:`train` (the ``dcae train`` arguments)."""

    data: str
    output: str
    preset: str = "small"
    lmbda: float = 0.0067
    metric: str = "mse"
    steps: int = 10000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    clip: float = 1.0
    val: Optional[str] = None
    val_split: int = 4
    val_every: int = 500
    save_every: int = 500
    log_every: int = 50
    seed: int = 0
    resume: Optional[str] = None
    init: Optional[str] = None
    amp: bool = False
    threads: int = 0
    export: Optional[str] = None
    quality: Optional[int] = None


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


def _numpy_state_to_tensors(state: Tuple[Any, ...]) -> Tuple[Any, ...]:
    # numpy arrays are not allowed by torch.load(weights_only=True); tensors are
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_tensors(state: Tuple[Any, ...]) -> Tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    if isinstance(keys, Tensor):
        keys = keys.numpy().astype(np.uint32)
    return (name, keys, pos, has_gauss, cached)


def _rng_state(gen: torch.Generator) -> Dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    np.random.set_state(_numpy_state_from_tensors(state["numpy"]))
    random.setstate(state["python"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate_loss(
    model: DCAEModel, images: Sequence[Tensor], criterion: RateDistortionLoss, device: torch.device
) -> Dict[str, float]:
    """Mean loss, bpp (estimated) and PSNR over full images (eval mode)."""
    was_training = model.training
    model.eval()
    sums = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0}
    for img in images:
        x = img[None].float().div(255.0).to(device)
        out = model(x)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        terms = criterion(out, x)
        for k in ("loss", "bpp", "mse"):
            sums[k] += float(terms[k])
        sums["psnr"] += float(-10 * torch.log10(terms["mse"].clamp_min(1e-10)))
    model.train(was_training)
    return {k: v / max(1, len(images)) for k, v in sums.items()}


def train(cfg: TrainConfig) -> DCAEModel:
    """Train a model as configured; returns the (unwrapped) model.

    Writes ``checkpoint.pt`` (resumable), ``train.csv`` and ``val.csv`` into
    ``cfg.output``; with ``cfg.export`` also a shipped-style checkpoint with
    CDF tables (``update()`` applied).
    """
    rank, world, local = _distributed()
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.output)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * rank)

    files = sorted(p for p in Path(cfg.data).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if cfg.val is None and cfg.val_split > 0 and len(files) > cfg.val_split:
        train_files, val_files = files[: -cfg.val_split], files[-cfg.val_split :]
        val_set: Optional[ImageFolder] = ImageFolder(files=val_files)
    else:
        train_files = files
        val_set = ImageFolder(cfg.val) if cfg.val else None
    data = ImageFolder(files=train_files) if train_files else ImageFolder(cfg.data)

    if cfg.init:
        model = load_checkpoint(cfg.init)  # a model or a training checkpoint.pt
        model.train()
    else:
        model = DCAEModel(get_config(cfg.preset))
    model.to(device).train()
    criterion = RateDistortionLoss(cfg.lmbda, cfg.metric)
    main_params, aux_params = _split_params(model)
    optimizer = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and use_cuda)
    step = 0

    if cfg.resume:
        ckpt = torch.load(cfg.resume, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        step = int(ckpt["step"])
        states = ckpt["rng"]
        _set_rng_state(states[rank] if isinstance(states, list) else states, gen)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[local] if use_cuda else None)

    train_log = out_dir / "train.csv"
    val_log = out_dir / "val.csv"
    if rank == 0 and step == 0:
        for path, header in (
            (train_log, ["step", "loss", "bpp", "mse", "psnr", "aux", "lr", "seconds"]),
            (val_log, ["step", "loss", "bpp", "mse", "psnr"]),
        ):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(header)

    def save() -> None:
        rng = _rng_state(gen)
        if world > 1:
            gathered: List[Any] = [None] * world
            dist.all_gather_object(gathered, rng)
            rng = gathered  # type: ignore[assignment]
        if rank == 0:
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "aux_optimizer": aux_optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "rng": rng,
                    "config": model.config.to_dict(),
                    "train_config": dataclasses.asdict(cfg),
                },
                out_dir / "checkpoint.pt",
            )

    t0 = time.time()
    acc: Dict[str, float] = {}
    n_acc = 0
    autocast_dtype = torch.bfloat16 if (use_cuda and torch.cuda.is_bf16_supported()) else None
    while step < cfg.steps:
        x = data.batch(cfg.batch_size, cfg.patch_size, gen).to(device)
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float16, enabled=cfg.amp and use_cuda
        ):
            out = net(x)
        out["x_hat"] = out["x_hat"].float()
        terms = criterion(out, x)
        scaler.scale(terms["loss"]).backward()
        if cfg.clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
        scaler.step(optimizer)
        scaler.update()
        aux = model.aux_loss()
        aux.backward()
        aux_optimizer.step()
        scheduler.step()
        step += 1
        for k in ("loss", "bpp", "mse"):
            acc[k] = acc.get(k, 0.0) + float(terms[k].detach())
        acc["aux"] = acc.get("aux", 0.0) + float(aux.detach())
        n_acc += 1
        if not math.isfinite(float(terms["loss"].detach())):
            raise DCAEError(f"loss is not finite at step {step}")
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            means = {k: v / n_acc for k, v in acc.items()}
            psnr = -10 * math.log10(max(means["mse"], 1e-10))
            elapsed = time.time() - t0
            with open(train_log, "a", newline="") as f:
                csv.writer(f).writerow(
                    [step, f"{means['loss']:.5f}", f"{means['bpp']:.5f}", f"{means['mse']:.7f}",
                     f"{psnr:.3f}", f"{means['aux']:.3f}", f"{scheduler.get_last_lr()[0]:.3e}",
                     f"{elapsed:.1f}"]
                )  # fmt: skip
            print(
                f"[{step}/{cfg.steps}] loss {means['loss']:.4f} bpp {means['bpp']:.4f} "
                f"psnr {psnr:.2f} aux {means['aux']:.1f} ({elapsed:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
            acc, n_acc = {}, 0
        if val_set is not None and rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            v = evaluate_loss(model, val_set.images, criterion, device)
            with open(val_log, "a", newline="") as f:
                csv.writer(f).writerow(
                    [step, f"{v['loss']:.5f}", f"{v['bpp']:.5f}", f"{v['mse']:.7f}",
                     f"{v['psnr']:.3f}"]
                )  # fmt: skip
        if step % cfg.save_every == 0 or step == cfg.steps:
            save()
    if cfg.export and rank == 0:
        model.eval()
        model.update(force=True)
        extra: Dict[str, Any] = {"lambda": cfg.lmbda, "metric": cfg.metric, "steps": step}
        if cfg.quality is not None:
            extra["quality"] = cfg.quality
        save_checkpoint(model.cpu(), cfg.export, **extra)
    if world > 1:
        dist.barrier()
    return model


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``dcae train``."""
    d = TrainConfig(data="", output="")
    p.add_argument("data", help="folder of training images")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoint, logs)")
    p.add_argument("--preset", default=d.preset, help="model preset (default: %(default)s)")
    p.add_argument("--lambda", dest="lmbda", type=float, default=d.lmbda, help="RD trade-off")
    p.add_argument("--metric", choices=("mse", "ms-ssim"), default=d.metric)
    p.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patch-size", type=int, default=d.patch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--aux-lr", type=float, default=d.aux_lr)
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--clip", type=float, default=d.clip, help="gradient norm clip (0: off)")
    p.add_argument("--val", default=None, help="validation folder (default: hold out files)")
    p.add_argument("--val-split", type=int, default=d.val_split, help="files held out")
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", default=None, help="checkpoint.pt of a run to continue")
    p.add_argument("--init", default=None, help="warm start from a model checkpoint")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--export", default=None, help="write the final model with CDF tables")
    p.add_argument("--quality", type=int, default=None, help="quality index stored in export")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`TrainConfig` from parsed ``dcae train`` arguments."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: getattr(args, k) for k in fields if hasattr(args, k)})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m dcae.train`` (same arguments as ``dcae train``)."""
    p = argparse.ArgumentParser(prog="dcae train", description=__doc__.splitlines()[0])
    add_arguments(p)
    train(config_from_args(p.parse_args(argv)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
