"""(Shifted) window self-attention of the Swin stages, with relative
position bias (Liu et al., ICCV 2021), as DCAE's transforms and hyperprior
use it.

Window attention runs over *chunks of windows*: the gather of each chunk's
tokens (padding, cyclic shift and window partition in one ``index_select``),
the ``qkv`` projection, the attention and the output projection are done
chunk by chunk and scattered back with one ``index_copy_``.  A chunk's score
tensor is bounded by the module's ``chunk_bytes`` (by default the read-only
:data:`WINDOW_CHUNK_BYTES` of the input's device: 4 MiB on CPU so that it
stays in cache, 256 MiB on GPU), so peak memory no longer grows with
``windows x heads x p x p``: a 4096 x 4096 image would otherwise need a
12 GB score tensor in the first stage.  Every backend
(:mod:`dcae.layers.attention`) uses the same chunks, eager or under
:func:`torch.compile`; they differ only in the three operations of the
attention core.

Einops axis legend used in this file (the window loop writes its patterns
as comments over ``view``/``permute``, which cost less per call)::

    b  batch            m  windows in a chunk   h  heads
    p  tokens per window (w*w)                  d  head dim
    c  channels
"""

from __future__ import annotations

import copy
import types
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionModule, resolve_backend

__all__ = ["WINDOW_CHUNK_BYTES", "WindowAttention", "set_window_chunk_bytes"]

#: Default bytes of one chunk's score tensor ``(windows, h, p, p)`` per device
#: type (read-only: set a module's ``chunk_bytes`` instead).  On CPU a chunk
#: should stay in the L2/L3 cache; on GPU it only bounds memory.
WINDOW_CHUNK_BYTES: Mapping[str, int] = types.MappingProxyType({"cpu": 4 << 20, "cuda": 256 << 20})
_DEFAULT_CHUNK_BYTES = 256 << 20
_CACHE_LIMIT = 16


def set_window_chunk_bytes(nbytes: Optional[int], model: nn.Module) -> None:
    """Set the chunk budget of every :class:`WindowAttention` in ``model``.

    Args:
        nbytes: bytes of one chunk's score tensor on every device, or ``None``
            for the per-device :data:`WINDOW_CHUNK_BYTES`.
        model: a model containing window attention (or one such module).
    """
    if nbytes is not None and int(nbytes) < 1:
        raise ValueError(f"chunk budget must be a positive number of bytes, got {nbytes}")
    modules = [m for m in model.modules() if isinstance(m, WindowAttention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no WindowAttention")
    for module in modules:
        module.chunk_bytes = None if nbytes is None else int(nbytes)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class _Geometry(NamedTuple):
    """Window layout of one input shape (cached per shape and device: a pure
    function of the shape and the module's window size and shift).

    ``index[j * p + t]`` is the row of the flattened input ``(b * H * W, c)``
    holding token ``t`` of window ``j`` (windows of all samples in order);
    positions in the padding point to row ``b * H * W`` (a zero row on input,
    a discarded row on output).  ``types[j]`` is the mask type of window ``j``
    and ``masks[types[j]]`` its boolean mask (True: query must not see key),
    or ``masks`` is None when no window needs one; ``mask_bias`` is the same
    as ``(T, 1, p, p)`` float32 ``0``/``-inf`` to add to the bias.
    """

    index: Tensor
    types: Tensor
    masks: Optional[Tensor]
    mask_bias: Optional[Tensor]
    padded: bool


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
    mask_bias: Optional[Tensor] = None
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
        mask_bias = torch.zeros(masks.shape, device=device).masked_fill_(masks, float("-inf"))
        mask_bias = mask_bias.unsqueeze(1)
    return _Geometry(index, types, masks, mask_bias, padded)


class WindowAttention(AttentionModule):
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

    Settings (attributes, not weights): ``backend`` (copied from the default
    when built, see :func:`~dcae.layers.attention.set_attention_backend`) and ``chunk_bytes`` (the
    score-tensor budget of a chunk of windows; ``None``: the per-device
    :data:`WINDOW_CHUNK_BYTES`).  The result depends only on the weights, these
    settings and the input.

    The window layout (gather index, mask types: integers that depend only on
    the input shape) is cached per shape and device.  The additive
    ``bias + mask`` tensor is memoised on the *value* of the bias table (an
    entry serves only while the parameter equals the snapshot it was built
    from), never on pointers or version counters, so it cannot go stale after
    ``load_state_dict``, an optimiser step or an edit by hand.

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
        self.chunk_bytes: Optional[int] = None
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
        self._additive_cache: Dict[Tuple[Any, ...], Tuple[Tensor, Tensor]] = {}

    def __deepcopy__(self, memo: Dict[int, Any]) -> WindowAttention:
        """A copy with empty caches (derived tensors are rebuilt on use, on
        the copy's own device and dtype)."""
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k in ("_geometry_cache", "_additive_cache"):
                new.__dict__[k] = {}
            else:
                new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def extra_repr(self) -> str:
        chunk = "" if self.chunk_bytes is None else f", chunk_bytes={self.chunk_bytes}"
        return (
            f"dim={self.dim}, heads={self.num_heads}, window_size={self.window_size}, "
            f"shifted={self.shifted}, backend={self.backend}{chunk}"
        )

    def relative_bias(self) -> Tensor:
        """Relative position bias gathered into ``(h, p, p)``."""
        table = self.relative_position_bias.reshape(self.num_heads, -1)
        p = self.window_size**2
        return table.index_select(1, self.relative_position_index).view(self.num_heads, p, p)

    def geometry(self, b: int, h: int, w: int, device: torch.device) -> _Geometry:
        """Window layout of a ``(b, h, w, c)`` input, cached per shape/device.

        Built outside inference mode, so that a layout first needed under
        :func:`torch.inference_mode` also serves later autograd calls.  Under
        :func:`torch.compile` it is built in the graph (same integers).
        """
        if _is_compiling():
            return _window_geometry(b, h, w, self.window_size, self.shift, device)
        key = (b, h, w, device)
        geo = self._geometry_cache.get(key)
        if geo is None:
            if len(self._geometry_cache) >= _CACHE_LIMIT:
                self._geometry_cache.clear()
            with torch.inference_mode(False):
                geo = _window_geometry(b, h, w, self.window_size, self.shift, device)
            self._geometry_cache[key] = geo
        return geo

    def additive(self, geo: _Geometry, dtype: torch.dtype) -> Tensor:
        """``bias + mask`` (``-inf`` where masked) per mask type: ``(T, h, p, p)``,
        built from the current parameter."""
        bias = self.relative_bias().unsqueeze(0)
        if geo.mask_bias is not None:
            bias = bias + geo.mask_bias  # -inf where masked, the bias unchanged elsewhere
        return bias.to(dtype)

    def _memo_additive(self, key: Tuple[Any, ...], geo: _Geometry) -> Tensor:
        """:meth:`additive` for ``key = (H, W, device, dtype)``, memoised on the
        *value* of the bias table: an entry serves only while the parameter
        equals the snapshot it was built from (``torch.equal`` on the small
        table), so no update (``load_state_dict``, optimiser step, edit by
        hand, EMA) can leave it stale.  Not memoised while gradients flow into
        the table, nor under :func:`torch.compile` (same values either way),
        nor off the CPU: there the comparison would read a flag back to the
        host (a synchronisation per block and call), and rebuilding the table
        is one small gather."""
        param = self.relative_position_bias
        if (
            _is_compiling()
            or param.device.type != "cpu"
            or (torch.is_grad_enabled() and param.requires_grad)
        ):
            return self.additive(geo, key[-1])
        hit = self._additive_cache.get(key)
        if hit is not None and hit[0].dtype == param.dtype and torch.equal(hit[0], param):
            return hit[1]
        if len(self._additive_cache) >= _CACHE_LIMIT:
            self._additive_cache.clear()
        additive = self.additive(geo, key[-1]).detach()
        self._additive_cache[key] = (param.detach().clone(), additive)
        return additive

    def windows_per_chunk(self, device: torch.device, dtype: torch.dtype) -> int:
        """Windows in one chunk: as many as ``chunk_bytes`` allows, at least one."""
        budget = self.chunk_bytes
        if budget is None:
            budget = WINDOW_CHUNK_BYTES.get(device.type, _DEFAULT_CHUNK_BYTES)
        p = self.window_size**2
        per_window = self.num_heads * p * p * dtype.itemsize
        return max(1, budget // per_window)

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
        backend = resolve_backend(self.backend, "window", x.device)
        # the same chunks eager and compiled (a compiled graph unrolls them)
        chunk = self.windows_per_chunk(x.device, x.dtype)
        out: Optional[Tensor] = None
        additive: Optional[Tensor] = None
        for start in range(0, num_windows, chunk):
            m = min(chunk, num_windows - start)
            index = geo.index[start * p : (start + m) * p]
            qkv = self.qkv(tokens.index_select(0, index))
            # "(m p) (three h d) -> three m h p d" (view + permute: the two einops
            # calls of this loop cost ~15 us, 5 % of the smallest hyperprior stage)
            q, k, v = qkv.view(m, p, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
            if additive is None:
                additive = self._memo_additive((h, w, x.device, qkv.dtype), geo)
            types = geo.types[start : start + m]
            o = self._core(backend, q, k, v, additive.index_select(0, types))
            o = self.proj(o.transpose(1, 2).reshape(m * p, c))  # "m h p d -> (m p) (h d)"
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
