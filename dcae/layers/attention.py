"""Attention backends: the one switch between the implementations of
attention in dcae, and the dictionary attention of Eq. (8).

Two kinds of attention appear in DCAE:

* window self-attention in the Swin stages of the transforms and hyperprior
  (relative position bias, shifted windows: :mod:`dcae.layers.window_attention`),
  and
* dictionary cross-attention in the entropy model (queries from the latent
  context, keys/values from a learned dictionary shared by the batch:
  :func:`dictionary_attention`, used by :mod:`dcae.layers.dictionary`).

Backends (each attention module holds one in its ``backend`` attribute):

``"reference"``
    plain ``matmul`` + ``softmax`` in the order of the official
    implementation: ``softmax(Q K^T * scale + B) V``.
``"fused"``
    the relative-position bias and the shifted-window/padding mask are one
    additive tensor per mask type, added inside the ``Q K^T`` product by
    :func:`torch.baddbmm` (``B + scale * Q K^T`` in one pass), then
    ``softmax`` and ``bmm``.  For the dictionary it is SDPA.
``"sdpa"``
    :func:`torch.nn.functional.scaled_dot_product_attention` with the same
    additive tensor as ``attn_mask`` (for the dictionary: the per-head
    temperature folded into the queries).

``"auto"`` (the default) uses what measured fastest on each device
(``benchmarks/bench_attention.py``, ``docs/guides/performance.rst``):
``"fused"`` for windows on CPU, SDPA for windows on CUDA, SDPA for the
dictionary everywhere.

Settings live on the modules (timm's ``fused_attn`` pattern), so that a
result depends only on the model and its settings, never on what other code
switched in between:

* an existing model is switched explicitly:
  ``dcae.set_attention_backend(name, model)`` sets every attention module in
  ``model``, ``with dcae.attention_backend(name, model): ...`` does so and
  restores each module's own setting afterwards;
* a module copies the **default backend** when it is built, and only then.
  The default is the one process-wide setting of dcae (timm's
  ``set_fused_attn``): ``"auto"``, or the environment variable
  ``DCAE_ATTENTION_BACKEND`` read when this module is first imported, or what
  :func:`set_attention_backend` (without a model) set last; importing dcae
  never changes it.  :func:`get_attention_backend` reads it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "AttentionModule",
    "attention_backend",
    "attention_modules",
    "dictionary_attention",
    "get_attention_backend",
    "resolve_backend",
    "set_attention_backend",
]

BACKENDS = ("auto", "reference", "fused", "sdpa")


def _check_backend(name: str) -> str:
    name = str(name).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is not one of {', '.join(BACKENDS)}")
    return name


try:
    _default_backend = _check_backend(os.environ.get("DCAE_ATTENTION_BACKEND", "") or "auto")
except ValueError as e:  # pragma: no cover - depends on the environment
    raise ValueError(f"DCAE_ATTENTION_BACKEND: {e}") from None


class AttentionModule(nn.Module):
    """Base of the modules that compute attention in this file's functions.

    Holds the module's ``backend`` (one of :data:`BACKENDS`), copied from the
    default when the module is built and changed only by assignment, by
    :func:`set_attention_backend` or by :func:`attention_backend` with the
    module (or a model containing it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.backend = _default_backend

    @property
    def backend(self) -> str:
        """The attention backend of this module."""
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._backend = _check_backend(name)


def attention_modules(model: nn.Module) -> List[AttentionModule]:
    """The attention modules of ``model`` (which may itself be one).

    Raises:
        ValueError: ``model`` holds none.
    """
    modules = [m for m in model.modules() if isinstance(m, AttentionModule)]
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no dcae attention module")
    return modules


def set_attention_backend(name: str, model: Optional[nn.Module] = None) -> None:
    """Select an attention backend for a model, or the default for new modules.

    Args:
        name: ``"auto"``, ``"reference"``, ``"fused"`` or ``"sdpa"``.
        model: set the backend of every attention module in ``model`` (which
            may itself be one).  Without it, set the *default*: what modules
            built from now on start with; existing modules keep theirs.

    Raises:
        ValueError: for an unknown name, or a model without attention modules.
    """
    global _default_backend
    name = _check_backend(name)
    if model is None:
        _default_backend = name
        return
    for module in attention_modules(model):
        module.backend = name


def get_attention_backend(model: Optional[nn.Module] = None) -> str:
    """The backend of ``model``'s attention modules, or the default without one.

    Raises:
        ValueError: if ``model`` has no attention module, or modules with
            different backends.
    """
    if model is None:
        return _default_backend
    names = {module.backend for module in attention_modules(model)}
    if len(names) > 1:
        raise ValueError(f"{type(model).__name__} mixes attention backends {sorted(names)}")
    return names.pop()


@contextlib.contextmanager
def attention_backend(name: str, model: Optional[nn.Module] = None) -> Iterator[None]:
    """Context manager: :func:`set_attention_backend` for the block, then
    restore what was there (each module's own backend, or the default).

    Args:
        name: the backend inside the block.
        model: the model whose attention modules switch; without it only the
            default for modules built inside the block changes.
    """
    name = _check_backend(name)
    if model is None:
        previous = get_attention_backend()
        set_attention_backend(name)
        try:
            yield
        finally:
            set_attention_backend(previous)
        return
    modules = attention_modules(model)
    saved = [module.backend for module in modules]
    for module in modules:
        module.backend = name
    try:
        yield
    finally:
        for module, backend in zip(modules, saved):
            module.backend = backend


def resolve_backend(backend: str, kind: str, device: torch.device) -> str:
    """The concrete backend (``reference``/``fused``/``sdpa``) that ``backend``
    means for ``kind`` (``"window"`` or ``"dictionary"``) on ``device``."""
    if backend != "auto":
        return backend
    # measured choices, see docs/guides/performance.rst
    if kind == "dictionary" or device.type == "cuda":
        return "sdpa"
    return "fused"


def dictionary_attention(
    q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, backend: str = "auto"
) -> Tensor:
    """Cross-attention of queries against dictionary keys/values.

    ``softmax(t_h * Q K^T) V`` with a per-head temperature ``t_h`` and no
    ``1/sqrt(d)`` factor (Eq. (8) of Lu et al., CVPR 2025).

    Args:
        q: queries, ``(b, h, l, d)``.
        k: dictionary keys, ``(h, e, d)``, shared by the batch.
        v: dictionary values, ``(h, e, d)``, shared by the batch.
        temperature: ``(h,)``.
        backend: one of :data:`BACKENDS` (a module passes its own).

    Returns:
        ``(b, h, l, d)``.
    """
    t = temperature.view(1, -1, 1, 1)
    if resolve_backend(backend, "dictionary", q.device) != "reference":
        b = q.shape[0]
        kk = k.unsqueeze(0).expand(b, -1, -1, -1)
        vv = v.unsqueeze(0).expand(b, -1, -1, -1)
        return F.scaled_dot_product_attention(q * t, kk, vv, scale=1.0)
    sim = torch.matmul(q, k.transpose(-2, -1)) * t
    return torch.matmul(sim.softmax(dim=-1), v)
