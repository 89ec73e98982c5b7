"""Where coding meets the host: every copy between the model's device and the
CPU that ``compress`` and ``decompress`` make.

The rANS coder of CompressAI runs on the CPU on Python lists.  Everything
before it (transforms, hyperprior, every slice's Gaussian parameters, the
symbols and CDF indexes) stays on the model's device; each coding pass then
makes exactly one device-to-host copy (encoder: the symbols and indexes of the
pass stacked in one int32 tensor; decoder: the indexes) and the decoder one
host-to-device copy (the decoded symbols).  The per-image count is in the
performance guide ("Host synchronisations").

Both copies go through :func:`to_host` and :func:`to_device`, so tests can
trace a model on another device up to the coder (``tests/test_fake_cuda.py``
replaces them to record every transfer).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

__all__ = ["to_device", "to_host"]


def to_host(t: Tensor) -> np.ndarray:
    """``t`` as a NumPy array on the host: one device-to-host copy (a
    synchronisation on an accelerator)."""
    return t.detach().cpu().numpy()


def to_device(a: np.ndarray, like: Tensor) -> Tensor:
    """Host values ``a`` as a tensor on ``like``'s device with its dtype: one
    host-to-device copy."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(
        device=like.device, dtype=like.dtype, copy=True
    )
