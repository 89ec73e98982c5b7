"""The random state of a training run (torch, its crop generator, NumPy,
Python, CUDA), saved in ``checkpoint.pt`` and restored on resume, so that a
resumed run continues exactly as if it had never stopped."""

from __future__ import annotations

import random
from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["rng_state", "set_rng_state"]


def _numpy_state_to_tensors(state: Tuple[Any, ...]) -> Tuple[Any, ...]:
    # numpy arrays are not allowed by torch.load(weights_only=True); tensors are
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_tensors(state: Tuple[Any, ...]) -> Tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    if isinstance(keys, Tensor):
        keys = keys.numpy().astype(np.uint32)
    return (name, keys, pos, has_gauss, cached)


def rng_state(gen: torch.Generator) -> Dict[str, Any]:
    """Every random state of this process and the crop generator ``gen``
    (tensors and plain values only: ``torch.load(weights_only=True)`` reads it)."""
    return {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Dict[str, Any], gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    np.random.set_state(_numpy_state_from_tensors(state["numpy"]))
    random.setstate(state["python"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
