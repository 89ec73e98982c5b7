"""Attention: every attention computation in dcae goes through this file.

Two kinds of attention appear in DCAE:

* window self-attention in the Swin stages of the transforms and hyperprior
  (relative position bias, shifted windows), and
* dictionary cross-attention in the entropy model (queries from the latent
  context, keys/values from a learned dictionary shared by the batch).

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

* a module copies the *default* backend when it is built; the default comes
  from the environment variable ``DCAE_ATTENTION_BACKEND`` (read at import)
  and ``dcae.set_attention_backend(name)`` (for modules built later);
* an existing model is switched explicitly:
  ``dcae.set_attention_backend(name, model)`` sets every attention module in
  ``model``, ``with dcae.attention_backend(name, model): ...`` does so and
  restores each module's own setting afterwards.

Window attention runs over *chunks of windows*: the gather of each chunk's
tokens (padding, cyclic shift and window partition in one ``index_select``),
the ``qkv`` projection, the attention and the output projection are done
chunk by chunk and scattered back with one ``index_copy_``.  A chunk's score
tensor is bounded by the module's ``chunk_bytes`` (by default the read-only
:data:`WINDOW_CHUNK_BYTES` of the input's device: 4 MiB on CPU so that it
stays in cache, 256 MiB on GPU), so peak memory no longer grows with
``windows x heads x p x p``: a 4096 x 4096 image would otherwise need a
12 GB score tensor in the first stage.  Every backend uses the same chunks,
eager or under :func:`torch.compile`; they differ only in the three
operations of the attention core.

Einops axis legend used in this file (the window loop writes its patterns
as comments over ``view``/``permute``, which cost less per call)::

    b  batch            m  windows in a chunk   h  heads
    p  tokens per window (w*w)                  d  head dim
    l  query tokens     e  dictionary entries   c  channels
"""

from __future__ import annotations

import contextlib
import copy
import os
import types
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "WINDOW_CHUNK_BYTES",
    "AttentionModule",
    "WindowAttention",
    "attention_backend",
    "dictionary_attention",
    "get_attention_backend",
    "set_attention_backend",
    "set_window_chunk_bytes",
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


def _attention_modules(model: nn.Module) -> List[AttentionModule]:
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
    for module in _attention_modules(model):
        module.backend = name


def get_attention_backend(model: Optional[nn.Module] = None) -> str:
    """The backend of ``model``'s attention modules, or the default without one.

    Raises:
        ValueError: if ``model`` has no attention module, or modules with
            different backends.
    """
    if model is None:
        return _default_backend
    names = {module.backend for module in _attention_modules(model)}
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
    modules = _attention_modules(model)
    saved = [module.backend for module in modules]
    for module in modules:
        module.backend = name
    try:
        yield
    finally:
        for module, backend in zip(modules, saved):
            module.backend = backend


def _resolve(backend: str, kind: str, device: torch.device) -> str:
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
    if _resolve(backend, "dictionary", q.device) != "reference":
        b = q.shape[0]
        kk = k.unsqueeze(0).expand(b, -1, -1, -1)
        vv = v.unsqueeze(0).expand(b, -1, -1, -1)
        return F.scaled_dot_product_attention(q * t, kk, vv, scale=1.0)
    sim = torch.matmul(q, k.transpose(-2, -1)) * t
    return torch.matmul(sim.softmax(dim=-1), v)


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
    when built, see :func:`set_attention_backend`) and ``chunk_bytes`` (the
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
        backend = _resolve(self.backend, "window", x.device)
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
