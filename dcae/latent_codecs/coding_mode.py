"""The coding mode of DCAE's entropy coding: one value, validated once, that
travels from the API (``dcae.encode``, ``DCAEModel.compress``) through the
hyperprior and the entropy model to the slice coders and the ``.dcae``
header.

::

    CodingMode()          FLOAT32   the model's own arithmetic: strings decode on
                                    the same backend and device
    CodingMode(6)         PORTABLE  h_s and the entropy model in float64, means and
                                    residual predictions snapped to a 2^-6 grid:
                                    strings decode on any backend, thread count,
                                    compiler or device (format guide, "Portable coding")
    CodingMode(16)                  the first portable files (still decoded)

The public keywords ``portable=`` and ``grid_bits=`` of ``compress`` and
``decompress`` are converted here, once (:meth:`CodingMode.of`).  No torch at
import: the ``.dcae`` header reads modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = [
    "FIRST_PORTABLE_GRID_BITS",
    "FLOAT32",
    "GRID_BITS_RANGE",
    "PORTABLE",
    "PORTABLE_GRID_BITS",
    "CodingMode",
]

#: portable coding snaps means and latent residual predictions to multiples of
#: 2^-this (``benchmarks/portable_grid.py``: the coarsest grid with no measurable cost)
PORTABLE_GRID_BITS = 6
#: the grid of the first portable streams (dcae before 2026-12-05), still decoded
FIRST_PORTABLE_GRID_BITS = 16
#: grids a stream may use (the ``.dcae`` header has 5 bits for it)
GRID_BITS_RANGE = (1, 31)


@dataclass(frozen=True)
class CodingMode:
    """How the entropy parameters are computed: in the model's own arithmetic
    (``grid_bits=None``, :data:`FLOAT32`) or portably, in float64 with the
    means and residual predictions snapped to multiples of ``2^-grid_bits``
    (:data:`PORTABLE`).  Encoder and decoder must use the same mode; the
    ``y`` strings bind it into their checks.

    Args:
        grid_bits: ``None`` (not portable) or an int in :data:`GRID_BITS_RANGE`.

    Raises:
        ValueError: ``grid_bits`` is not ``None`` nor an int in range.
    """

    grid_bits: Optional[int] = None

    def __post_init__(self) -> None:
        bits = self.grid_bits
        lo, hi = GRID_BITS_RANGE
        if bits is not None and (
            isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi
        ):
            raise ValueError(f"grid_bits must be an int in [{lo}, {hi}], got {bits!r}")

    @property
    def portable(self) -> bool:
        """Whether this is portable coding (float64 and a grid)."""
        return self.grid_bits is not None

    @classmethod
    def of(
        cls,
        mode: Optional[CodingMode] = None,
        portable: Optional[bool] = None,
        grid_bits: Optional[int] = None,
    ) -> CodingMode:
        """The mode of an API call: ``mode`` itself, or the one the public
        keywords name (``portable=True``: :data:`PORTABLE_GRID_BITS` unless
        ``grid_bits`` is given; not portable: :data:`FLOAT32`).

        Raises:
            ValueError: ``grid_bits`` without ``portable``, a bad grid, or
                ``mode`` together with the keywords.
            TypeError: ``mode`` is not a :class:`CodingMode`.
        """
        if mode is not None:
            if portable is not None or grid_bits is not None:
                raise ValueError("give mode or portable/grid_bits, not both")
            if not isinstance(mode, CodingMode):
                raise TypeError(f"mode must be a CodingMode, got {type(mode).__name__}")
            return mode
        if not portable:
            if grid_bits is not None:
                raise ValueError("grid_bits is a setting of portable coding: pass portable=True")
            return FLOAT32
        return cls(PORTABLE_GRID_BITS if grid_bits is None else grid_bits)

    def snap(self, t: Tensor) -> Tensor:
        """``t`` rounded to the nearest multiple of ``2^-grid_bits`` (exact in
        float64 for ``|t| < 2^(52 - grid_bits)``, half to even); ``t`` itself
        when not portable."""
        if self.grid_bits is None:
            return t
        scale = float(2**self.grid_bits)
        return (t * scale).round() / scale

    def cast(self, t: Tensor) -> Tensor:
        """``t`` in the dtype the entropy parameters are computed in: float64
        for portable coding, unchanged otherwise."""
        return t.double() if self.portable else t

    def __repr__(self) -> str:
        return "CodingMode(float32)" if self.grid_bits is None else f"CodingMode({self.grid_bits})"


#: the model's own arithmetic (``portable=False``)
FLOAT32 = CodingMode()
#: portable coding on the grid of new files (``portable=True``)
PORTABLE = CodingMode(PORTABLE_GRID_BITS)
