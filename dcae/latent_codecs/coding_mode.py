"""The coding modes of DCAE's entropy coding: the model's own arithmetic
(float32), or portable coding (float64 entropy parameters with the means and
residual predictions snapped to a grid of ``2^-grid_bits``), which decodes on
any backend, thread count, compiler or device (format guide, "Portable
coding").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = [
    "FIRST_PORTABLE_GRID_BITS",
    "GRID_BITS_RANGE",
    "PORTABLE_GRID_BITS",
    "portable_grid",
    "snap",
]

#: portable coding snaps means and latent residual predictions to multiples of
#: 2^-this (``benchmarks/portable_grid.py``: the coarsest grid with no measurable cost)
PORTABLE_GRID_BITS = 6
#: the grid of the first portable streams (dcae before 2026-12-05), still decoded
FIRST_PORTABLE_GRID_BITS = 16
#: grids a stream may use
GRID_BITS_RANGE = (1, 31)


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


def snap(t: Tensor, bits: int) -> Tensor:
    """``t`` rounded to the nearest multiple of ``2^-bits`` (exact in float64
    for ``|t| < 2^(52 - bits)``, half to even)."""
    scale = float(2**bits)
    return (t * scale).round() / scale
