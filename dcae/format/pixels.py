"""The one conversion between images and tensors in dcae: PIL images (or
image files, or tensors) to ``(1, 3, H, W)`` float32 tensors on 8-bit levels
and back, as :func:`dcae.encode`, :func:`dcae.decode`, ``dcae eval`` and
``dcae train`` see them.

Image modes:

* ``RGB``: coded directly.
* ``L`` and ``1`` (grayscale, bilevel): replicated to RGB, the header records
  one channel, and :func:`dcae.decode` returns an ``L`` image (ITU-R 601
  luma of the decoded RGB, PIL's ``convert("L")``).  Bilevel images decode as
  8-bit grayscale.
* ``P`` (palette) without transparency and ``YCbCr``: converted to RGB and
  decoded as ``RGB`` (the palette is not restored).
* anything with alpha (``RGBA``, ``LA``, ``PA``, palette with transparency),
  16/32-bit (``I;16*``, ``I``, ``F``) and other colour spaces (``CMYK``,
  ``LAB``, ``HSV``): refused with :class:`~dcae.format.images.UnsupportedImageError`,
  whose message says how to convert the image explicitly.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .images import UnsupportedImageError, check_pixels, open_image
from .limits import DEFAULT_MAX_PIXELS, MAX_SIDE

__all__ = [
    "ImageInput",
    "image_to_tensor",
    "read_rgb",
    "from_8bit",
    "rgb_to_tensor",
    "tensor_to_uint8",
    "to_8bit_levels",
    "to_uint8_array",
]

ImageInput = Union[str, os.PathLike, Image.Image, Tensor]

_RGB_MODES = {"RGB"}
_GRAY_MODES = {"L", "1"}
_CONVERTED_MODES = {"P", "YCbCr"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _pil_to_rgb(img: Image.Image) -> Tuple[Image.Image, int]:
    """``(RGB image, recorded channels)`` or :class:`UnsupportedImageError`."""
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode = "PA"
    if mode in _RGB_MODES:
        return img, 3
    if mode in _GRAY_MODES:
        return img.convert("L").convert("RGB"), 1
    if mode in _CONVERTED_MODES:
        return img.convert("RGB"), 3
    if mode in _ALPHA_MODES:
        raise UnsupportedImageError(
            f"image mode {img.mode!r} has an alpha channel (or a transparent palette "
            "entry), which dcae does not code; flatten it first, e.g. "
            "img.convert('RGB') to drop the alpha"
        )
    if mode.startswith("I") or mode == "F":
        raise UnsupportedImageError(
            f"image mode {mode!r} has more than 8 bits per sample; dcae codes 8-bit "
            "images only: scale it to 8 bits explicitly (e.g. to mode 'L') first"
        )
    raise UnsupportedImageError(
        f"image mode {mode!r} is not supported (supported: RGB, L, 1, P, YCbCr); "
        "convert it to RGB explicitly first"
    )


def _check_size(h: int, w: int, max_pixels: Optional[int]) -> None:
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise UnsupportedImageError(f"image size {w}x{h} is not in 1..{MAX_SIDE} per side")
    check_pixels(w, h, max_pixels)


def image_to_tensor(
    image: ImageInput, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
) -> Tuple[Tensor, int]:
    """``(x, channels)``: ``x`` is ``(1, 3, H, W)`` float32 on 8-bit levels
    (``k/255``), ``channels`` the count to record (1 grayscale, 3 RGB).

    Tensors must be float ``(3, H, W)``, ``(1, 3, H, W)`` (RGB) or ``(1, H, W)``,
    ``(1, 1, H, W)`` (grayscale) with values in ``[0, 1]``; they are rounded
    to 8-bit levels, so encoding a tensor and its 8-bit PIL image give the
    same file.  Images of more than ``max_pixels`` pixels (``None``: no bound)
    are refused; files before their pixels are decoded
    (:func:`dcae.format.images.open_image`).
    """
    if isinstance(image, Tensor):
        x = image.detach()
        if not x.is_floating_point():
            hint = " (8-bit levels: pass x.float() / 255)" if x.dtype == torch.uint8 else ""
            raise UnsupportedImageError(
                f"expected a float tensor with values in [0, 1], got a {x.dtype} tensor{hint}"
            )
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            hint = ""
            if x.dim() == 4 and x.shape[0] == 1 and x.shape[-1] in (1, 3):
                hint = " (channels last? use x.permute(2, 0, 1) for an (H, W, C) image)"
            raise UnsupportedImageError(
                f"expected a tensor (3, H, W), (1, 3, H, W), (1, H, W) or (1, 1, H, W), "
                f"got {tuple(image.shape)}{hint}"
            )
        _check_size(int(x.shape[2]), int(x.shape[3]), max_pixels)
        x = x.float().cpu()
        if not bool(torch.isfinite(x).all()):
            raise UnsupportedImageError("tensor values must be finite and in [0, 1] (got NaN/inf)")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            hint = " (8-bit levels 0..255? divide by 255 first)" if lo >= 0 and hi <= 255 else ""
            raise UnsupportedImageError(
                f"tensor values must be in [0, 1], got values in [{lo:g}, {hi:g}]{hint}"
            )
        channels = int(x.shape[1])
        x = to_8bit_levels(x) / 255
        return x.expand(1, 3, -1, -1).contiguous(), channels
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image, max_pixels=max_pixels)
    if not isinstance(image, Image.Image):
        hint = " (use PIL.Image.fromarray(array))" if type(image).__name__ == "ndarray" else ""
        raise TypeError(
            f"expected a path, a PIL image or a tensor, got {type(image).__name__}{hint}"
        )
    _check_size(image.height, image.width, max_pixels)
    rgb, channels = _pil_to_rgb(image)
    return rgb_to_tensor(np.array(rgb)).contiguous(), channels


def to_8bit_levels(x: Tensor) -> Tensor:
    """``round(255 x)`` after clamping to ``[0, 1]``, half to even, as floats:
    the one 8-bit quantisation of dcae (what a decoded image file holds)."""
    return (x.clamp(0, 1) * 255).round()


def tensor_to_uint8(x_hat: Tensor) -> Tensor:
    """``(H, W, 3)`` uint8 from ``(1, 3, H, W)`` in ``[0, 1]``
    (:func:`to_8bit_levels`)."""
    return to_8bit_levels(x_hat[0]).to(torch.uint8).permute(1, 2, 0).contiguous()


def from_8bit(pixels: Tensor) -> Tensor:
    """Float32 ``k/255`` from 8-bit pixels ``k`` (any layout): the inverse of
    :func:`to_8bit_levels` on 8-bit images."""
    return pixels.float().div(255)


def rgb_to_tensor(rgb: np.ndarray) -> Tensor:
    """``(1, 3, H, W)`` float32 on 8-bit levels (``k/255``) from ``(H, W, 3)``
    uint8 pixels."""
    return from_8bit(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None])


def read_rgb(
    path: Union[str, os.PathLike], *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 pixels of an image file read by
    :func:`~dcae.format.images.open_image` (upright, size checked), converted
    to RGB as ``PIL.Image.convert("RGB")`` does (an alpha channel dropped):
    what ``dcae eval`` and ``dcae train`` read."""
    with open_image(path, max_pixels=max_pixels) as img:
        return np.array(img.convert("RGB"))


def to_uint8_array(x_hat: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 from a ``(1, 3, H, W)`` float array in ``[0, 1]``:
    :func:`tensor_to_uint8` in NumPy, the same arithmetic (the decoder's
    output crosses to the host once, and every later step of
    :func:`dcae.decode` is NumPy)."""
    scaled = np.clip(x_hat[0], 0, 1) * x_hat.dtype.type(255)
    return np.ascontiguousarray(np.round(scaled).astype(np.uint8).transpose(1, 2, 0))
