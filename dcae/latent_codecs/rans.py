"""The guard around CompressAI's rANS decoder, which does not check the end
of its buffer: every string dcae hands it is followed by zeros
(:func:`guard`): DCAE's ``y`` strings (:class:`~dcae.latent_codecs.slice_coders.Decoder`),
its ``z`` strings (:mod:`~dcae.latent_codecs.hyper_codec`), and the strings of
any other CompressAI model :func:`dcae.decode` decodes (:func:`guarded_decoders`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from compressai.entropy_models import EntropyModel
from torch import nn

__all__ = ["GuardedCoder", "guard", "guarded_decoders"]


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


class GuardedCoder:
    """An entropy coder whose ``decode_with_indexes`` hands CompressAI's rANS
    decoder its string :func:`guard`-ed: a crafted or truncated string then
    reads zeros instead of memory past the buffer (well-formed strings never
    read them)."""

    def __init__(self, coder: Any):
        self._coder = coder

    def decode_with_indexes(self, string: bytes, indexes: Any, *args: Any, **kwargs: Any) -> Any:
        guarded = guard(bytes(string), len(indexes))
        return self._coder.decode_with_indexes(guarded, indexes, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coder, name)


@contextlib.contextmanager
def guarded_decoders(model: nn.Module) -> Iterator[None]:
    """Guard the CompressAI entropy models of ``model`` (their
    ``entropy_coder``, :class:`GuardedCoder`) inside the block; restored
    afterwards.  Models that drive ``RansDecoder`` directly (autoregressive
    context models) are not covered."""
    saved = []
    for m in model.modules():
        coder = getattr(m, "entropy_coder", None)
        if isinstance(m, EntropyModel) and coder is not None:
            saved.append((m, coder))
            m.entropy_coder = GuardedCoder(coder)
    try:
        yield
    finally:
        for m, coder in saved:
            m.entropy_coder = coder
