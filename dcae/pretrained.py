"""Pretrained models shipped inside the package (``dcae/weights``).

``dcae/weights/manifest.json`` lists the shipped checkpoints, one per rate
point (``quality`` 1 = lowest rate).  Each checkpoint is a dict
``{"config": DCAEConfig.to_dict(), "state_dict": ..., "lambda": float,
"metric": "mse"}`` saved after ``update()``, so the CDF tables are stored and
no update is needed at load time.  Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from .config import DCAEConfig
from .errors import DCAEError, ModelMismatchError
from .model import DCAEModel

__all__ = [
    "WEIGHTS_DIR",
    "available_qualities",
    "default_quality",
    "load_checkpoint",
    "load_pretrained",
    "save_checkpoint",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _manifest() -> Dict[str, Any]:
    path = WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        return {"models": []}
    return json.loads(path.read_text())


def available_qualities() -> List[int]:
    """Qualities of the shipped models (empty if none are shipped)."""
    return sorted(int(m["quality"]) for m in _manifest()["models"])


def default_quality() -> int:
    """Quality used when none is given."""
    man = _manifest()
    if not man["models"]:
        raise DCAEError("this installation of dcae ships no pretrained weights")
    return int(man.get("default", max(available_qualities())))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _load_cached(quality: int) -> DCAEModel:
    entries = {int(m["quality"]): m for m in _manifest()["models"]}
    entry = entries[quality]
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise DCAEError(f"shipped weights {path} are missing; reinstall dcae")
    if "sha256" in entry and _sha256(path) != entry["sha256"]:
        raise DCAEError(f"shipped weights {path} are corrupted (sha256 mismatch); reinstall dcae")
    return load_checkpoint(path)


def load_pretrained(quality: Optional[int] = None) -> DCAEModel:
    """The shipped model of the given quality (1 = lowest rate), in eval mode.

    Args:
        quality: rate point; default :func:`default_quality`.

    Raises:
        DCAEError: no weights are shipped or ``quality`` is not one of them.
    """
    qualities = available_qualities()
    if not qualities:
        raise DCAEError(
            "this installation of dcae ships no pretrained weights; pass --checkpoint PATH"
        )
    q = default_quality() if quality is None else int(quality)
    if q not in qualities:
        raise DCAEError(f"quality {quality} is not available; choose one of {qualities}")
    return _load_cached(q)


def load_checkpoint(path: Union[str, Path], map_location: str = "cpu") -> DCAEModel:
    """Load a checkpoint in any supported layout into an eval-mode model.

    Accepts files written by :func:`save_checkpoint` (with a config), training
    checkpoints ``{"state_dict": ...}`` and the official implementation's files
    (the configuration is then inferred).  CDF tables are built if missing.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # unpickling errors of all kinds
        raise ModelMismatchError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(obj, Mapping):
        raise ModelMismatchError(f"{path} does not hold a state dict")
    if "model" in obj and "optimizer" in obj:  # a dcae training checkpoint
        obj = {"state_dict": obj["model"], "config": obj.get("config")}
    cfg = None
    if "config" in obj and isinstance(obj["config"], Mapping):
        cfg = DCAEConfig.from_dict(dict(obj["config"]))
    try:
        model = DCAEModel.from_state_dict(obj, config=cfg)
    except (RuntimeError, KeyError) as e:
        raise ModelMismatchError(f"{path} does not fit a DCAE model: {e}") from e
    model.eval()
    gc = model.entropy_model.gaussian_conditional
    if (
        gc.quantized_cdf.numel() == 0
        or model.latent_codec.hyper.entropy_bottleneck._quantized_cdf.numel() == 0
    ):
        model.update(force=True)
    return model


def save_checkpoint(model: DCAEModel, path: Union[str, Path], **extra: Any) -> None:
    """Save ``model`` with its config (and ``extra`` metadata) for :func:`load_checkpoint`."""
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(), **extra}, path)
