"""Packaging the shipped model: one variable-rate model, int8-packed with the
CDF tables of the packed weights, xz-compressed, and a manifest naming it
(:func:`package_variable_rate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ..models.dcae import DCAEModel
from .checkpoints import model_from_checkpoint, read_checkpoint
from .files import file_sha256, torch_load
from .packing import pack_state_dict, unpack_state_dict, write_packed
from .shipped import MANIFEST, WEIGHTS_DIR, clear_cache

__all__ = ["package_variable_rate"]


def package_variable_rate(
    checkpoint: Union[str, Path],
    out_dir: Union[str, Path] = WEIGHTS_DIR,
    default_quality: Optional[float] = None,
    total_steps: Optional[int] = None,
    name: Optional[str] = None,
    rate_points: Optional[int] = None,
    **info: Any,
) -> Dict[str, Any]:
    """Write the shipped weights of one variable-rate model:
    ``{name}.pt.xz`` (int8-packed, CDF tables rebuilt from the packed
    weights, xz-compressed) and a manifest naming it, its quality range and
    ``default_quality`` (default: the model's).  ``name`` (default: the
    config's) also becomes the config's name, which ``.dcae`` files record.
    ``rate_points`` keeps only the first rate points
    (:meth:`~dcae.DCAEModel.first_rate_points`, before packing): the shipped
    range then ends at quality ``rate_points``.  Other files in ``out_dir``
    are left alone; remove older shipped files yourself."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = torch_load(Path(checkpoint), "cpu")
    model = model_from_checkpoint(read_checkpoint(checkpoint), checkpoint)
    if not model.variable_rate:
        raise ValueError(
            f"{checkpoint} holds a single-rate model; dcae ships one variable-rate model"
        )
    if rate_points is not None:
        model = model.first_rate_points(rate_points)
    packed = _pack(model)
    if name is not None:
        model.config = model.config.replace(name=name)
    lo, hi = model.quality_range
    default = model.default_quality if default_quality is None else float(default_quality)
    if not lo <= default <= hi:  # type: ignore[operator]
        raise ValueError(f"default quality {default} is outside [{lo:g}, {hi:g}]")
    extra: Dict[str, Any] = {"metric": meta.get("metric", "mse")}
    extra["steps"] = int(total_steps if total_steps is not None else meta.get("steps", 0))
    name = f"{model.config.name}.pt.xz"
    path = out_dir / name
    write_packed(path, packed, config=model.config.to_dict(), **extra)
    entry = {
        "file": name,
        "sha256": file_sha256(path),
        "variable_rate": True,
        "quality_range": [lo, hi],
        "lambdas": list(model.config.rate_lambdas or ()),
        **extra,
    }
    manifest = {"models": [entry], "default_quality": default, **info}
    return _write_manifest(out_dir, manifest)


def _pack(model: DCAEModel) -> Dict[str, Any]:
    """``model``'s weights packed to int8; ``model`` then holds exactly those
    weights and the CDF tables built from them."""
    packed = pack_state_dict(model.state_dict())
    model.load_state_dict(unpack_state_dict(packed))
    model.update(force=True)  # CDF tables of the int8-rounded weights
    for k, v in model.state_dict().items():
        if not isinstance(packed.get(k), Mapping):  # buffers, small tensors
            packed[k] = v.detach().clone()
    return packed


def _write_manifest(out_dir: Path, manifest: Dict[str, Any]) -> Dict[str, Any]:
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    clear_cache()
    return manifest
