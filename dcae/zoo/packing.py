"""Compact storage of shipped weights: int8 per output channel
(:func:`pack_state_dict`), xz-compressed files that may store only their
difference to a base file (:func:`write_packed`), and their reading
(:func:`resolve_packed`)."""

from __future__ import annotations

import io
import lzma
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import Tensor

from ..errors import ModelMismatchError
from .files import file_sha256, torch_load

__all__ = [
    "PACK_MIN_NUMEL",
    "pack_state_dict",
    "resolve_packed",
    "unpack_state_dict",
    "whole_packed",
    "write_packed",
]


def _wrap_int8(v: Tensor) -> Tensor:
    """Integers to int8 modulo 256 (two's complement)."""
    return ((v.to(torch.int16) + 128).remainder(256) - 128).to(torch.int8)


def whole_packed(path: Path) -> Dict[str, Any]:
    """The packed dict of a file stored whole (a valid ``base``)."""
    obj = torch_load(path, "cpu")
    if not isinstance(obj, Mapping) or "packed" not in obj:
        raise ModelMismatchError(f"{path} holds no packed weights")
    if obj.get("base") is not None:
        raise ModelMismatchError(f"{path} is itself a difference file; a base is stored whole")
    return dict(obj["packed"])


def resolve_packed(obj: Mapping[str, Any], path: Path) -> Dict[str, Any]:
    """The full packed dict of a shipped file, applying its ``base`` if any."""
    packed = obj["packed"]
    base = obj.get("base")
    if base is None:
        return dict(packed)
    base_path = path.parent / str(base["file"])
    if not base_path.is_file():
        raise ModelMismatchError(
            f"{path} stores its difference to {base_path}, which is missing; keep the "
            "shipped files together"
        )
    if file_sha256(base_path) != base["sha256"]:
        raise ModelMismatchError(
            f"{path}: its base file {base_path} is not the one it was made from"
        )
    base_packed = whole_packed(base_path)
    out: Dict[str, Any] = {k: base_packed[k] for k in obj.get("same_as_base", ())}
    for k, v in packed.items():
        if isinstance(v, Mapping) and "int8_delta" in v:
            q = base_packed[k]["int8"].to(torch.int16) + v["int8_delta"].to(torch.int16)
            out[k] = {"int8": _wrap_int8(q), "scale": v["scale"]}
        else:
            out[k] = v
    return out


#: tensors with at least this many elements (and >= 2 dims) are stored as int8
PACK_MIN_NUMEL = 4096


def pack_state_dict(state_dict: Mapping[str, Tensor]) -> Dict[str, Any]:
    """Compact storage: large float weights as int8 with one fp32 scale per
    output channel (symmetric), everything else unchanged.

    ``unpack_state_dict(pack_state_dict(sd))`` is not ``sd``: it is its
    quantised version, which *is* the shipped model (CDF tables are built from
    it, see :func:`~dcae.zoo.release.package_variable_rate`).
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


def write_packed(
    path: Union[str, Path],
    packed: Mapping[str, Any],
    base: Optional[Union[str, Path]] = None,
    **meta: Any,
) -> None:
    """Write packed weights (see :func:`pack_state_dict`) as an xz-compressed
    ``torch.save`` file that :func:`read_checkpoint` reads.

    With ``base`` (a file written by this function without a base, in the same
    folder) only the difference is stored: int8 weights as int8 deltas (modulo 256, so
    exact), tensors equal to the base's left out.  The base's name and sha256
    are recorded; reading fails clearly if it is missing or changed.
    ``meta`` (config, quality, lambda, ...) is stored beside the weights.
    """
    path = Path(path)
    body: Dict[str, Any] = dict(meta)
    if base is None:
        body["packed"] = dict(packed)
    else:
        base = Path(base)
        if base.resolve().parent != path.resolve().parent:
            raise ValueError(f"base {base} must be in the folder of {path}")
        base_packed = whole_packed(base)
        delta: Dict[str, Any] = {}
        same = []
        for k, v in packed.items():
            b = base_packed.get(k)
            if (
                isinstance(v, Mapping)
                and isinstance(b, Mapping)
                and b["int8"].shape == v["int8"].shape
            ):
                d = v["int8"].to(torch.int16) - b["int8"].to(torch.int16)
                delta[k] = {"int8_delta": _wrap_int8(d), "scale": v["scale"]}
            elif (
                isinstance(v, Tensor) and isinstance(b, Tensor)
                and b.dtype == v.dtype and b.shape == v.shape and torch.equal(b, v)
            ):  # fmt: skip
                same.append(k)
            else:
                delta[k] = v
        body.update(
            packed=delta, same_as_base=same, base={"file": base.name, "sha256": file_sha256(base)}
        )
    buf = io.BytesIO()
    torch.save(body, buf)
    path.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
