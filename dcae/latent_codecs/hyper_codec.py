"""The hyperprior of DCAE: CompressAI's ``HyperLatentCodec`` with an exact
straight-through rounding of ``z`` and a device-clean entropy bottleneck.

::

    y ──► h_a ──► z ──► EntropyBottleneck ──► z_hat ──► h_s ──► side_params
                          (likelihoods, or one string per sample)

Two things differ from CompressAI's ``HyperLatentCodec``:

* ``forward`` rounds ``z`` around the bottleneck's medians exactly as the
  decoder does (``quantize_ste`` is off by an ulp now and then), so the side
  parameters of ``forward`` are bit for bit those of ``compress``;
* the bottleneck's likelihoods, symbols and decoding never read a device
  tensor back to the host except in the one documented copy per image
  (:mod:`dcae.latent_codecs.host`): CompressAI's ``EntropyBottleneck.forward`` permutes
  with a tensor of dimensions, which costs a host synchronisation on every
  call of a training step on a GPU.  The strings are CompressAI's, byte for
  byte.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import HyperLatentCodec
from torch import Tensor

from . import host
from .coding_mode import FLOAT32, CodingMode
from .float64 import float64_copy
from .rans import guard
from .rounding import round_around_means

__all__ = [
    "ExactHyperLatentCodec",
    "bottleneck_compress",
    "bottleneck_decompress",
    "bottleneck_forward",
]


def bottleneck_forward(eb: EntropyBottleneck, z: Tensor, training: bool) -> Tuple[Tensor, Tensor]:
    """``EntropyBottleneck.forward(z)`` (noisy or rounded ``z``, likelihoods)
    with the same arithmetic and random draws, and no host synchronisation."""
    perm = (1, 0, *range(2, z.dim()))  # (b, c, ...) <-> (c, b, ...): its own inverse
    # z of a reduced-precision h_a (autocast) in the bottleneck's own precision:
    # the likelihoods need float32's range
    z = z.to(eb.quantiles.dtype)
    x = z.permute(*perm).contiguous()
    shape = x.shape
    values = x.reshape(shape[0], 1, -1)
    outputs = eb.quantize(values, "noise" if training else "dequantize", eb._get_medians())
    likelihood, _, _ = eb._likelihood(outputs)
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    outputs = outputs.reshape(shape).permute(*perm).contiguous()
    likelihood = likelihood.reshape(shape).permute(*perm).contiguous()
    return outputs, likelihood


def _tables(eb: EntropyBottleneck) -> Tuple[List[List[int]], List[int], List[int]]:
    """The bottleneck's CDF tables as the rANS coder takes them (one copy)."""
    cdf = host.to_host(eb._quantized_cdf)
    lengths = host.to_host(eb._cdf_length).reshape(-1).astype(np.int32)
    offsets = host.to_host(eb._offset).reshape(-1).astype(np.int32)
    return cdf.tolist(), lengths.tolist(), offsets.tolist()


def _medians(eb: EntropyBottleneck, z_dims: int) -> Tensor:
    return eb._get_medians().detach().reshape(-1, *([1] * z_dims))


def bottleneck_compress(eb: EntropyBottleneck, z: Tensor) -> Tuple[List[bytes], Tensor]:
    """``EntropyBottleneck.compress(z)`` (one string per sample, the same
    bytes) and ``z_hat``, which is what ``decompress`` returns for them,
    computed on the device; one device-to-host copy of the symbols."""
    medians = _medians(eb, z.dim() - 2)
    rounded = torch.round(z - medians)
    sym = host.to_host(rounded.int().flatten(2))  # (b, c, n)
    b, c, n = sym.shape
    indexes = np.repeat(np.arange(c, dtype=np.int32), n).tolist()
    cdfs, lengths, offsets = _tables(eb)
    strings = []
    for i in range(b):
        enc = BufferedRansEncoder()
        enc.encode_with_indexes(sym[i].reshape(-1).tolist(), indexes, cdfs, lengths, offsets)
        strings.append(enc.flush())
    # the decoder's z_hat: its integer symbols (exact in float) plus the medians
    # contiguous like the decoder's z_hat: convolution kernels follow the memory
    # layout, and h_s must run the decoder's very arithmetic
    return strings, (rounded + medians).detach().contiguous()


def bottleneck_decompress(
    eb: EntropyBottleneck, strings: List[bytes], size: Tuple[int, int]
) -> Tensor:
    """``EntropyBottleneck.decompress(strings, size)``: ``z_hat`` on the
    bottleneck's device, with one host-to-device copy of the symbols."""
    c = eb._quantized_cdf.size(0)
    n = int(size[0]) * int(size[1])
    indexes = np.repeat(np.arange(c, dtype=np.int32), n).tolist()
    cdfs, lengths, offsets = _tables(eb)
    rows = []
    for s in strings:
        dec = RansDecoder()
        guarded = guard(bytes(s), len(indexes))  # a crafted string reads zeros past its end
        rows.append(
            np.asarray(dec.decode_with_indexes(guarded, indexes, cdfs, lengths, offsets), np.int32)
        )
    medians = _medians(eb, 2)
    sym = np.stack(rows).reshape(len(strings), c, int(size[0]), int(size[1]))
    return host.to_device(sym, medians) + medians


class ExactHyperLatentCodec(HyperLatentCodec):
    """CompressAI's ``HyperLatentCodec`` (``quantizer="ste"``) with the exact
    straight-through rounding of ``z`` and a device-clean entropy bottleneck
    (see the module docstring); ``compress``/``decompress`` compute ``h_s`` in
    the coding mode given (float64 for portable coding)."""

    def forward(self, y: Tensor) -> Dict[str, Any]:
        z = self.h_a(y)
        _, z_likelihoods = bottleneck_forward(self.entropy_bottleneck, z, self.training)
        # contiguous like the decoder's z_hat: conv kernels follow memory layout
        z_hat = round_around_means(z, self.entropy_bottleneck._get_medians()).contiguous()
        return {"likelihoods": {"z": z_likelihoods}, "params": self.h_s(z_hat)}

    def compress(self, y: Tensor, *, mode: CodingMode = FLOAT32) -> Dict[str, Any]:
        z = self.h_a(y)
        shape = z.size()[-2:]
        z_strings, z_hat = bottleneck_compress(self.entropy_bottleneck, z)
        return {"strings": [z_strings], "shape": shape, "params": self.side_params(z_hat, mode)}

    def decompress(
        self, strings: List[List[bytes]], shape: Tuple[int, int], *, mode: CodingMode = FLOAT32
    ) -> Dict[str, Any]:
        (z_strings,) = strings
        z_hat = bottleneck_decompress(self.entropy_bottleneck, z_strings, shape)
        return {"params": self.side_params(z_hat, mode)}

    def side_params(self, z_hat: Tensor, mode: CodingMode = FLOAT32) -> Tensor:
        """``h_s(z_hat)``; in float64 (a float64 copy of ``h_s``) for portable coding."""
        if not mode.portable:
            return self.h_s(z_hat)
        return float64_copy(self.h_s)(mode.cast(z_hat))
