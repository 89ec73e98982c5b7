"""``dcae train DATA -o RUN``: rate-distortion training (see :mod:`dcae.training`).

Also ``python -m dcae train`` and, for several GPUs or nodes,
``torchrun --nproc_per_node K -m dcae train ...``.
"""

from __future__ import annotations

import argparse

from ..config import TrainConfig

__all__ = ["HELP", "add_arguments", "config_from_args", "run"]

HELP = "train a DCAE model on a folder of images (torchrun for DDP)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``dcae train`` arguments to ``p`` (defaults: :class:`~dcae.config.TrainConfig`)."""
    d = TrainConfig(data="", output="")
    p.add_argument("data", help="folder of training images")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoint, logs)")
    p.add_argument("--preset", default=d.preset, help="model preset (default: %(default)s)")
    p.add_argument(
        "--lambda", dest="lmbda", type=float, default=d.lmbda,
        help="RD trade-off (variable-rate presets: the lambda of the --init model)",
    )  # fmt: skip
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
    p.add_argument(
        "--val-crop", type=int, default=d.val_crop,
        help="validate on centre crops of at most this size (0: whole images)",
    )  # fmt: skip
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", default=None, help="checkpoint.pt of a run to continue")
    p.add_argument("--init", default=None, help="warm start from a model checkpoint")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument(
        "--bf16", action="store_true",
        help="g_a/g_s under bfloat16 autocast (fast mode; the entropy model stays float32)",
    )  # fmt: skip
    p.add_argument(
        "--keep-best", action="store_true",
        help="export best.pt (with CDF tables) whenever the validation loss improves",
    )  # fmt: skip
    p.add_argument(
        "--quality-power", type=float, default=d.quality_power,
        help="variable-rate models: draw each crop's quality as lo + (hi - lo) * u^(1/P), "
        "u uniform; 1 (default): uniform, 2: density rising linearly toward the top rate",
    )  # fmt: skip
    p.add_argument(
        "--device", default=d.device,
        help="auto (default: CUDA when available, else CPU), cpu, cuda or cuda:N "
        "(under torchrun each process takes cuda:LOCAL_RANK)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--export", default=None, help="write the final model with CDF tables")
    p.add_argument("--quality", type=int, default=None, help="quality index stored in export")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`~dcae.config.TrainConfig` from parsed ``dcae train`` arguments."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: getattr(args, k) for k in fields if hasattr(args, k)})


def run(args: argparse.Namespace) -> int:
    """Run training; returns 0."""
    from ..training.loop import train

    train(config_from_args(args))
    return 0
