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
from torch import Tensor

from .config import DCAEConfig
from .errors import DCAEError, ModelMismatchError
from .model import DCAEModel

__all__ = [
    "WEIGHTS_DIR",
    "pack_state_dict",
    "package_models",
    "unpack_state_dict",
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
    if "packed" in obj:  # shipped weights: int8 tensors + scales
        obj = {"state_dict": unpack_state_dict(obj["packed"]), "config": obj.get("config")}
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


#: tensors with at least this many elements (and >= 2 dims) are stored as int8
PACK_MIN_NUMEL = 4096


def pack_state_dict(state_dict: Mapping[str, Tensor]) -> Dict[str, Any]:
    """Compact storage: large float weights as int8 with one fp32 scale per
    output channel (symmetric), everything else unchanged.

    ``unpack_state_dict(pack_state_dict(sd))`` is not ``sd``: it is its
    quantised version, which *is* the shipped model (CDF tables are built from
    it, see :func:`package_models`).
    """
    packed: Dict[str, Any] = {}
    for k, v in state_dict.items():
        big = v.is_floating_point() and v.dim() >= 2 and v.numel() >= PACK_MIN_NUMEL
        if big and "entropy_bottleneck" not in k:
            flat = v.detach().float().reshape(v.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            packed[k] = {"int8": q.reshape(v.shape), "scale": scale}
        else:
            packed[k] = v.detach().clone()
    return packed


def unpack_state_dict(packed: Mapping[str, Any]) -> Dict[str, Tensor]:
    """Inverse of :func:`pack_state_dict` (returns fp32 tensors)."""
    out: Dict[str, Tensor] = {}
    for k, v in packed.items():
        if isinstance(v, Mapping):
            q, scale = v["int8"], v["scale"]
            shape = (-1,) + (1,) * (q.dim() - 1)
            out[k] = q.float() * scale.reshape(shape)
        else:
            out[k] = v
    return out


def package_models(
    checkpoints: Mapping[int, Union[str, Path]],
    out_dir: Union[str, Path] = WEIGHTS_DIR,
    default: Optional[int] = None,
    total_steps: Optional[Mapping[int, int]] = None,
    **info: Any,
) -> Dict[str, Any]:
    """Write shipped weights: ``{quality: checkpoint}`` -> ``small-q{q}.pt`` + manifest.

    Each model is packed (:func:`pack_state_dict`), unpacked, and its CDF
    tables rebuilt with ``update(force=True)`` so that the stored tables match
    the stored weights exactly.  ``total_steps`` replaces the step count of a
    checkpoint (which counts only its own run) by the training steps of its
    whole lineage when models were warm-started.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for q, ckpt in sorted(checkpoints.items()):
        meta = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = load_checkpoint(ckpt)
        packed = pack_state_dict(model.state_dict())
        model.load_state_dict(unpack_state_dict(packed))
        model.update(force=True)  # CDF tables of the int8-rounded weights
        for k, v in model.state_dict().items():
            if not isinstance(packed.get(k), Mapping):  # buffers, small tensors
                packed[k] = v.detach().clone()
        name = f"{model.config.name}-q{q}.pt"
        extra = {k: meta[k] for k in ("lambda", "metric", "steps") if k in meta}
        if total_steps and q in total_steps:
            extra["steps"] = int(total_steps[q])
        torch.save({"config": model.config.to_dict(), "packed": packed, "quality": q, **extra},
                   out_dir / name)  # fmt: skip
        entries.append({"quality": q, "file": name, "sha256": _sha256(out_dir / name), **extra})
    manifest = {"models": entries, "default": default or entries[len(entries) // 2]["quality"]}
    manifest.update(info)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _load_cached.cache_clear()
    return manifest
