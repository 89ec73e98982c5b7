"""The three slice coders of :class:`~dcae.DCAEEntropyModel`: estimate,
encode, decode.

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

Each sample's string carries check bytes (:mod:`dcae.latent_codecs.string_checks`)
that the encoder writes and the decoder verifies slice by slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor

from ..errors import DecodingError
from . import host
from .coding_mode import FLOAT32, CodingMode
from .rans import guard
from .rounding import round_around_means
from .string_checks import (
    check_bytes,
    check_width,
    pack_checks,
    string_seed,
    symbol_crc,
    unpack_checks,
)

if TYPE_CHECKING:  # pragma: no cover
    from .entropy_model import DCAEEntropyModel, ParamsHook

__all__ = ["Decoder", "Encoder", "Estimator", "SliceCoder"]


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

    The symbols of a pass reach the host once (:mod:`dcae.latent_codecs.host`); the
    checks are computed from that copy, never from the device."""

    def __init__(
        self,
        em: DCAEEntropyModel,
        shape: Tuple[int, int, int],
        batch: int,
        mode: CodingMode,
        associated_data: bytes = b"",
        hooks: Sequence[ParamsHook] = (),
    ):
        self.em = em
        self.hooks = tuple(hooks)
        self.tables = em.coding_tables()
        seed = string_seed(shape, em.slice_sizes, em.passes_per_slice, mode, associated_data)
        self.crc = [seed] * batch
        self.batch, self.hw = batch, (int(shape[1]), int(shape[2]))
        # the pass masks on the host (built there: no copy from the device)
        self.host_passes = [
            None if m is None else m.numpy() for m in em.coding_passes(self.hw, None)
        ]
        self.pass_index = 0
        self.symbols: Optional[np.ndarray] = None

    def _indexes(self, i: int, means: Tensor, scales: Tensor) -> Tensor:
        """CDF indexes of a pass of slice ``i`` (its parameters handed to the
        hooks first)."""
        for hook in self.hooks:
            hook(i, means, scales)
        return self.em.build_indexes(scales)

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
        mode: CodingMode = FLOAT32,
        associated_data: bytes = b"",
        hooks: Sequence[ParamsHook] = (),
    ):
        shape = (y.shape[1], y.shape[2], y.shape[3])
        super().__init__(em, shape, y.shape[0], mode, associated_data, hooks)
        self.y_slices = y.split(em.slice_sizes, dim=1)
        self.rans = [BufferedRansEncoder() for _ in range(y.shape[0])]
        self.crcs: List[List[int]] = [[] for _ in range(y.shape[0])]

    def code(self, i: int, means: Tensor, scales: Tensor, mask: Optional[Tensor]) -> Tensor:
        indexes = self._indexes(i, means, scales)
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
        mode: CodingMode = FLOAT32,
        associated_data: bytes = b"",
        hooks: Sequence[ParamsHook] = (),
    ):
        super().__init__(em, shape, len(strings), mode, associated_data, hooks)
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
        indexes = self._indexes(i, means, scales)
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
        mask = (1 << check_width(i, n)) - 1
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
