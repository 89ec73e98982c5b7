"""Attention: every attention computation in dcae goes through this file.

Two kinds of attention appear in DCAE:

* window self-attention in the Swin stages of the transforms and hyperprior
  (relative position bias, shifted windows), and
* dictionary cross-attention in the entropy model (queries from the latent
  context, keys/values from a learned dictionary shared by the batch).

Backends (a global switch picks one):

``"reference"``
    plain ``matmul`` + ``softmax`` in the order of the official
    implementation: ``softmax(Q K^T * scale + B) V``.
``"fused"``
    the relative-position bias and the shifted-window/padding mask are one
    cached additive tensor per shape, added inside the ``Q K^T`` product by
    :func:`torch.baddbmm` (``B + scale * Q K^T`` in one pass), then
    ``softmax`` and ``bmm``.  For the dictionary it is SDPA.
``"sdpa"``
    :func:`torch.nn.functional.scaled_dot_product_attention` with the same
    additive tensor as ``attn_mask`` (for the dictionary: the per-head
    temperature folded into the queries).

Switch: ``dcae.set_attention_backend("auto" | "reference" | "fused" | "sdpa")``,
the context manager ``with dcae.attention_backend("sdpa"): ...``, or the
environment variable ``DCAE_ATTENTION_BACKEND`` (read at import).

``"auto"`` (the default) uses what measured fastest on each device
(``benchmarks/bench_attention.py``, ``docs/guides/performance.rst``):
``"fused"`` for windows on CPU, SDPA for windows on CUDA, SDPA for the
dictionary everywhere.

Window attention runs over *chunks of windows*: the gather of each chunk's
tokens (padding, cyclic shift and window partition in one ``index_select``),
the ``qkv`` projection, the attention and the output projection are done
chunk by chunk and scattered back with one ``index_copy_``.  A chunk's score
tensor is bounded (4 MiB on CPU so that it stays in cache, 256 MiB on
GPU), so peak memory no longer grows with ``windows x heads x p x p``: a
4096 x 4096 image would otherwise need a 12 GB score tensor in the first
stage.  Every backend uses the same chunking; they differ only in the three
operations of the attention core.

Einops axis legend used in this file::

    b  batch            n  windows per image     h  heads
    p  tokens per window (w*w)                  d  head dim
    l  query tokens     e  dictionary entries   c  channels
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "WindowAttention",
    "attention_backend",
    "dictionary_attention",
    "get_attention_backend",
    "set_attention_backend",
]

BACKENDS = ("auto", "reference", "fused", "sdpa")

_backend = os.environ.get("DCAE_ATTENTION_BACKEND", "auto").strip().lower() or "auto"
if _backend not in BACKENDS:  # pragma: no cover - depends on the environment
    raise ValueError(f"DCAE_ATTENTION_BACKEND={_backend!r} is not one of {', '.join(BACKENDS)}")


def set_attention_backend(name: str) -> None:
    """Select the attention backend used by every dcae module.

    Args:
        name: ``"auto"``, ``"reference"``, ``"fused"`` or ``"sdpa"``.
    """
    global _backend
    name = str(name).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is not one of {', '.join(BACKENDS)}")
    _backend = name


def get_attention_backend() -> str:
    """Return the name of the selected attention backend."""
    return _backend


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Context manager that selects an attention backend and restores the old one."""
    previous = get_attention_backend()
    set_attention_backend(name)
    try:
        yield
    finally:
        set_attention_backend(previous)


def _resolve(kind: str, device: torch.device) -> str:
    """The concrete backend (``reference``/``fused``/``sdpa``) for ``kind``
    (``"window"`` or ``"dictionary"``) on ``device``."""
    if _backend != "auto":
        return _backend
    # measured choices, see docs/guides/performance.rst
    if kind == "dictionary" or device.type == "cuda":
        return "sdpa"
    return "fused"


def dictionary_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> Tensor:
    """Cross-attention of queries against dictionary keys/values.

    ``softmax(t_h * Q K^T) V`` with a per-head temperature ``t_h`` and no
    ``1/sqrt(d)`` factor (Eq. (8) of Lu et al., CVPR 2025).

    Args:
        q: queries, ``(b, h, l, d)``.
        k: dictionary keys, ``(h, e, d)``, shared by the batch.
        v: dictionary values, ``(h, e, d)``, shared by the batch.
        temperature: ``(h,)``.

    Returns:
        ``(b, h, l, d)``.
    """
    t = temperature.view(1, -1, 1, 1)
    if _resolve("dictionary", q.device) != "reference":
        b = q.shape[0]
        kk = k.unsqueeze(0).expand(b, -1, -1, -1)
        vv = v.unsqueeze(0).expand(b, -1, -1, -1)
        return F.scaled_dot_product_attention(q * t, kk, vv, scale=1.0)
    sim = torch.matmul(q, k.transpose(-2, -1)) * t
    return torch.matmul(sim.softmax(dim=-1), v)


#: Bytes of one chunk's score tensor ``(windows, h, p, p)`` per device type.
#: On CPU a chunk should stay in the L2/L3 cache; on GPU it only bounds memory.
WINDOW_CHUNK_BYTES: Dict[str, int] = {"cpu": 4 << 20, "cuda": 256 << 20}
_DEFAULT_CHUNK_BYTES = 256 << 20
_CACHE_LIMIT = 16


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class _Geometry(NamedTuple):
    """Window layout of one input shape (cached per shape and device).

    ``index[j * p + t]`` is the row of the flattened input ``(b * H * W, c)``
    holding token ``t`` of window ``j`` (windows of all samples in order);
    positions in the padding point to row ``b * H * W`` (a zero row on input,
    a discarded row on output).  ``types[j]`` is the mask type of window ``j``
    and ``masks[types[j]]`` its boolean mask (True: query must not see key),
    or ``masks`` is None when no window needs one.
    """

    index: Tensor
    types: Tensor
    masks: Optional[Tensor]
    padded: bool
    #: ``(b, H, W, device)`` of a cached geometry (keys the bias+mask cache;
    #: not ``id(geo)``, which a later geometry can reuse); ``()`` uncached
    key: Tuple[Any, ...] = ()


def _axis_labels(size: int, padded_size: int, ws: int, shift: int) -> List[Tuple[int, bool]]:
    """(region, valid) of each position of one axis in the rolled frame.

    Rolled position ``r`` holds original position ``(r + shift) % padded_size``;
    ``region`` is Swin's shifted-window region label (0, 1, 2 from the
    top/left), ``valid`` says the position is not padding.
    """
    labels = []
    for r in range(padded_size):
        region = 0
        if shift:
            region = int(r >= padded_size - ws) + int(r >= padded_size - shift)
        labels.append((region, (r + shift) % padded_size < size))
    return labels


def _axis_types(labels: List[Tuple[int, bool]], ws: int) -> Tuple[List[int], List[Tuple]]:
    """Group the windows along one axis by their label vectors."""
    types: List[int] = []
    uniques: Dict[Tuple, int] = {}
    for i in range(len(labels) // ws):
        key = tuple(labels[i * ws : (i + 1) * ws])
        types.append(uniques.setdefault(key, len(uniques)))
    return types, list(uniques)


def _window_geometry(
    b: int, h: int, w: int, ws: int, shift: int, device: torch.device
) -> _Geometry:
    """Build the :class:`_Geometry` of a ``(b, h, w, c)`` input (tensor ops and
    O(H + W) integer bookkeeping; no loop over tokens)."""
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    padded = hp != h or wp != w
    # token index: pad + cyclic shift + window partition as one gather
    rows = (torch.arange(hp, device=device) + shift) % hp
    cols = (torch.arange(wp, device=device) + shift) % wp
    flat = rows[:, None] * w + cols[None, :]
    valid = (rows < h)[:, None] & (cols < w)[None, :]
    flat = flat.view(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(1, -1)
    valid = valid.view(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(1, -1)
    offsets = torch.arange(b, device=device)[:, None] * (h * w)
    index = torch.where(valid, flat + offsets, b * h * w).reshape(-1)
    # mask types: a window's mask depends only on its row and column labels
    row_types, row_keys = _axis_types(_axis_labels(h, hp, ws, shift), ws)
    col_types, col_keys = _axis_types(_axis_labels(w, wp, ws, shift), ws)
    types = torch.tensor(row_types, device=device)[:, None] * len(col_keys) + torch.tensor(
        col_types, device=device
    )
    types = types.reshape(1, -1).expand(b, -1).reshape(-1)
    masks: Optional[Tensor] = None
    if shift or padded:
        rr = torch.tensor([[lab[0] for lab in k] for k in row_keys], device=device)
        rv = torch.tensor([[lab[1] for lab in k] for k in row_keys], device=device)
        cr = torch.tensor([[lab[0] for lab in k] for k in col_keys], device=device)
        cv = torch.tensor([[lab[1] for lab in k] for k in col_keys], device=device)
        region = (rr[:, None, :, None] * 3 + cr[None, :, None, :]).reshape(-1, ws * ws)
        ok = (rv[:, None, :, None] & cv[None, :, None, :]).reshape(-1, ws * ws)
        masks = region[:, :, None] != region[:, None, :]
        # padded keys are hidden from real queries; padded queries (discarded
        # afterwards) keep their keys so that no softmax row is empty
        masks = masks | (ok[:, :, None] & ok[:, None, :].logical_not())
    return _Geometry(index, types, masks, padded)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with relative position bias.

    The attention of Swin Transformer as used by DCAE: tokens are grouped into
    non-overlapping ``w x w`` windows (cyclically shifted by ``w // 2`` for
    shifted blocks), and each window attends to itself with a learned bias
    ``B[h, i - j]`` indexed by relative position::

        x (b, H, W, c) --gather chunk of windows (pad, roll, partition)--> (m*p, c)
          --qkv--> Q, K, V --softmax(Q K^T * scale + B + mask) V--> --proj-->
          --index_copy_ back to (b, H, W, c)

    Feature maps whose sides are not multiples of ``w`` are padded at the
    bottom/right *inside* this module; padded positions are masked out as keys,
    so the output at real positions does not depend on the padding.  When the
    sides are multiples of ``w`` the result is that of the official
    implementation.

    The window layout (gather index, mask types) is cached per input shape and
    device; the additive ``bias + mask`` tensor is cached too when no gradient
    flows into the bias (keyed on the parameter's version, so optimiser steps
    invalidate it).

    Shapes: input and output ``(b, H, W, c)`` (channels last).

    Args:
        dim: channels ``c``.
        head_dim: channels per head; ``dim // head_dim`` heads.
        window_size: window side ``w``.
        shifted: shifted-window (SW-MSA) instead of regular windows (W-MSA).
    """

    def __init__(self, dim: int, head_dim: int, window_size: int, shifted: bool = False):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim={dim} is not a multiple of head_dim={head_dim}")
        self.dim = dim
        self.head_dim = head_dim
        self.num_heads = dim // head_dim
        self.window_size = window_size
        self.shifted = shifted
        self.shift = window_size // 2 if shifted else 0
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.relative_position_bias = nn.Parameter(
            torch.zeros(self.num_heads, 2 * window_size - 1, 2 * window_size - 1)
        )
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        self.proj = nn.Linear(dim, dim)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ).flatten(1)  # (2, p)
        rel = coords[:, :, None] - coords[:, None, :] + window_size - 1  # (2, p, p)
        index = rel[0] * (2 * window_size - 1) + rel[1]
        self.register_buffer("relative_position_index", index.flatten(), persistent=False)
        self._geometry_cache: Dict[Tuple[Any, ...], _Geometry] = {}
        self._additive_cache: Dict[Tuple[Any, ...], Tuple[Tuple[int, ...], Tensor]] = {}

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.num_heads}, window_size={self.window_size}, "
            f"shifted={self.shifted}"
        )

    def relative_bias(self) -> Tensor:
        """Relative position bias gathered into ``(h, p, p)``."""
        table = self.relative_position_bias.flatten(1)
        p = self.window_size**2
        return table[:, self.relative_position_index].view(self.num_heads, p, p)

    def geometry(self, b: int, h: int, w: int, device: torch.device) -> _Geometry:
        """Window layout of a ``(b, h, w, c)`` input, cached per shape/device."""
        if _is_compiling():
            return _window_geometry(b, h, w, self.window_size, self.shift, device)
        key = (b, h, w, device)
        geo = self._geometry_cache.get(key)
        if geo is None:
            if len(self._geometry_cache) >= _CACHE_LIMIT:
                self._geometry_cache.clear()
            geo = _window_geometry(b, h, w, self.window_size, self.shift, device)
            geo = geo._replace(key=key)
            self._geometry_cache[key] = geo
        return geo

    def additive(self, geo: _Geometry, dtype: torch.dtype) -> Tensor:
        """``bias + mask`` (``-inf`` where masked) per mask type: ``(T, h, p, p)``."""
        param = self.relative_position_bias
        cacheable = not (torch.is_grad_enabled() and param.requires_grad)
        if cacheable and geo.key and not _is_compiling():
            key = (geo.key, dtype)
            version = (param._version, param.data_ptr())
            hit = self._additive_cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
            additive = self._build_additive(geo, dtype).detach()
            if len(self._additive_cache) >= _CACHE_LIMIT:
                self._additive_cache.clear()
            self._additive_cache[key] = (version, additive)
            return additive
        return self._build_additive(geo, dtype)

    def _build_additive(self, geo: _Geometry, dtype: torch.dtype) -> Tensor:
        bias = self.relative_bias().unsqueeze(0)
        if geo.masks is not None:
            bias = bias.masked_fill(geo.masks[:, None], float("-inf"))
        return bias.to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Apply window attention to ``x`` of shape ``(b, H, W, c)``."""
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(
                f"WindowAttention expects (b, H, W, {self.dim}), got {tuple(x.shape)}"
            )
        b, h, w, c = x.shape
        heads, d, p = self.num_heads, self.head_dim, self.window_size**2
        geo = self.geometry(b, h, w, x.device)
        rows = b * h * w
        tokens = x.reshape(rows, c)
        if geo.padded:
            tokens = torch.cat([tokens, tokens.new_zeros(1, c)])
        num_windows = geo.types.shape[0]
        backend = _resolve("window", x.device)
        if _is_compiling():
            chunk = num_windows
        else:
            budget = WINDOW_CHUNK_BYTES.get(x.device.type, _DEFAULT_CHUNK_BYTES)
            chunk = max(1, budget // (heads * p * p * x.element_size()))
        out: Optional[Tensor] = None
        additive: Optional[Tensor] = None
        for start in range(0, num_windows, chunk):
            m = min(chunk, num_windows - start)
            index = geo.index[start * p : (start + m) * p]
            qkv = self.qkv(tokens.index_select(0, index))  # (m*p, 3c)
            q, k, v = qkv.view(m, p, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
            if additive is None:
                additive = self.additive(geo, qkv.dtype)  # (T, h, p, p)
            types = geo.types[start : start + m]
            o = self._core(backend, q, k, v, additive.index_select(0, types))  # (m, h, p, d)
            o = self.proj(o.transpose(1, 2).reshape(m * p, c))  # (m*p, c)
            if out is None:
                out = o.new_empty(rows + int(geo.padded), c)
            out.index_copy_(0, index, o)
        return out[:rows].view(b, h, w, c)  # type: ignore[index]

    def _core(self, backend: str, q: Tensor, k: Tensor, v: Tensor, additive: Tensor) -> Tensor:
        """Attention of one chunk: ``q, k, v`` ``(m, h, p, d)``, ``additive``
        ``(m, h, p, p)`` (fresh tensor, may be overwritten) -> ``(m, h, p, d)``."""
        m, heads, p, d = q.shape
        if backend == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=self.scale)
        if backend == "fused":
            q3 = q.reshape(m * heads, p, d)
            k3 = k.reshape(m * heads, p, d)
            sim = additive.view(m * heads, p, p).baddbmm_(q3, k3.transpose(1, 2), alpha=self.scale)
            return torch.bmm(sim.softmax(dim=-1), v.reshape(m * heads, p, d)).view(m, heads, p, d)
        sim = torch.matmul(q, k.transpose(-2, -1)) * self.scale + additive
        return torch.matmul(sim.softmax(dim=-1), v)
