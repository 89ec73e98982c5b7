"""Checkpoint files of DCAE models: reading any supported file
(:func:`read_checkpoint`), the model it holds (:func:`model_from_checkpoint`)
and saving one with its configuration (:func:`save_checkpoint`).

Loading uses ``torch.load(weights_only=True)`` (:func:`~dcae.zoo.files.torch_load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..config import DCAEConfig
from ..errors import ModelMismatchError
from ..models.dcae import DCAEModel
from ..models.readiness import missing_tables
from .files import torch_load
from .packing import resolve_packed, unpack_state_dict

__all__ = ["model_from_checkpoint", "read_checkpoint", "save_checkpoint"]


def read_checkpoint(path: Union[str, Path], map_location: str = "cpu") -> Dict[str, Any]:
    """Read any supported checkpoint file as ``{"state_dict": ..., "config": ... or None}``
    (plus the file's other metadata).

    Handles :func:`save_checkpoint` files, training checkpoints (``"model"``
    and ``"optimizer"``), shipped files (xz-compressed, packed, possibly
    stored as a difference to a base file) and state dicts of other layouts
    (returned under ``"state_dict"`` as they are, for :mod:`dcae.models.layouts`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelMismatchError: the file is not a readable checkpoint, or a shipped
            file's base is missing or not the one it was made from.
    """
    path = Path(path)
    obj = torch_load(path, map_location)
    if not isinstance(obj, Mapping):
        raise ModelMismatchError(f"{path} does not hold a state dict")
    obj = dict(obj)
    if "packed" in obj:  # shipped weights: int8 tensors + scales
        try:
            packed = resolve_packed(obj, path)
            state_dict = unpack_state_dict(packed)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:
            raise ModelMismatchError(f"{path} holds malformed packed weights: {e!r}") from e
        meta = {k: v for k, v in obj.items() if k not in ("packed", "same_as_base")}
        return {**meta, "state_dict": state_dict, "config": obj.get("config")}
    if "model" in obj and "optimizer" in obj:  # a dcae training checkpoint
        return {"state_dict": obj["model"], "config": obj.get("config")}
    if "state_dict" in obj:
        return {**obj, "config": obj.get("config")}
    return {"state_dict": obj, "config": None}


def model_from_checkpoint(
    obj: Mapping[str, Any], path: Union[str, Path], cls: Optional[type] = None
) -> DCAEModel:
    """The eval-mode DCAE model (of class ``cls``, default :class:`DCAEModel`)
    of a checkpoint :func:`read_checkpoint` returned; CDF tables built if missing."""
    cfg = None
    if isinstance(obj["config"], Mapping):
        cfg = DCAEConfig.from_dict(dict(obj["config"]))
    try:
        model = (cls or DCAEModel).from_state_dict({"state_dict": obj["state_dict"]}, config=cfg)
    except (RuntimeError, KeyError, ModelMismatchError) as e:
        raise ModelMismatchError(
            f"{path} does not fit a DCAE model (for another codec, pass its name: --model "
            f"NAME or module:Class): {e}"
        ) from e
    model.eval()
    if missing_tables(model):
        model.update(force=True)
    return model


def save_checkpoint(model: DCAEModel, path: Union[str, Path], **extra: Any) -> None:
    """Save ``model`` with its config (and ``extra`` metadata) for :func:`load_checkpoint`."""
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(), **extra}, path)
