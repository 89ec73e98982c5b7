"""Section ``env``: date, host, Python, torch, CUDA, cuDNN, GPU, driver and
torch's TF32 defaults, as the first table of the report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
from typing import Any, Dict

import torch

import dcae

from .common import REPO, Report

__all__ = ["section_env"]


def section_env(rep: Report, args: argparse.Namespace) -> None:
    dev = args.device
    env: Dict[str, Any] = {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "dcae": dcae.__version__,
        "attention backend (default)": dcae.get_attention_backend(),
        "device": str(dev),
    }
    with contextlib.suppress(Exception):
        import compressai

        env["compressai"] = compressai.__version__
    with contextlib.suppress(Exception):
        env["dcae commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(
            {
                "CUDA (torch)": torch.version.cuda,
                "cuDNN": torch.backends.cudnn.version(),
                "GPU": torch.cuda.get_device_name(dev),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))),
                "GPU memory GiB": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
                "bf16 supported": torch.cuda.is_bf16_supported(),
            }
        )
        with contextlib.suppress(Exception):
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        env["fp32 precision default (matmul, cuDNN conv)"] = (
            f"{matmul.fp32_precision}, {torch.backends.cudnn.conv.fp32_precision}"
        )
    env["cudnn enabled / benchmark"] = (
        f"{torch.backends.cudnn.enabled} / {torch.backends.cudnn.benchmark}"
    )
    env["official repository"] = args.official_repo or "not given"
    if getattr(args, "official_missing", None):
        env["official repository"] = f"NOT FOUND at {args.official_missing}"
    rep.data["env"] = env
    rep.table("environment", [{"key": k, "value": v} for k, v in env.items()])
