"""Rate control: the quality of a variable-rate model that codes an image at
a target rate, found by a few encodes (:func:`search_quality`, behind
``dcae.encode(target_bpp=)`` and :func:`dcae.find_quality`).

The rate grows with the quality, about 1.4x per unit for the shipped model:
the search starts at the model's default quality, steps by the slope it
measures until it brackets the target, then narrows the bracket (regula
falsi with the Illinois rule on the log rate): 1 to 3 encodes for Kodak
images and targets of 0.2 to 0.7 bpp.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Tuple

from .errors import DCAEError

__all__ = ["check_target", "search_quality"]


def check_target(target_bpp: float, tolerance: float) -> None:
    """Refuse a target rate that is not a positive number, or a relative
    tolerance outside ``(0, 1)``.

    Raises:
        TypeError: ``target_bpp`` is not a number.
        ValueError: either is out of range.
    """
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, (int, float)):
        raise TypeError(f"target_bpp must be a number, got {type(target_bpp).__name__}")
    if not 0 < target_bpp < math.inf:
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp!r}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")


def search_quality(
    code_at: Callable[[float], bytes],
    target_bpp: float,
    pixels: int,
    start: float,
    quality_range: Tuple[float, float],
    *,
    tolerance: float = 0.03,
    max_encodes: int = 12,
) -> Tuple[float, bytes]:
    """``(quality, file bytes)``: the quality in ``quality_range`` whose file
    (``code_at(quality)``) codes ``pixels`` pixels at ``target_bpp`` bits per
    pixel within ``tolerance`` (relative), searched from ``start``.

    Raises:
        DCAEError: the target is below the lowest or above the highest rate
            reached (the message gives that range), or ``max_encodes``
            encodes did not reach the tolerance.
    """
    check_target(target_bpp, tolerance)
    lo, hi = quality_range
    coded: Dict[float, bytes] = {}

    def log_error(q: float) -> float:
        if len(coded) >= max_encodes:
            raise DCAEError(
                f"no quality within {tolerance:.0%} of {target_bpp} bpp after {max_encodes} "
                f"encodes (closest: {_closest(coded, pixels, target_bpp)})"
            )
        coded[q] = code_at(q)
        return math.log(8 * len(coded[q]) / pixels / target_bpp)

    def done(e: float) -> bool:
        return abs(math.exp(e) - 1) <= tolerance

    q, e = start, log_error(start)
    if done(e):
        return q, coded[q]
    slope = math.log(1.4)  # log rate per unit of quality, refined below
    a, ea = q, e  # walk towards the target until it is bracketed
    while True:
        edge = hi if ea < 0 else lo
        b = min(hi, max(lo, a - ea / slope))
        if b == a:
            bpp = 8 * len(coded[a]) / pixels
            raise DCAEError(
                f"{target_bpp} bpp is out of reach for this image: quality {edge:g} gives "
                f"{bpp:.4f} bpp"
            )
        eb = log_error(b)
        if done(eb):
            return b, coded[b]
        if (ea < 0) != (eb < 0):
            break
        if eb != ea:
            slope = max(0.05, (eb - ea) / (b - a))
        a, ea = b, eb
    side = 0  # Illinois: halve the kept end's error when it is kept twice
    while True:
        c = b - eb * (b - a) / (eb - ea)
        ec = log_error(c)
        if done(ec):
            return c, coded[c]
        if (ec < 0) == (eb < 0):
            b, eb = c, ec
            if side == -1:
                ea /= 2
            side = -1
        else:
            a, ea = c, ec
            if side == 1:
                eb /= 2
            side = 1


def _closest(coded: Mapping[float, bytes], pixels: int, target: float) -> str:
    q = min(coded, key=lambda k: abs(8 * len(coded[k]) / pixels - target))
    return f"quality {q:.4f} at {8 * len(coded[q]) / pixels:.4f} bpp"
