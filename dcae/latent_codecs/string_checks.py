"""The self-checking strings of :class:`~dcae.DCAEEntropyModel`.

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
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .coding_mode import FIRST_PORTABLE_GRID_BITS, FLOAT32, CodingMode

__all__ = [
    "check_bytes",
    "check_width",
    "pack_checks",
    "string_seed",
    "symbol_crc",
    "unpack_checks",
]

_SLICE_CHECK_BITS = 4
_LAST_CHECK_BITS = 24
_SEED_TAG = b"DCAE-y1"


def symbol_crc(symbols: np.ndarray, crc: int) -> int:
    """CRC32 of integer symbols on the host (one sample, one slice, ``(C, H,
    W)`` order) as little-endian int32, continuing ``crc``."""
    data = np.ascontiguousarray(symbols, dtype="<i4").tobytes()
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def string_seed(
    shape: Tuple[int, int, int],
    slice_sizes: Sequence[int],
    passes: int,
    mode: CodingMode = FLOAT32,
    associated_data: bytes = b"",
) -> int:
    """The CRC seed of a string: the latent ``(C, H, W)``, the slice layout,
    the number of coding passes per slice, the coding ``mode`` (portable or
    not, and the portable grid) and ``associated_data``, so a string decoded
    in another mode or with other data never verifies.  The first portable
    grid (:data:`~dcae.latent_codecs.coding_mode.FIRST_PORTABLE_GRID_BITS`)
    and empty ``associated_data`` keep the seed they always had."""
    c, h, w = (int(v) for v in shape)
    head = struct.pack(">IIIB", c, h, w, int(mode.portable)) + struct.pack(
        f">I{len(slice_sizes)}IB", len(slice_sizes), *slice_sizes, passes
    )
    if mode.grid_bits is not None and mode.grid_bits != FIRST_PORTABLE_GRID_BITS:
        head += struct.pack(">B", mode.grid_bits)
    if associated_data:
        head += struct.pack(">I", len(associated_data)) + bytes(associated_data)
    return zlib.crc32(_SEED_TAG + head) & 0xFFFFFFFF


def check_bytes(num_slices: int) -> int:
    """Bytes of check data at the start of every string of ``num_slices`` slices."""
    return (_SLICE_CHECK_BITS * (num_slices - 1) + _LAST_CHECK_BITS + 7) // 8


def check_width(i: int, num_slices: int) -> int:
    """Bits of the check of slice ``i`` of ``num_slices`` (the last one's are wider)."""
    return _LAST_CHECK_BITS if i == num_slices - 1 else _SLICE_CHECK_BITS


def pack_checks(crcs: Sequence[int]) -> bytes:
    """The check bytes of one string from the running CRC after each slice."""
    n = len(crcs)
    acc, bits = 0, 0
    for i, crc in enumerate(crcs):
        width = check_width(i, n)
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
        width = check_width(i, num_slices)
        out.append(acc & ((1 << width) - 1))
        acc >>= width
    return out[::-1]
