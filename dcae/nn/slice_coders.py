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
int32), seeded with the latent shape, the slice layout, the coding mode and
the caller's ``associated_data`` (whatever else decides decoding:
:class:`~dcae.DCAEModel` binds its quality and image size, :func:`dcae.encode`
the ``.dcae`` header)::

    seed  = crc32("DCAE-y1" | C | H | W | portable | n | slice sizes | passes
                  [| grid] [| len(data) | data])
    crc_i = crc32(symbols of slice i, crc_{i-1})        (crc_{-1} = seed)
    checks = crc_0 mod 2^4 | ... | crc_{n-2} mod 2^4 | crc_{n-1} mod 2^24, zero padded to bytes

A decoder whose entropy parameters drift (other weights, another slice layout
or shape, strings in the wrong order, a truncated or corrupted string, other
numerics) decodes other symbols, and one given other associated data (a
rewritten quality, say) starts from another seed; the first slice whose check fails is named
in the :class:`~dcae.DecodingError`.  Because the CRC runs over all earlier
slices, a drift at slice ``j`` passes unnoticed only if every check from ``j``
on agrees by chance: at most ``2^-24`` (a drift in the last slice only), and
``2^-40`` for a drift from the first of five slices.  The cost is
``ceil((4 (n - 1) + 24) / 8)`` bytes per string: 5 bytes for five slices.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor

from ..errors import DecodingError
from . import host
from .float64 import float64_copy  # re-exported: portable coding's float64 copies

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
    "guard",
    "pack_checks",
    "float64_copy",
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


def snap(t: Tensor, bits: int) -> Tensor:
    """``t`` rounded to the nearest multiple of ``2^-bits`` (exact in float64
    for ``|t| < 2^(52 - bits)``, half to even)."""
    scale = float(2**bits)
    return torch.round(t * scale) / scale


# ------------------------------------------------------------------ string checks
def symbol_crc(symbols: np.ndarray, crc: int) -> int:
    """CRC32 of integer symbols on the host (one sample, one slice, ``(C, H,
    W)`` order) as little-endian int32, continuing ``crc``."""
    data = np.ascontiguousarray(symbols, dtype="<i4").tobytes()
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def string_seed(
    shape: Tuple[int, int, int],
    slice_sizes: Sequence[int],
    passes: int,
    portable: bool = False,
    grid_bits: Optional[int] = None,
    associated_data: bytes = b"",
) -> int:
    """The CRC seed of a string: the latent ``(C, H, W)``, the slice layout,
    the number of coding passes per slice, the coding mode (portable or
    not, and the portable grid) and ``associated_data``, so a string decoded
    in another mode or with other data never verifies.  ``grid_bits`` as for
    :func:`portable_grid`; the first portable grid
    (:data:`FIRST_PORTABLE_GRID_BITS`) and empty ``associated_data`` keep the
    seed they always had."""
    grid = portable_grid(portable, grid_bits)
    c, h, w = (int(v) for v in shape)
    head = struct.pack(">IIIB", c, h, w, int(portable)) + struct.pack(
        f">I{len(slice_sizes)}IB", len(slice_sizes), *slice_sizes, passes
    )
    if grid is not None and grid != FIRST_PORTABLE_GRID_BITS:
        head += struct.pack(">B", grid)
    if associated_data:
        head += struct.pack(">I", len(associated_data)) + bytes(associated_data)
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


def _at_least_float32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


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
        # likelihoods in (at least) float32: float16 flushes the 1e-9 lower bound
        # to 0 (log2 -> -inf bits) and loses the tails of the Gaussian
        _, lik = self.em.gaussian_conditional(*(_at_least_float32(t) for t in (y, scales, means)))
        if self.em.training and self.em.quantizer == "noise":
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = round_around_means(y, means)
        self.likelihoods[i] = _merge(mask, lik, self.likelihoods[i])
        return _merge(mask, y_hat, None)


class _SymbolCoder(SliceCoder):
    """Shared bookkeeping of the encoder and decoder: CDF tables, a host copy
    of the symbols of the slice being coded, the running CRC of every sample.

    The symbols of a pass reach the host once (:mod:`dcae.nn.host`); the
    checks are computed from that copy, never from the device."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        shape: Tuple[int, int, int],
        batch: int,
        portable: bool,
        grid_bits: Optional[int] = None,
        associated_data: bytes = b"",
    ):
        self.em = em
        self.tables = em.coding_tables()
        seed = string_seed(
            shape, em.slice_sizes, em.passes_per_slice, portable, grid_bits, associated_data
        )
        self.crc = [seed] * batch
        self.batch, self.hw = batch, (int(shape[1]), int(shape[2]))
        # the pass masks on the host (built there: no copy from the device)
        self.host_passes = [
            None if m is None else m.numpy() for m in em.coding_passes(self.hw, None)
        ]
        self.pass_index = 0
        self.symbols: Optional[np.ndarray] = None

    def _indexes(self, means: Tensor, scales: Tensor) -> Tensor:
        return self.em._coding_indexes(means, scales)

    def _add(self, i: int, values: np.ndarray) -> np.ndarray:
        """Record the ``(b, n)`` int32 symbols of this pass of slice ``i``;
        returns the slice's symbols so far, ``(b, C_i, H, W)``, zeros at
        positions not coded yet."""
        mask = self.host_passes[self.pass_index]
        self.pass_index += 1
        shape = (self.batch, self.em.slice_sizes[i], *self.hw)
        if mask is None:
            self.symbols = values.reshape(shape)
        else:
            if self.symbols is None:
                self.symbols = np.zeros(shape, dtype=np.int32)
            self.symbols[:, :, mask] = values.reshape(shape[0], shape[1], -1)
        return self.symbols

    def _close(self) -> List[int]:
        """Advance every sample's CRC over the finished slice; returns them."""
        assert self.symbols is not None
        self.crc = [symbol_crc(self.symbols[b], c) for b, c in enumerate(self.crc)]
        self.symbols = None
        self.pass_index = 0
        return self.crc


class Encoder(_SymbolCoder):
    """rANS encoding of ``y``, one string per sample (see the module docstring)."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        y: Tensor,
        portable: bool = False,
        grid_bits: Optional[int] = None,
        associated_data: bytes = b"",
    ):
        shape = (y.shape[1], y.shape[2], y.shape[3])
        super().__init__(em, shape, y.shape[0], portable, grid_bits, associated_data)
        self.y_slices = y.split(em.slice_sizes, dim=1)
        self.rans = [BufferedRansEncoder() for _ in range(y.shape[0])]
        self.crcs: List[List[int]] = [[] for _ in range(y.shape[0])]

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        indexes = self._indexes(means, scales)
        symbols = torch.round(self.y_slices[i] - means)
        sym, idx = (
            (symbols, indexes) if mask is None else (symbols[:, :, mask], indexes[:, :, mask])
        )
        # the pass's one device-to-host copy: symbols and indexes together
        pair = host.to_host(torch.stack([sym.flatten(1).int(), idx.flatten(1).int()]))
        cdfs, lengths, offsets = self.tables
        for b, enc in enumerate(self.rans):
            enc.encode_with_indexes(
                pair[0, b].tolist(), pair[1, b].tolist(), cdfs, lengths, offsets
            )
        self._add(i, pair[0])
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
        associated_data: bytes = b"",
    ):
        super().__init__(em, shape, len(strings), portable, grid_bits, associated_data)
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
        # the pass's device-to-host copy (indexes) and host-to-device copy (symbols)
        idx = host.to_host((indexes if mask is None else indexes[:, :, mask]).flatten(1).int())
        cdfs, lengths, offsets = self.tables
        rows = np.stack(
            [
                np.asarray(dec.decode_stream(idx[b].tolist(), cdfs, lengths, offsets), np.int32)
                for b, dec in enumerate(self.rans)
            ]
        )
        symbols = host.to_device(self._add(i, rows), means)
        return _merge(mask, symbols + means, None)

    def end_slice(self, i: int) -> None:
        n = self.em.num_slices
        mask = (1 << _check_width(i, n)) - 1
        for b, crc in enumerate(self._close()):
            if crc & mask != self.expected[b][i]:
                raise DecodingError(
                    f"slice {i} of sample {b} does not verify: the decoded symbols are not "
                    "the encoder's. The string was written by another model or slice "
                    "layout, for another latent shape or quality, with other side "
                    "parameters (e.g. strings in the wrong order), was truncated or "
                    "corrupted (or a field deciding decoding was rewritten), or this "
                    "decoder's arithmetic differs from the encoder's (backend, precision, "
                    "machine)"
                )
