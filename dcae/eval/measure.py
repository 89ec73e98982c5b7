"""How ``dcae eval`` measures one reconstruction, whatever the codec, the way
CompressAI's ``eval_model`` does: images read as 8-bit RGB, the
reconstruction rounded to 8 bits, PSNR and MS-SSIM on RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
from torch import Tensor

from ..errors import DCAEError
from ..format.pixels import read_rgb, to_8bit_levels
from .curves import ImageRecord
from .metrics import ms_ssim, psnr

__all__ = [
    "MS_SSIM_MIN_SIDE",
    "Log",
    "measure",
    "progress_line",
    "read_image",
    "silent",
]

#: MS-SSIM needs more than 160 pixels per side (5 scales, 11-tap window)
MS_SSIM_MIN_SIDE = 161

#: a progress callback: one line of text
Log = Callable[[str], None]


def silent(_: str) -> None:
    """A :data:`Log` that says nothing."""


def read_image(path: Path, ms_ssim: bool = True) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 pixels of an image file
    (:func:`~dcae.format.pixels.read_rgb`), refused when ``ms_ssim`` is
    measured and a side is under :data:`MS_SSIM_MIN_SIDE`.

    Raises:
        DCAEError: the image is too small for MS-SSIM.
    """
    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    if ms_ssim and min(h, w) < MS_SSIM_MIN_SIDE:
        raise DCAEError(
            f"{path} is {w}x{h}; MS-SSIM needs at least {MS_SSIM_MIN_SIDE} pixels per side: "
            "pass --no-ms-ssim (Python: ms_ssim=False) to report PSNR and bpp only"
        )
    return rgb


def _quantise(x: Tensor) -> Tensor:
    """8-bit rounding, as the decoder's output would be written to a file."""
    return to_8bit_levels(x.detach().float()).div(255).cpu()


def measure(x: Tensor, x_hat: Tensor, with_ms_ssim: bool = True) -> Tuple[float, Optional[float]]:
    """PSNR and MS-SSIM (``None`` unless ``with_ms_ssim``) of 8-bit rounded images."""
    x, x_hat = _quantise(x), _quantise(x_hat)
    return psnr(x, x_hat), (ms_ssim(x, x_hat) if with_ms_ssim else None)


def progress_line(rec: ImageRecord, i: int, n: int) -> str:
    """The progress line of record ``rec``, image ``i`` of ``n``."""
    ms = "n/a" if rec.ms_ssim is None else f"{rec.ms_ssim:.4f}"
    return (
        f"{rec.codec} {rec.point} [{i:>{len(str(n))}}/{n}] {rec.image}: "
        f"{rec.bpp:.4f} bpp, {rec.psnr:.2f} dB, MS-SSIM {ms}, "
        f"enc {rec.encoding_time:.2f} s, dec {rec.decoding_time:.2f} s"
    )
