"""The authors' checkpoints (LabShuHangGU/DCAE, Google Drive): their lambdas,
links and the local cache dcae reads them from (:func:`weights_dir`:
``$DCAE_WEIGHTS_DIR``, default ``~/.cache/dcae``); nothing is downloaded,
Google Drive needs a browser.  Their layout is converted on the fly
(:mod:`dcae.models.layouts`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

from ..config import PRESETS
from ..errors import DCAEError, ModelMismatchError
from ..models.dcae import DCAEModel
from .checkpoints import model_from_checkpoint, read_checkpoint
from .files import file_sha256

__all__ = [
    "KNOWN_SHA256",
    "METRICS",
    "OFFICIAL_LAMBDAS",
    "OFFICIAL_URLS",
    "check_metric",
    "check_quality",
    "checkpoint_candidates",
    "lambda_for",
    "load_official",
    "weights_dir",
]

#: metrics the authors trained for (CompressAI's names)
METRICS = ("mse", "ms-ssim")

#: rate-distortion trade-offs of the official checkpoints, quality 1..6
#: (``--lambda`` of the official ``train.py``; LabShuHangGU/DCAE README)
OFFICIAL_LAMBDAS: Dict[str, Tuple[float, ...]] = {
    "mse": (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.05),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.5),
}

_DRIVE = "https://drive.google.com/file/d/{}/view"
#: Google Drive file ids of the official checkpoints, quality 1..6 per metric
_DRIVE_IDS: Dict[str, Tuple[str, ...]] = {
    "mse": (
        "1JzVuERiZe8cStgLnE5TJii_ssppgY1p-",
        "1JE0SO876a-btXzOQLTilj7D0vJdePlB4",
        "1LdycatKcGXHvFjoR-NE-GWnPlL9-BRWX",
        "1kXfvxsljdN3EfXDGqzknFc2Ecsgf8qgS",
        "1-6ZZ-bScGYj448h1sqMTX4w2Q75MQQ1q",
        "1jCsRJq7Ttx22-yWQbEQAHJWbdIDtc30k",
    ),
    "ms-ssim": (
        "1BIgupje5UcEwzOch3QG1pooCxRxE6Rtt",
        "1br6rf4WtwLY9NPvRCY3GyVP_lvrXRi9y",
        "1U-1f24E6IrKjdHvzObnMslYBLA2YAKXe",
        "1hzgbNPGxfXrwQN-OmTIujGBXCIXYsnW1",
        "1208tRiJw37ruKON1JVPj2YLp23l2O42U",
        "1S81POfELTNyWmy2mMRlL70vuKjGC5QC_",
    ),
}
#: Google Drive pages of the official checkpoints, by ``(metric, quality)``
OFFICIAL_URLS: Dict[Tuple[str, int], str] = {
    (metric, q): _DRIVE.format(file_id)
    for metric, ids in _DRIVE_IDS.items()
    for q, file_id in enumerate(ids, 1)
}

#: sha256 of the official files by ``(metric, quality)``, where known; files
#: without an entry are verified by loading them and inferring their config
KNOWN_SHA256: Dict[Tuple[str, int], str] = {}

_ENV = "DCAE_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Local cache of the authors' checkpoints: ``$DCAE_WEIGHTS_DIR`` or
    ``~/.cache/dcae``."""
    env = os.environ.get(_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dcae"


def lambda_for(quality: int, metric: str = "mse") -> float:
    """The official lambda of ``quality`` (1 = lowest rate) for ``metric``."""
    metric = check_metric(metric)
    q = check_quality(quality)
    return OFFICIAL_LAMBDAS[metric][q - 1]


def check_metric(metric: str) -> str:
    """``metric`` if the authors trained for it (:data:`METRICS`), else ValueError."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def check_quality(quality: int) -> int:
    """``quality`` if it is one of the authors' (an int in 1..6), else ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 6:
        raise ValueError(f"quality must be an int in 1..6, got {quality!r}")
    return quality


def checkpoint_candidates(quality: int, metric: str = "mse") -> List[Path]:
    """Paths searched for the official checkpoint, first match wins.

    ``dcae-{metric}-q{quality}.pth.tar`` (the documented name) and the names
    the official ``train.py`` writes (``{lambda}checkpoint_best.pth.tar``),
    directly in :func:`weights_dir` or in its ``{metric}/`` subfolder.
    """
    lmbda = lambda_for(quality, metric)
    names = [f"dcae-{metric}-q{quality}.pth.tar"]
    for spelled in dict.fromkeys([str(lmbda), f"{lmbda:.2f}", f"{lmbda:g}"]):
        names.append(f"{spelled}checkpoint_best.pth.tar")
    root = weights_dir()
    return [d / n for d in (root, root / metric) for n in names]


def _missing_message(quality: int, metric: str) -> str:
    target = checkpoint_candidates(quality, metric)[0]
    return (
        f"the authors' DCAE checkpoint for quality {quality} ({metric}, lambda "
        f"{lambda_for(quality, metric)}) is not in {weights_dir()}. Download it from "
        f"{OFFICIAL_URLS[(metric, quality)]} (LabShuHangGU/DCAE README, 'Pretrained Model') "
        f"and save it as {target} (or set {_ENV} to the folder that holds it; the "
        f"official name {lambda_for(quality, metric)}checkpoint_best.pth.tar is accepted too)"
    )


def load_official(quality: int, metric: str = "mse") -> DCAEModel:
    """The authors' model of ``quality`` and ``metric``, read from
    :func:`weights_dir` (layout converted, eval mode, CDF tables built).

    Raises:
        DCAEError: the checkpoint is missing (the message says which file to
            download from where and where to put it) or corrupted.
        ModelMismatchError: the file holds another architecture.
    """
    metric = check_metric(metric)
    quality = check_quality(quality)
    path = next((p for p in checkpoint_candidates(quality, metric) if p.is_file()), None)
    if path is None:
        raise DCAEError(_missing_message(quality, metric))
    known = KNOWN_SHA256.get((metric, quality))
    if known is not None and file_sha256(path) != known:
        raise DCAEError(f"{path} is corrupted or not the official file (sha256 mismatch)")
    model = model_from_checkpoint(read_checkpoint(path), path)
    paper = PRESETS["paper"]
    if model.config != paper:
        raise ModelMismatchError(
            f"{path} holds a DCAE model of another architecture than the authors' "
            f"checkpoints ({model.config}); {_missing_message(quality, metric)}"
        )
    return model
