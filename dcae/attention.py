"""Attention: every attention computation in dcae goes through this file.

Two kinds of attention appear in DCAE:

* window self-attention in the Swin stages of the transforms and hyperprior
  (relative position bias, shifted windows), and
* dictionary cross-attention in the entropy model (queries from the latent
  context, keys/values from a learned dictionary shared by the batch).

Each has a *reference* path (plain ``matmul`` + ``softmax``: the numerics of
the official implementation) and a *fused* path through
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA).  A global
switch picks the path:

* ``dcae.set_attention_backend("reference" | "sdpa" | "auto")``,
* the context manager ``with dcae.attention_backend("sdpa"): ...``,
* the environment variable ``DCAE_ATTENTION_BACKEND`` (read at import).

``"auto"`` (the default) uses what measured fastest on each device: the
reference path for windows on CPU (SDPA with an additive mask is not faster
there), SDPA for windows on CUDA and SDPA for the dictionary everywhere.

Einops axis legend used in this file::

    b  batch            n  windows per image     h  heads
    p  tokens per window (w*w)                  d  head dim
    l  query tokens     e  dictionary entries   c  channels
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, Optional, Tuple

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

BACKENDS = ("auto", "reference", "sdpa")

_backend = os.environ.get("DCAE_ATTENTION_BACKEND", "auto").strip().lower() or "auto"
if _backend not in BACKENDS:  # pragma: no cover - depends on the environment
    raise ValueError(f"DCAE_ATTENTION_BACKEND={_backend!r} is not one of {', '.join(BACKENDS)}")


def set_attention_backend(name: str) -> None:
    """Select the attention backend used by every dcae module.

    Args:
        name: ``"auto"``, ``"reference"`` or ``"sdpa"``.
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


def _use_sdpa(kind: str, device: torch.device) -> bool:
    if _backend == "reference":
        return False
    if _backend == "sdpa":
        return True
    # auto: measured choices (see docs/performance.rst)
    return kind == "dictionary" or device.type == "cuda"


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
    if _use_sdpa("dictionary", q.device):
        b = q.shape[0]
        kk = k.unsqueeze(0).expand(b, -1, -1, -1)
        vv = v.unsqueeze(0).expand(b, -1, -1, -1)
        return F.scaled_dot_product_attention(q * t, kk, vv, scale=1.0)
    sim = torch.matmul(q, k.transpose(-2, -1)) * t
    return torch.matmul(sim.softmax(dim=-1), v)


_MaskKey = Tuple[int, int, int, int, bool, torch.device]


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with relative position bias.

    The attention of Swin Transformer as used by DCAE: tokens are grouped into
    non-overlapping ``w x w`` windows (cyclically shifted by ``w // 2`` for
    shifted blocks), and each window attends to itself with a learned bias
    ``B[h, i - j]`` indexed by relative position.

    Feature maps whose sides are not multiples of ``w`` are padded at the
    bottom/right *inside* this module; padded positions are masked out as keys,
    so the output at real positions does not depend on the padding.  When the
    sides are multiples of ``w`` the result is that of the official
    implementation.

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
        self.register_buffer("relative_position_index", index, persistent=False)
        self._mask_cache: Dict[_MaskKey, Optional[Tensor]] = {}

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.num_heads}, window_size={self.window_size}, "
            f"shifted={self.shifted}"
        )

    def relative_bias(self) -> Tensor:
        """Relative position bias gathered into ``(h, p, p)``."""
        table = self.relative_position_bias.flatten(1)
        p = self.window_size**2
        return table[:, self.relative_position_index.flatten()].view(self.num_heads, p, p)

    def _mask(self, hp: int, wp: int, h: int, w: int, device: torch.device) -> Optional[Tensor]:
        """Boolean mask ``(n, p, p)``: True where a query must not see a key.

        Cached per shape and device; built with tensor ops only.
        """
        key = (hp, wp, h, w, self.shifted, device)
        if key in self._mask_cache:
            return self._mask_cache[key]
        ws = self.window_size
        shift = ws // 2 if self.shifted else 0
        if not self.shifted and hp == h and wp == w:
            mask = None
        else:
            rows = torch.arange(hp, device=device)
            cols = torch.arange(wp, device=device)
            # region label of each padded-grid position (Swin's img_mask)
            if self.shifted:
                row_region = (rows >= hp - ws).long() + (rows >= hp - shift).long()
                col_region = (cols >= wp - ws).long() + (cols >= wp - shift).long()
            else:
                row_region = torch.zeros_like(rows)
                col_region = torch.zeros_like(cols)
            region = row_region[:, None] * 3 + col_region[None, :]
            # validity in the rolled frame: rolled position r holds original (r + shift) % hp
            valid = ((rows + shift) % hp < h)[:, None] & ((cols + shift) % wp < w)[None, :]
            region = self._partition(region[None, :, :, None])[0, :, :, 0]  # (n, p)
            valid = self._partition(valid[None, :, :, None])[0, :, :, 0]
            mask = region[:, :, None] != region[:, None, :]
            # padded keys are hidden from real queries; padded queries (discarded
            # afterwards) keep their keys so that no softmax row is empty
            mask = mask | (valid[:, None, :].logical_not() & valid[:, :, None])
            if not bool(mask.any()):
                mask = None
        if len(self._mask_cache) > 32:
            self._mask_cache.clear()
        self._mask_cache[key] = mask
        return mask

    def _partition(self, x: Tensor) -> Tensor:
        """``(b, H, W, c) -> (b, n, p, c)`` for H, W multiples of the window."""
        b, hh, ww, c = x.shape
        s = self.window_size
        x = x.view(b, hh // s, s, ww // s, s, c).transpose(2, 3)
        return x.reshape(b, (hh // s) * (ww // s), s * s, c)

    def _merge(self, x: Tensor, hh: int, ww: int) -> Tensor:
        """``(b, n, p, c) -> (b, H, W, c)``."""
        b, _, _, c = x.shape
        s = self.window_size
        x = x.view(b, hh // s, ww // s, s, s, c).transpose(2, 3)
        return x.reshape(b, hh, ww, c)

    def forward(self, x: Tensor) -> Tensor:
        """Apply window attention to ``x`` of shape ``(b, H, W, c)``."""
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(
                f"WindowAttention expects (b, H, W, {self.dim}), got {tuple(x.shape)}"
            )
        b, h, w, c = x.shape
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        if hp != h or wp != w:
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        shift = ws // 2 if self.shifted else 0
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = self._partition(x)  # (b, n, p, c)
        n, p = windows.shape[1], windows.shape[2]
        qkv = self.qkv(windows).view(b, n, p, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (b, n, h, p, d)
        bias = self.relative_bias().to(q.dtype)  # (h, p, p)
        mask = self._mask(hp, wp, h, w, x.device)  # (n, p, p) or None
        if _use_sdpa("window", x.device):
            attn_bias = bias.unsqueeze(0)  # (1, h, p, p)
            if mask is not None:
                attn_bias = attn_bias.masked_fill(mask[:, None], float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        else:
            sim = torch.matmul(q, k.transpose(-2, -1)) * self.scale + bias
            if mask is not None:
                sim = sim.masked_fill(mask[:, None], float("-inf"))
            out = torch.matmul(sim.softmax(dim=-1), v)
        out = out.transpose(2, 3).reshape(b, n, p, c)
        out = self._merge(self.proj(out), hp, wp)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        if hp != h or wp != w:
            out = out[:, :h, :w].contiguous()
        return out
