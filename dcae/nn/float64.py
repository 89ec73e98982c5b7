"""Float64 arithmetic of DCAE's portable coding.

Portable coding (:mod:`dcae.nn.slice_coders`, format guide "Portable
coding") computes the entropy parameters in float64 on copies of ``h_s`` and
the entropy model.  This module makes those copies and the layers that keep
their float64 arithmetic fast on a CPU, where oneDNN has no float64 kernels:

- :func:`float64_copy`: the copy, eager (``torch.compile`` unwrapped), kept
  and reused while the module's state is unchanged;
  :func:`clear_float64_copies` drops the kept ones;
- depthwise convolutions as shifted multiply-adds, 3x3 convolutions by
  Winograd F(2x2, 3x3), other dense kernels as one product per tap, inputs
  of ``Linear``/``Conv2d`` made contiguous (MKL's float64 products are slow
  on transposed operands);
- :func:`pair_first_layers`: two layers that read one tensor computed as one
  product.

Every replacement computes its layer's function up to float64 rounding
(a few ulps), which is all portable coding assumes of any implementation.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["clear_float64_copies", "float64_copy", "pair_first_layers"]


#: the float64 copy of each module, with the state it was made from
_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def float64_copy(
    module: nn.Module, prepare: Optional[Callable[[nn.Module], object]] = None
) -> nn.Module:
    """A float64 copy of ``module`` for portable coding, with every
    ``torch.compile`` wrapper inside it replaced by the eager module it wraps
    (portable coding runs one canonical computation; compiling is a speed
    choice that must not change symbols).

    The copy is kept (weakly, beside the module, never in its state) and
    reused while the module's state is unchanged: the same submodule and
    tensor objects, the same plain settings of every submodule (train flag,
    attention backend, ``record_params``, ...), and every parameter and
    buffer at the same storage and in-place version.  A training step,
    ``load_state_dict``, ``update()``, ``.to()`` or a swapped submodule makes a
    fresh copy.  A module whose tensors were made under
    ``torch.inference_mode()`` (no version counters) is copied on every
    call.  ``prepare`` is applied once to each new copy, before it is kept
    (the owner of ``module`` rearranging its own copy: the entropy model
    pairs layers, :func:`pair_first_layers`)."""
    state = _State.of(module)
    cached = _FLOAT64_COPIES.get(module) if state is not None else None
    if cached is not None and cached[0].matches(state):
        return cached[1]
    copied = _make_float64_copy(module)
    if prepare is not None:
        prepare(copied)
    if state is not None:
        _FLOAT64_COPIES[module] = (state, copied)
    return copied


_SETTINGS = (bool, int, float, str, tuple, type(None))


class _State:
    """What a float64 copy of a module depends on: its submodule and tensor
    objects (held weakly), their plain settings, storages and versions."""

    def __init__(self, objects: List[Any], key: tuple):
        self.refs = [weakref.ref(o) for o in objects]
        self.key = key

    @staticmethod
    def of(module: nn.Module) -> Optional[_State]:
        tensors = [*module.parameters(), *module.buffers()]
        if any(_is_fake(t) for t in tensors):  # device tracing: nothing worth keeping
            return None
        modules = list(module.modules())
        try:  # inference-mode tensors have no version counter
            versions = tuple(
                (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in tensors
            )
        except RuntimeError:
            return None
        # plain settings (train flag, attention backend, record_params, ...)
        flags = tuple(
            tuple((k, v) for k, v in vars(m).items() if isinstance(v, _SETTINGS)) for m in modules
        )
        return _State([*tensors, *modules], (versions, flags))

    def matches(self, other: Optional[_State]) -> bool:
        return (
            other is not None
            and self.key == other.key
            and len(self.refs) == len(other.refs)
            and all(a() is b() is not None for a, b in zip(self.refs, other.refs))
        )


def clear_float64_copies() -> None:
    """Drop every kept float64 copy (:func:`float64_copy`) now; the next
    portable coding makes its copy again.  A copy also goes with its model.
    They hold about 40 MB for the ``small`` preset and 1 GB for ``paper``."""
    _FLOAT64_COPIES.clear()


def _is_fake(t: Tensor) -> bool:
    """A tensor of ``FakeTensorMode`` (device tracing), which has no data."""
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def _make_float64_copy(module: nn.Module) -> nn.Module:
    # a plain (not inference-mode) copy: attention caches read version counters
    with torch.inference_mode(False), torch.no_grad():
        source = _eager(module)
        # the copy's tensors, given to deepcopy: float ones converted once (no
        # float32 copy made first; new objects, as tensor subclasses such as fake
        # tensors refuse the swap ``Module.to`` makes; no gradients), integer
        # ones (CDF tables) shared, since coding only reads them
        memo: Dict[int, Any] = {}
        for t in [*source.parameters(), *source.buffers()]:
            if not t.is_floating_point():
                memo[id(t)] = t
            elif isinstance(t, nn.Parameter):
                memo[id(t)] = nn.Parameter(t.detach().double(), requires_grad=False)
            else:
                memo[id(t)] = t.detach().double()
        copied = copy.deepcopy(source, memo)
        for child in list(copied.modules()):
            for attr, sub in list(child._modules.items()):
                if sub is not None and hasattr(sub, "_orig_mod"):
                    child._modules[attr] = sub._orig_mod
        for child in list(copied.modules()):
            for attr, sub in list(child._modules.items()):
                if _DepthwiseConv64.handles(sub):
                    child._modules[attr] = _DepthwiseConv64(sub)  # type: ignore[arg-type]
                elif _WinogradConv64.handles(sub):
                    child._modules[attr] = _WinogradConv64(sub)  # type: ignore[arg-type]
                elif _DenseConv64.handles(sub):
                    child._modules[attr] = _DenseConv64(sub)  # type: ignore[arg-type]
                elif type(sub) in _CONTIGUOUS:
                    sub.__class__ = _CONTIGUOUS[type(sub)]
        return copied


class _DepthwiseConv64(nn.Module):
    """A depthwise ``Conv2d`` (``groups == in == out channels``, stride 1,
    zero padding) as ``k*k`` shifted multiply-adds in a fixed order.

    Float64 convolutions on CPU have no oneDNN kernel; PyTorch's fallback runs
    a grouped convolution as one small matrix product per group (64 or 128
    calls per layer), which made these layers most of the portable mode's
    cost.  Element-wise products and sums in a fixed order are also
    independent of threads and kernels by construction."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels = self.out_channels = conv.in_channels
        self.kernel = conv.kernel_size
        self.padding = conv.padding
        self.dilation = conv.dilation

    @staticmethod
    def handles(m: Optional[nn.Module]) -> bool:
        return (
            type(m) is nn.Conv2d
            and m.groups == m.in_channels == m.out_channels
            and m.stride == (1, 1)
            and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple)
        )

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (ph, pw), (dh, dw) = self.kernel, self.padding, self.dilation
        h = x.shape[-2] + 2 * ph - dh * (kh - 1)
        w = x.shape[-1] + 2 * pw - dw * (kw - 1)
        xp = F.pad(x, (pw, pw, ph, ph))
        weight = self.weight[:, 0]
        out: Optional[Tensor] = None
        for i in range(kh):
            for j in range(kw):
                tap = weight[:, i, j].view(1, -1, 1, 1)
                shifted = xp[:, :, i * dh : i * dh + h, j * dw : j * dw + w]
                out = shifted * tap if out is None else out.addcmul_(shifted, tap)
        assert out is not None
        if self.bias is not None:
            out += self.bias.view(1, -1, 1, 1)
        return out


class _Conv64(nn.Module):
    """What the float64 replacements of a dense ``Conv2d`` share: its weight,
    bias, sizes and padding, and the layers they take (stride 1, no
    dilation, zero padding, one group, at least :attr:`MIN_CHANNELS` inputs,
    a kernel that :meth:`fits`)."""

    #: fewest input channels handled (below that conv2d is as fast)
    MIN_CHANNELS = 32

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel = conv.kernel_size
        self.padding = conv.padding

    @staticmethod
    def fits(kernel: Tuple[int, ...]) -> bool:
        raise NotImplementedError

    @classmethod
    def handles(cls, m: Optional[nn.Module]) -> bool:
        return (
            type(m) is nn.Conv2d
            and m.groups == 1
            and m.in_channels >= cls.MIN_CHANNELS
            and cls.fits(m.kernel_size)
            and m.stride == (1, 1)
            and m.dilation == (1, 1)
            and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple)
        )


class _DenseConv64(_Conv64):
    """A dense ``Conv2d`` (stride 1, no dilation, zero padding, a kernel
    larger than 1x1, at least :attr:`MIN_CHANNELS` input channels) as one
    matrix product per kernel tap.

    PyTorch's float64 fallback builds the whole ``(C k k) x (H W)`` im2col
    matrix first; for wide layers that copy costs more than the product
    itself (37 ms against 16 ms for 352 -> 64 channels at 3x3 on 48x32, one
    thread; ``benchmarks/portable_cost.py``).  3x3 kernels go to
    :class:`_WinogradConv64`; this serves the other sizes.  The padded input is read as one
    flat row per channel, tap ``(i, j)`` is a column offset into those rows
    (a view, no copy), and the ``k*k`` products are accumulated in a fixed
    order; the columns that wrap around a row are cut off at the end."""

    @staticmethod
    def fits(kernel: Tuple[int, ...]) -> bool:
        return kernel != (1, 1)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (ph, pw) = self.kernel, self.padding
        xp = F.pad(x, (pw, pw, ph, ph))
        hp, wp = xp.shape[-2], xp.shape[-1]
        oh, ow = hp - kh + 1, wp - kw + 1
        if x.dim() != 4 or oh < 1 or ow < 1:  # conv2d's own error
            return F.conv2d(x, self.weight, self.bias, padding=self.padding)
        span = (oh - 1) * wp + ow  # flat positions from the first output to the last
        taps = [self.weight[:, :, i, j] for i in range(kh) for j in range(kw)]
        offsets = [i * wp + j for i in range(kh) for j in range(kw)]
        out = x.new_zeros(x.shape[0], self.out_channels, oh * wp)
        for b in range(x.shape[0]):
            flat = xp[b].reshape(self.in_channels, hp * wp)
            acc = out[b, :, :span]
            for tap, off in zip(taps, offsets):
                acc.addmm_(tap, flat[:, off : off + span])
        out = out.view(x.shape[0], self.out_channels, oh, wp)[..., :ow]
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out.contiguous()


class _WinogradConv64(_Conv64):
    """A dense 3x3 ``Conv2d`` (stride 1, no dilation, zero padding, at least
    :attr:`MIN_CHANNELS` input channels) by Winograd's minimal filtering
    F(2x2, 3x3) (Lavin and Gray, CVPR 2016): 16 matrix products over 2x2
    output tiles instead of 9 over every output, 2.25x fewer multiplications.

    The input and output transforms have coefficients 0 and +-1 (exact sums),
    the kernel transform ``G g G^T`` halves (exact in binary) and is made once
    per float64 copy; in float64 the result differs from ``conv2d`` by a few
    ulps of the largest output (4e-15 relative for the 352 -> 64 layer), like
    any other reduction order.  These layers open every mean, scale and
    residual network, where they are half of portable coding's float64 work.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv)
        g = torch.tensor(
            [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
            dtype=conv.weight.dtype,
            device=conv.weight.device,
        )
        with torch.no_grad():
            u = g @ conv.weight @ g.T  # (out, in, 4, 4)
        self.register_buffer(
            "transformed",
            u.permute(2, 3, 0, 1).reshape(16, self.out_channels, self.in_channels).contiguous(),
            persistent=False,
        )
        # the transformed kernels replace the weight (kept copies of the paper
        # preset would otherwise hold both: 0.3 GB more)
        self.weight = None

    @staticmethod
    def fits(kernel: Tuple[int, ...]) -> bool:
        return kernel == (3, 3)

    def check(self, x: Tensor) -> None:
        """Refuse an input this layer cannot convolve (the RuntimeError
        ``conv2d`` would raise)."""
        ph, pw = self.padding
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or x.shape[2] + 2 * ph < 3
            or x.shape[3] + 2 * pw < 3
        ):
            raise RuntimeError(
                f"{type(self).__name__}: expected (b, {self.in_channels}, H, W) with H, W >= "
                f"{3 - 2 * ph}, {3 - 2 * pw} (Kernel size 3x3 with padding {self.padding}), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check(x)
        y = _winograd(x, self.transformed, self.padding)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.contiguous()


def _winograd(x: Tensor, transformed: Tensor, padding: Tuple[int, int]) -> Tensor:
    """F(2x2, 3x3) of ``x`` ``(n, c, H, W)`` with kernels already transformed
    (``(16, k, c)``), no bias: ``(n, k, H + 2 ph - 2, W + 2 pw - 2)``, not
    contiguous."""
    ph, pw = padding
    n, c = x.shape[0], x.shape[1]
    k = transformed.shape[1]
    oh, ow = x.shape[2] + 2 * ph - 2, x.shape[3] + 2 * pw - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2  # 2x2 output tiles, 4x4 input tiles
    xp = F.pad(x, (pw, pw + ow % 2, ph, ph + oh % 2))
    out = x.new_empty(n, k, th, 2, tw, 2)
    for b in range(n):
        # V = B^T d B over all tiles: rows, then columns (B^T = [[1,0,-1,0],
        # [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]); even/odd rows are tile offsets
        rows = x.new_empty(4, c, th, xp.shape[-1])
        _b_transform(xp[b, :, 0::2], xp[b, :, 1::2], th, rows)
        v = x.new_empty(4, 4, c, th, tw)
        _b_transform(rows[..., 0::2], rows[..., 1::2], tw, v.transpose(0, 1), last=True)
        m = torch.bmm(transformed, v.view(16, c, th * tw)).view(4, 4, k, th, tw)
        # Y = A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
        half = torch.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])  # (2, 4, k, th, tw)
        tile = out[b].permute(2, 4, 0, 1, 3)  # (2, 2, k, th, tw) view
        tile[:, 0] = half[:, 0] + half[:, 1] + half[:, 2]
        tile[:, 1] = half[:, 1] - half[:, 2] - half[:, 3]
    return out.view(n, k, 2 * th, 2 * tw)[:, :, :oh, :ow]


def pair_first_layers(first: nn.Module, second: nn.Module) -> bool:
    """Let two networks of a float64 copy that read the same input tensor
    (the mean and scale networks of a slice read its support ``[X_i, F_i]``)
    compute their first 3x3 convolutions (:class:`_WinogradConv64`) as one:
    one input transform and one product of both layers' output channels
    (13.1 ms for 128 output channels against 2 x 8.0 ms for 64, 352 inputs,
    one thread; portable coding of the shipped model about 3 % faster).
    ``first`` computes both when called and hands ``second`` its part if
    ``second`` is then called with the very same tensor; otherwise ``second``
    computes alone, so the results never depend on the pairing (they are
    the same bits: every output channel is the same dot products).  Returns
    whether the two fit (``nn.Sequential`` networks opening with such layers
    of one input width and padding)."""
    layers = [n[0] if isinstance(n, nn.Sequential) and len(n) else None for n in (first, second)]
    a, b = layers
    if not (
        isinstance(a, _WinogradConv64)
        and isinstance(b, _WinogradConv64)
        and a.in_channels == b.in_channels
        and a.padding == b.padding
    ):
        return False
    pair = _Pair(a, b)
    first[0] = _PairedWinogradConv64(a, pair, leader=True)  # type: ignore[index]
    second[0] = _PairedWinogradConv64(b, pair, leader=False)  # type: ignore[index]
    return True


class _Pair:
    """The joint kernels of two paired layers, and the part the leader
    computed for the other with the input it came from (held until taken)."""

    def __init__(self, a: _WinogradConv64, b: _WinogradConv64):
        self.transformed = torch.cat([a.transformed, b.transformed], 1)
        self.split = a.out_channels
        self.pending: Optional[Tuple[Tensor, Tensor]] = None


class _PairedWinogradConv64(nn.Module):
    """One layer of :func:`pair_first_layers`: the leader or the follower."""

    def __init__(self, layer: _WinogradConv64, pair: _Pair, leader: bool):
        super().__init__()
        self.layer = layer
        self.pair = pair
        self.leader = leader

    def forward(self, x: Tensor) -> Tensor:
        layer, pair = self.layer, self.pair
        layer.check(x)
        if self.leader:
            both = _winograd(x, pair.transformed, layer.padding)
            y, pair.pending = both[:, : pair.split], (x, both[:, pair.split :])
        else:
            pending, pair.pending = pair.pending, None
            y = (
                pending[1]
                if pending is not None and pending[0] is x
                else _winograd(x, layer.transformed, layer.padding)
            )
        if layer.bias is not None:
            y = y + layer.bias.view(1, -1, 1, 1)
        return y.contiguous()


def _b_transform(even: Tensor, odd: Tensor, n: int, out: Tensor, last: bool = False) -> None:
    """``B^T d`` along one axis for ``n`` tiles of 4 at stride 2, whose rows
    (or, with ``last``, columns) ``2i, 2i + 1, 2i + 2, 2i + 3`` are ``even[i],
    odd[i], even[i + 1], odd[i + 1]``; written to ``out[0..3]``."""
    if last:
        e0, e1, o0, o1 = even[..., :n], even[..., 1 : n + 1], odd[..., :n], odd[..., 1 : n + 1]
    else:
        e0, e1, o0, o1 = even[:, :n], even[:, 1 : n + 1], odd[:, :n], odd[:, 1 : n + 1]
    torch.sub(e0, e1, out=out[0])
    torch.add(o0, e1, out=out[1])
    torch.sub(e1, o0, out=out[2])
    torch.sub(o0, o1, out=out[3])


class _ContiguousLinear(nn.Linear):
    """``nn.Linear`` that makes its input contiguous first: MKL's float64
    products are 3-4x slower on transposed operands (a permuted ``(b, C, H,
    W)`` map), which float32 hardly notices."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous())


class _ContiguousConv2d(nn.Conv2d):
    """``nn.Conv2d`` that makes its input contiguous first (see
    :class:`_ContiguousLinear`)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous())


_CONTIGUOUS = {nn.Linear: _ContiguousLinear, nn.Conv2d: _ContiguousConv2d}


def _eager(module: nn.Module) -> nn.Module:
    return getattr(module, "_orig_mod", module)
