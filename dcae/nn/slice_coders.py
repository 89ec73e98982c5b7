"""The three slice coders of :class:`~dcae.DCAEEntropyModel` and its
self-checking strings.

Eq. (4) of Lu et al. (CVPR 2025) gives slice ``i`` its Gaussian
``N(means_i, scales_i)`` from the support ``[X_i, F_i]``; the entropy model's
one slice loop computes those parameters and hands them to a coder, which
decides what becomes of the slice::

    Estimator  y_hat_i = Q(y_i - means_i) + means_i      likelihoods p(y_hat_i)
    Encoder    s_i = round(y_i - means_i) -> rANS(s_i | table(scales_i)),  y_hat_i = s_i + means_i
    Decoder    s_i = rANS^-1(table(scales_i)),                             y_hat_i = s_i + means_i

``Q`` is the straight-through rounding around the means (the paper's
training, ``quantizer="ste"``) or additive uniform noise (``"noise"``); in
eval mode the estimator always rounds, so its ``y_hat`` is the decoder's.

With a spatial context a slice is coded in passes over position masks; a
coder is then called once per pass and returns the values at the positions
of the mask (zeros elsewhere); :meth:`SliceCoder.end_slice` closes a slice.

**Self-checking strings.**  Each sample's string is ``checks + rANS``: a few
check bytes, then CompressAI's rANS payload.  The checks are bits of a
running CRC32 over the integer symbols of slices ``0..i`` (little-endian
int32), seeded with the latent shape and slice layout::

    seed  = crc32("DCAE-y1" | C | H | W | n | slice sizes | passes)
    crc_i = crc32(symbols of slice i, crc_{i-1})        (crc_{-1} = seed)
    checks = crc_0 mod 2^4 | ... | crc_{n-2} mod 2^4 | crc_{n-1} mod 2^24, zero padded to bytes

A decoder whose entropy parameters drift (other weights, another slice layout
or shape, strings in the wrong order, a truncated or corrupted string, other
numerics) decodes other symbols; the first slice whose check fails is named
in the :class:`~dcae.DecodingError`.  Because the CRC runs over all earlier
slices, a drift at slice ``j`` passes unnoticed only if every check from ``j``
on agrees by chance: at most ``2^-24`` (a drift in the last slice only), and
``2^-40`` for a drift from the first of five slices.  The cost is
``ceil((4 (n - 1) + 24) / 8)`` bytes per string: 5 bytes for five slices.
"""

from __future__ import annotations

import copy
import struct
import weakref
import zlib
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor, nn

from ..errors import DecodingError

if TYPE_CHECKING:  # pragma: no cover
    from .entropy_model import DCAEEntropyModel

__all__ = [
    "FIRST_PORTABLE_GRID_BITS",
    "GRID_BITS_RANGE",
    "PORTABLE_GRID_BITS",
    "QUANTIZERS",
    "Decoder",
    "Encoder",
    "Estimator",
    "SliceCoder",
    "check_bytes",
    "clear_float64_copies",
    "guard",
    "pack_checks",
    "float64_copy",
    "pair_first_layers",
    "portable_grid",
    "round_around_means",
    "snap",
    "string_seed",
    "symbol_crc",
    "unpack_checks",
]

#: values of ``DCAEEntropyModel(quantizer=...)``: how ``y_hat`` is formed in training
QUANTIZERS = ("ste", "noise")

#: portable coding snaps means and latent residual predictions to multiples of
#: 2^-this (``benchmarks/portable_grid.py``: the coarsest grid with no measurable cost)
PORTABLE_GRID_BITS = 6
#: the grid of the first portable streams (dcae before 2026-12-05), still decoded
FIRST_PORTABLE_GRID_BITS = 16
#: grids a stream may use
GRID_BITS_RANGE = (1, 31)

_SLICE_CHECK_BITS = 4
_LAST_CHECK_BITS = 24
_SEED_TAG = b"DCAE-y1"


# ------------------------------------------------------------------ quantisation
class _RoundAroundMeans(torch.autograd.Function):
    """``round(y - means) + means`` with a straight-through gradient.

    ``compressai.ops.quantize_ste`` computes ``(round(v) - v).detach() + v``,
    which differs from ``round(v)`` by an ulp now and then; ``forward`` would
    then disagree with ``compress``/``decompress`` (which add the integer
    symbols to the means) by ~1e-7.  This returns exactly the decoder's value
    while passing the gradient to ``y`` unchanged and none to ``means``.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, means: Tensor) -> Tensor:
        return torch.round(y - means) + means

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        return grad, None


def round_around_means(y: Tensor, means: Tensor) -> Tensor:
    """``round(y - means) + means`` as the decoder computes it, with the
    straight-through gradient of the paper (``d/dy = 1``, ``d/dmeans = 0``)."""
    return _RoundAroundMeans.apply(y, means)


#: the float64 copy of each module, with the state it was made from
_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def float64_copy(module: nn.Module) -> nn.Module:
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
    call."""
    state = _State.of(module)
    cached = _FLOAT64_COPIES.get(module) if state is not None else None
    if cached is not None and cached[0].matches(state):
        return cached[1]
    copied = _make_float64_copy(module)
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


def _make_float64_copy(module: nn.Module) -> nn.Module:
    # a plain (not inference-mode) copy: attention caches read version counters
    with torch.inference_mode(False), torch.no_grad():
        copied = copy.deepcopy(_eager(module))
        for child in list(copied.modules()):
            for attr, sub in list(child._modules.items()):
                if sub is not None and hasattr(sub, "_orig_mod"):
                    child._modules[attr] = sub._orig_mod
        copied = copied.to(torch.float64).requires_grad_(False)  # coding needs no gradients
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

    def forward(self, x: Tensor) -> Tensor:
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
        layer, (ph, pw) = self.layer, self.layer.padding
        if (
            x.dim() != 4
            or x.shape[1] != layer.in_channels
            or x.shape[2] + 2 * ph < 3
            or x.shape[3] + 2 * pw < 3
        ):
            return layer(x)
        pair = self.pair
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


def snap(t: Tensor, bits: int) -> Tensor:
    """``t`` rounded to the nearest multiple of ``2^-bits`` (exact in float64
    for ``|t| < 2^(52 - bits)``, half to even)."""
    scale = float(2**bits)
    return torch.round(t * scale) / scale


# ------------------------------------------------------------------ string checks
def symbol_crc(symbols: Tensor, crc: int) -> int:
    """CRC32 of integer symbols (one sample, one slice) as little-endian int32,
    continuing ``crc``."""
    data = symbols.to(torch.int32).contiguous().cpu().numpy().astype("<i4").tobytes()
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def string_seed(
    shape: Tuple[int, int, int],
    slice_sizes: Sequence[int],
    passes: int,
    portable: bool = False,
    grid_bits: Optional[int] = None,
) -> int:
    """The CRC seed of a string: the latent ``(C, H, W)``, the slice layout,
    the number of coding passes per slice and the coding mode (portable or
    not, and the portable grid), so a string decoded in another mode never
    verifies.  ``grid_bits`` as for :func:`portable_grid`; the first portable
    grid (:data:`FIRST_PORTABLE_GRID_BITS`) keeps the seed it always had."""
    grid = portable_grid(portable, grid_bits)
    c, h, w = (int(v) for v in shape)
    head = struct.pack(">IIIB", c, h, w, int(portable)) + struct.pack(
        f">I{len(slice_sizes)}IB", len(slice_sizes), *slice_sizes, passes
    )
    if grid is not None and grid != FIRST_PORTABLE_GRID_BITS:
        head += struct.pack(">B", grid)
    return zlib.crc32(_SEED_TAG + head) & 0xFFFFFFFF


def portable_grid(portable: bool, grid_bits: Optional[int] = None) -> Optional[int]:
    """The grid exponent of a coding mode: ``None`` when not portable, else
    ``grid_bits`` (default :data:`PORTABLE_GRID_BITS`; give
    :data:`FIRST_PORTABLE_GRID_BITS` to decode streams of the first portable
    mode).

    Raises:
        ValueError: ``grid_bits`` without ``portable``, or not an int in
            :data:`GRID_BITS_RANGE`.
    """
    if not portable:
        if grid_bits is not None:
            raise ValueError("grid_bits is a setting of portable coding: pass portable=True")
        return None
    if grid_bits is None:
        return PORTABLE_GRID_BITS
    lo, hi = GRID_BITS_RANGE
    if isinstance(grid_bits, bool) or not isinstance(grid_bits, int) or not lo <= grid_bits <= hi:
        raise ValueError(f"grid_bits must be an int in [{lo}, {hi}], got {grid_bits!r}")
    return grid_bits


def check_bytes(num_slices: int) -> int:
    """Bytes of check data at the start of every string of ``num_slices`` slices."""
    return (_SLICE_CHECK_BITS * (num_slices - 1) + _LAST_CHECK_BITS + 7) // 8


def _check_width(i: int, num_slices: int) -> int:
    return _LAST_CHECK_BITS if i == num_slices - 1 else _SLICE_CHECK_BITS


def pack_checks(crcs: Sequence[int]) -> bytes:
    """The check bytes of one string from the running CRC after each slice."""
    n = len(crcs)
    acc, bits = 0, 0
    for i, crc in enumerate(crcs):
        width = _check_width(i, n)
        acc = (acc << width) | (crc & ((1 << width) - 1))
        bits += width
    size = check_bytes(n)
    return (acc << (8 * size - bits)).to_bytes(size, "big")


def unpack_checks(data: bytes, num_slices: int) -> Optional[List[int]]:
    """The per-slice check values of ``data`` (the first
    :func:`check_bytes` bytes of a string), or ``None`` if its padding bits
    are not zero (not a string of this layout)."""
    size = check_bytes(num_slices)
    acc = int.from_bytes(data[:size], "big")
    pad = 8 * size - (_SLICE_CHECK_BITS * (num_slices - 1) + _LAST_CHECK_BITS)
    if acc & ((1 << pad) - 1):
        return None
    acc >>= pad
    out: List[int] = []
    for i in reversed(range(num_slices)):
        width = _check_width(i, num_slices)
        out.append(acc & ((1 << width) - 1))
        acc >>= width
    return out[::-1]


def guard(string: bytes, symbols: int) -> bytes:
    """``string`` followed by enough zero bytes that CompressAI's rANS decoder,
    which does not check the end of its buffer, never reads past it while
    decoding ``symbols`` symbols, however the string was crafted.

    Per symbol the decoder reads at most 16 bits for the symbol and 4 bits per
    bypass chunk; the number of bypass chunks is bounded by the 4-bit groups
    of non-zero data it has read (zeros end a bypass length), hence the bound
    ``16 * len + 12 * symbols + 1024``.  Well-formed strings never read the
    zeros."""
    return string + bytes(16 * len(string) + 12 * symbols + 1024)


# ------------------------------------------------------------------ coders
class SliceCoder:
    """What one pass over a slice does with its Gaussian parameters.

    :meth:`code` returns the quantised (or decoded) slice ``y_hat_i`` before
    latent residual prediction, at the positions of ``mask`` (all positions
    when ``mask`` is ``None``; zeros elsewhere otherwise); :meth:`end_slice`
    is called once the slice's passes are done.
    """

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def end_slice(self, i: int) -> None:
        """Called after the last pass of slice ``i``."""


def _merge(mask: Optional[Tensor], new: Tensor, old: Optional[Tensor]) -> Tensor:
    """``new`` at the positions of ``mask``, ``old`` (or zeros) elsewhere."""
    if mask is None:
        return new
    return torch.where(mask, new, torch.zeros_like(new) if old is None else old)


class Estimator(SliceCoder):
    """Training/eval pass: quantised slices and their likelihoods."""

    def __init__(self, em: DCAEEntropyModel, y: Tensor):
        self.em = em
        self.y_slices = y.split(em.slice_sizes, dim=1)
        self.likelihoods: List[Optional[Tensor]] = [None] * em.num_slices

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        y = self.y_slices[i]
        _, lik = self.em.gaussian_conditional(y, scales, means)
        if self.em.training and self.em.quantizer == "noise":
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = round_around_means(y, means)
        self.likelihoods[i] = _merge(mask, lik, self.likelihoods[i])
        return _merge(mask, y_hat, None)


class _SymbolCoder(SliceCoder):
    """Shared bookkeeping of the encoder and decoder: CDF tables, the symbols
    of the slice being coded, the running CRC of every sample."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        shape: Tuple[int, int, int],
        batch: int,
        portable: bool,
        grid_bits: Optional[int] = None,
    ):
        self.em = em
        self.tables = em.coding_tables()
        seed = string_seed(shape, em.slice_sizes, em.passes_per_slice, portable, grid_bits)
        self.crc = [seed] * batch
        self.symbols: Optional[Tensor] = None

    def _indexes(self, means: Tensor, scales: Tensor) -> Tensor:
        return self.em._coding_indexes(means, scales)

    def _add(self, mask: Optional[Tensor], symbols: Tensor) -> None:
        self.symbols = _merge(mask, symbols, self.symbols)

    def _close(self) -> List[int]:
        """Advance every sample's CRC over the finished slice; returns them."""
        assert self.symbols is not None
        self.crc = [symbol_crc(self.symbols[b], c) for b, c in enumerate(self.crc)]
        self.symbols = None
        return self.crc


class Encoder(_SymbolCoder):
    """rANS encoding of ``y``, one string per sample (see the module docstring)."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        y: Tensor,
        portable: bool = False,
        grid_bits: Optional[int] = None,
    ):
        shape = (y.shape[1], y.shape[2], y.shape[3])
        super().__init__(em, shape, y.shape[0], portable, grid_bits)
        self.y_slices = y.split(em.slice_sizes, dim=1)
        self.rans = [BufferedRansEncoder() for _ in range(y.shape[0])]
        self.crcs: List[List[int]] = [[] for _ in range(y.shape[0])]

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        indexes = self._indexes(means, scales)
        symbols = torch.round(self.y_slices[i] - means)
        sym, idx = (
            (symbols, indexes) if mask is None else (symbols[:, :, mask], indexes[:, :, mask])
        )
        sym, idx = sym.int().flatten(1).cpu(), idx.flatten(1).cpu()
        cdfs, lengths, offsets = self.tables
        for b, enc in enumerate(self.rans):
            enc.encode_with_indexes(sym[b].tolist(), idx[b].tolist(), cdfs, lengths, offsets)
        self._add(mask, symbols)
        return _merge(mask, symbols + means, None)

    def end_slice(self, i: int) -> None:
        for b, crc in enumerate(self._close()):
            self.crcs[b].append(crc)

    def strings(self) -> List[bytes]:
        """The finished strings, one per sample."""
        return [pack_checks(c) + enc.flush() for c, enc in zip(self.crcs, self.rans)]


class Decoder(_SymbolCoder):
    """rANS decoding of ``y``, verifying every slice against the string's checks."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        strings: Sequence[bytes],
        shape: Tuple[int, int, int],
        portable: bool = False,
        grid_bits: Optional[int] = None,
    ):
        super().__init__(em, shape, len(strings), portable, grid_bits)
        n = em.num_slices
        head = check_bytes(n)
        symbols = shape[0] * shape[1] * shape[2]
        self.expected: List[List[int]] = []
        self.rans: List[RansDecoder] = []
        for b, s in enumerate(strings):
            if not isinstance(s, (bytes, bytearray)):
                raise TypeError(f"string {b} is a {type(s).__name__}, not bytes")
            checks = unpack_checks(bytes(s), n) if len(s) >= head else None
            if checks is None:
                why = (
                    f"has {len(s)} bytes, fewer than the {head} check bytes of a string "
                    f"of {n} slices"
                    if len(s) < head
                    else "does not start with the check bytes of a DCAEEntropyModel string"
                )
                raise DecodingError(
                    f"the y string of sample {b} {why} (a truncated string, another "
                    "codec's string, or strings in the wrong order)"
                )
            self.expected.append(checks)
            dec = RansDecoder()
            dec.set_stream(guard(bytes(s[head:]), symbols))
            self.rans.append(dec)

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        indexes = self._indexes(means, scales)
        idx = (indexes if mask is None else indexes[:, :, mask]).flatten(1).cpu()
        cdfs, lengths, offsets = self.tables
        rows = torch.stack(
            [
                torch.tensor(
                    dec.decode_stream(idx[b].tolist(), cdfs, lengths, offsets), dtype=torch.int64
                )
                for b, dec in enumerate(self.rans)
            ]
        ).to(means.device, means.dtype)
        if mask is None:
            symbols = rows.view_as(means)
        else:
            symbols = torch.zeros_like(means) if self.symbols is None else self.symbols.clone()
            symbols[:, :, mask] = rows.view(means.shape[0], means.shape[1], -1)
        self._add(None, symbols)
        return _merge(mask, symbols + means, None)

    def end_slice(self, i: int) -> None:
        n = self.em.num_slices
        mask = (1 << _check_width(i, n)) - 1
        for b, crc in enumerate(self._close()):
            if crc & mask != self.expected[b][i]:
                raise DecodingError(
                    f"slice {i} of sample {b} does not verify: the decoded symbols are not "
                    "the encoder's. The string was written by another model or slice "
                    "layout, for another latent shape, with other side parameters (e.g. "
                    "strings in the wrong order), was truncated or corrupted, or this "
                    "decoder's arithmetic differs from the encoder's (backend, precision, "
                    "machine)"
                )
