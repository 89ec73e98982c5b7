"""Image files: the one suffix list and the one reader of dcae.

Every tool that reads image files (``dcae compress``, :func:`dcae.encode` of a
path, ``dcae eval``, ``dcae train``) lists folders with :func:`image_files`
and opens files with :func:`open_image`, which refuses before decoding any
pixel:

* an image with more than ``max_pixels`` pixels (the size is read from the
  header; the message names it and the way out, ``--max-pixels``), instead of
  running out of memory later;
* an animated image (GIF, APNG, WebP with more than one frame), instead of
  coding its first frame without a word;
* a file Pillow cannot read (the message names the path).

and applies the EXIF orientation (``Orientation`` tag, as photo viewers
do and as ``ImageOps.exif_transpose`` does): a JPEG a camera stored as
64x48 pixels with ``Orientation=6`` is read as the upright 48x64 image its
viewers show, and coded, evaluated and trained on upright.  The orientation
tag is dropped with the transposition; other metadata is not coded anyway.

Pillow only: the command line's parsers import this module.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import IO, List, Optional, Union

from PIL import Image, ImageOps

from ..errors import DCAEError
from .limits import DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXIF_ORIENTATION",
    "IMAGE_SUFFIXES",
    "UnsupportedImageError",
    "check_pixels",
    "image_files",
    "open_image",
]

#: the EXIF tag of the orientation (1: upright, 2-8: mirrored and/or rotated)
EXIF_ORIENTATION = 0x0112

#: suffixes of the image files a folder is searched for (lower case)
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif",
)  # fmt: skip

_PIL_LIMIT = threading.Lock()


class UnsupportedImageError(DCAEError, ValueError):
    """An input image has a mode, size or value range dcae does not code."""


def image_files(directory: Union[str, os.PathLike], limit: Optional[int] = None) -> List[Path]:
    """Image files (by :data:`IMAGE_SUFFIXES`) directly in ``directory``,
    sorted by name; the first ``limit`` if given.  May be empty.

    Raises:
        FileNotFoundError: ``directory`` is not a directory.
        ValueError: ``limit`` is below 1.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a directory")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        files = files[:limit]
    return files


def check_pixels(width: int, height: int, max_pixels: Optional[int], what: str = "image") -> None:
    """Refuse an image of more than ``max_pixels`` pixels (``None``: no bound)."""
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise UnsupportedImageError(
            f"{what} is {width}x{height} = {pixels / 1e6:.1f} megapixels, more than the limit "
            f"of {max_pixels} pixels (coding needs about 250 bytes per pixel); to code it "
            f"anyway pass --max-pixels {pixels} (Python: max_pixels={pixels}), or 0 for no "
            "bound, if the memory allows"
        )


def open_image(
    path: Union[str, os.PathLike, IO[bytes]], *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open and load a still image file, checking its size and frame count
    from the header before any pixel is decoded, upright: an EXIF
    orientation other than 1 is applied (``ImageOps.exif_transpose``).

    Args:
        path: the image file (or a binary file object, e.g. standard input's
            bytes in a ``BytesIO``).
        max_pixels: refuse images with more pixels (``None``: no bound; the
            default is the bound :func:`dcae.decode` applies to files).

    Raises:
        FileNotFoundError: no such file.
        UnsupportedImageError: unreadable, too large or animated (the
            message names the path).
    """
    if isinstance(path, (str, os.PathLike)):
        name = os.fspath(path)
    else:
        name = str(getattr(path, "name", None) or "<stream>")
    try:
        # Pillow's own decompression-bomb limit is a process global; the
        # header is read without it and max_pixels decides instead
        with _PIL_LIMIT, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with img:
            check_pixels(img.width, img.height, max_pixels, what=f"image {name}")
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1:
                raise UnsupportedImageError(
                    f"image {name} is animated ({frames} frames); dcae codes still images: "
                    "save the frame you want as a PNG first (Pillow: img.seek(i); "
                    "img.save('frame.png'))"
                )
            img.load()
            if img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
                return ImageOps.exif_transpose(img)  # a new, upright image
            return img
    except (FileNotFoundError, UnsupportedImageError):
        raise
    except IsADirectoryError as e:
        raise UnsupportedImageError(f"cannot read image {name!r}: it is a directory") from e
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise UnsupportedImageError(f"cannot read image {name!r}: {e}") from e
