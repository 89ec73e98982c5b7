"""Float64 layers of portable coding: the replacements that
:func:`~dcae.latent_codecs.float64.float64_copy` puts in a float64 copy, fast
on a CPU, where oneDNN has no float64 kernels.

- depthwise convolutions as shifted multiply-adds (:class:`DepthwiseConv64`),
  3x3 convolutions by Winograd F(2x2, 3x3) (:class:`WinogradConv64`), other
  dense kernels as one product per tap (:class:`DenseConv64`), inputs of
  ``Linear``/``Conv2d`` made contiguous (MKL's float64 products are slow on
  transposed operands);
- :func:`pair_first_layers` and :func:`run_pair`: two layers that read one
  tensor computed as one product, in one explicit call.

Every replacement computes its layer's function up to float64 rounding
(a few ulps), which is all portable coding assumes of any implementation.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ContiguousConv2d",
    "ContiguousLinear",
    "DenseConv64",
    "DepthwiseConv64",
    "PairedWinogradConv64",
    "WinogradConv64",
    "pair_first_layers",
    "replace_layers",
    "run_pair",
]


def replace_layers(module: nn.Module) -> None:
    """Replace, in place, every layer of a float64 ``module`` that has a faster
    float64 equivalent here (convolutions; ``Linear``/``Conv2d`` made to read
    contiguous inputs)."""
    for child in list(module.modules()):
        for attr, sub in list(child._modules.items()):
            if DepthwiseConv64.handles(sub):
                child._modules[attr] = DepthwiseConv64(sub)  # type: ignore[arg-type]
            elif WinogradConv64.handles(sub):
                child._modules[attr] = WinogradConv64(sub)  # type: ignore[arg-type]
            elif DenseConv64.handles(sub):
                child._modules[attr] = DenseConv64(sub)  # type: ignore[arg-type]
            elif type(sub) in CONTIGUOUS:
                sub.__class__ = CONTIGUOUS[type(sub)]


class DepthwiseConv64(nn.Module):
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


class Conv64(nn.Module):
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


class DenseConv64(Conv64):
    """A dense ``Conv2d`` (stride 1, no dilation, zero padding, a kernel
    larger than 1x1, at least :attr:`MIN_CHANNELS` input channels) as one
    matrix product per kernel tap.

    PyTorch's float64 fallback builds the whole ``(C k k) x (H W)`` im2col
    matrix first; for wide layers that copy costs more than the product
    itself (37 ms against 16 ms for 352 -> 64 channels at 3x3 on 48x32, one
    thread; ``benchmarks/portable_cost.py``).  3x3 kernels go to
    :class:`WinogradConv64`; this serves the other sizes.  The padded input is read as one
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


class WinogradConv64(Conv64):
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
    """Prepare two networks of a float64 copy that read the same input tensor
    (the mean and scale networks of a slice read its support ``[X_i, F_i]``)
    for :func:`run_pair`, which computes their first 3x3 convolutions
    (:class:`WinogradConv64`) as one: one input transform and one product of
    both layers' output channels (13.1 ms for 128 output channels against
    2 x 8.0 ms for 64, 352 inputs, one thread; portable coding of the shipped
    model about 3 % faster).  The first layer of ``first`` becomes a
    :class:`PairedWinogradConv64`; called on its own it computes its layer
    alone, so the results never depend on the pairing (they are the same
    bits: every output channel is the same dot products).  Returns whether
    the two fit (``nn.Sequential`` networks opening with such layers of one
    input width and padding)."""
    layers = [n[0] if isinstance(n, nn.Sequential) and len(n) else None for n in (first, second)]
    a, b = layers
    if not (
        isinstance(a, WinogradConv64)
        and isinstance(b, WinogradConv64)
        and a.in_channels == b.in_channels
        and a.padding == b.padding
    ):
        return False
    first[0] = PairedWinogradConv64(a, b)  # type: ignore[index]
    return True


def run_pair(first: nn.Module, second: nn.Module, x: Tensor) -> Tuple[Tensor, Tensor]:
    """``(first(x), second(x))``, with the first layers of both computed as one
    product when :func:`pair_first_layers` paired them (the same bits either
    way): the explicit call that hands both networks their part of one
    product, so no layer keeps a result for another between calls."""
    head = first[0] if isinstance(first, nn.Sequential) and len(first) else None
    if not (
        isinstance(head, PairedWinogradConv64)
        and isinstance(second, nn.Sequential)
        and len(second)
        and head.partner is second[0]
    ):
        return first(x), second(x)
    a, b = head.both(x)
    for layer in list(first)[1:]:
        a = layer(a)
    for layer in list(second)[1:]:
        b = layer(b)
    return a, b


class PairedWinogradConv64(nn.Module):
    """The first layer of a network paired with another one's
    (:func:`pair_first_layers`): its own :class:`WinogradConv64` (``layer``),
    the partner's (``partner``) and both kernels side by side, so that
    :meth:`both` computes the two layers in one product.  Called on its own,
    it is ``layer``."""

    def __init__(self, layer: WinogradConv64, partner: WinogradConv64):
        super().__init__()
        self.layer = layer
        self.partner = partner
        self.register_buffer(
            "transformed", torch.cat([layer.transformed, partner.transformed], 1), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def both(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(layer(x), partner(x))`` in one Winograd product."""
        self.layer.check(x)
        joint = _winograd(x, self.transformed, self.layer.padding)
        split = self.layer.out_channels
        out = []
        for y, conv in ((joint[:, :split], self.layer), (joint[:, split:], self.partner)):
            if conv.bias is not None:
                y = y + conv.bias.view(1, -1, 1, 1)
            out.append(y.contiguous())
        return out[0], out[1]


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


class ContiguousLinear(nn.Linear):
    """``nn.Linear`` that makes its input contiguous first: MKL's float64
    products are 3-4x slower on transposed operands (a permuted ``(b, C, H,
    W)`` map), which float32 hardly notices."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous())


class ContiguousConv2d(nn.Conv2d):
    """``nn.Conv2d`` that makes its input contiguous first (see
    :class:`ContiguousLinear`)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous())


#: the classes whose instances :func:`replace_layers` turns contiguous
CONTIGUOUS = {nn.Linear: ContiguousLinear, nn.Conv2d: ContiguousConv2d}
