"""The classical codecs of ``dcae eval``: JPEG, WebP and AVIF as Pillow
writes them, with the reference settings of :data:`PILLOW_SETTINGS`."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import __version__ as PIL_VERSION

from ..errors import DCAEError
from ..format.pixels import rgb_to_tensor
from .curves import ImageRecord
from .measure import Log, measure, progress_line, read_image, silent
from .metrics import bpp_from_bytes

__all__ = [
    "PILLOW_SETTINGS",
    "check_qualities",
    "describe_pillow",
    "evaluate_pillow",
    "pillow_name",
    "pillow_supports",
]

#: Pillow ``save`` options of each format besides ``quality`` (the reference
#: settings of issue #12): JPEG with Pillow's defaults (4:2:0 chroma
#: subsampling, baseline), WebP lossy at its slowest and best ``method=6``,
#: AVIF at libavif ``speed=4`` (4:2:0) on one thread (the encoder's output
#: depends on its thread count).
PILLOW_SETTINGS: Dict[str, Dict[str, Any]] = {
    "JPEG": {},
    "WEBP": {"method": 6},
    "AVIF": {"speed": 4, "max_threads": 1},
}
_FEATURES = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}
_NAMES = {"JPEG": "JPEG (Pillow)", "WEBP": "WebP (Pillow)", "AVIF": "AVIF (Pillow)"}
_MIN_QUALITY = {"JPEG": 1, "WEBP": 1, "AVIF": 0}


def pillow_supports(fmt: str) -> bool:
    """Whether this Pillow can write and read ``fmt`` (``"JPEG"``, ``"WEBP"``
    or ``"AVIF"``; AVIF needs Pillow >= 11.2 built with libavif)."""
    from PIL import features

    try:
        return bool(features.check(_FEATURES[fmt.upper()]))
    except (KeyError, ValueError):  # unknown format, or a Pillow that knows no such feature
        return False


def describe_pillow(fmt: str, options: Optional[Dict[str, Any]] = None) -> str:
    """One line naming the Pillow and library versions and the encoder settings
    of ``fmt`` with ``options`` (default :data:`PILLOW_SETTINGS`), e.g.
    ``"Pillow 13.0.0 AVIF (libavif 1.4.2, aom 3.14.1): speed=4, max_threads=1,
    4:2:0"``."""
    from PIL import features

    fmt = fmt.upper()
    options = PILLOW_SETTINGS[fmt] if options is None else options
    lib = {"JPEG": "libjpeg", "WEBP": "libwebp", "AVIF": "libavif"}[fmt]
    try:
        version = features.version(_FEATURES[fmt])
        if fmt == "JPEG" and features.check_feature("libjpeg_turbo"):
            lib, version = "libjpeg-turbo", features.version_feature("libjpeg_turbo")
    except ValueError:  # a Pillow that knows no such feature
        version = None
    libs = [f"{lib} {version or '?'}"]
    if fmt == "AVIF":
        libs += _avif_encoders()
    settings = [f"{k}={v}" for k, v in options.items()]
    if fmt == "WEBP":
        settings.insert(0, "lossy")
    if "subsampling" not in options:
        settings.append("4:2:0")
    if fmt == "JPEG":
        settings.append("baseline (Pillow defaults)")
    return f"Pillow {PIL_VERSION} {fmt} ({', '.join(libs)}): {', '.join(settings)}"


def _avif_encoders() -> List[str]:
    """The AV1 encoders libavif was built with, e.g. ``["aom 3.14.1"]``."""
    try:
        from PIL import _avif

        versions = _avif.codec_versions()  # "dav1d [dec]:1.5.3, aom [enc]:3.14.1"
    except (ImportError, AttributeError):
        return []
    return [
        part.replace(" [enc]:", " ").strip()
        for part in str(versions).split(",")
        if "[enc]" in part
    ]


def evaluate_pillow(
    images: Sequence[Path],
    fmt: str,
    qualities: Iterable[int],
    log: Log = silent,
    options: Optional[Dict[str, Any]] = None,
    ms_ssim: bool = True,
) -> List[ImageRecord]:
    """Encode and decode each image with Pillow at each quality.

    Args:
        images: image files.
        fmt: ``"JPEG"``, ``"WEBP"`` or ``"AVIF"``.
        qualities: Pillow ``quality`` values (1..100; AVIF 0..100).
        log: progress callback.
        options: further ``Image.save`` options; default
            :data:`PILLOW_SETTINGS` (:func:`describe_pillow` writes them out).

    Raises:
        DCAEError: this Pillow cannot write ``fmt`` (:func:`pillow_supports`).
    """
    fmt = fmt.upper()
    qualities = check_qualities(fmt, qualities)
    if not pillow_supports(fmt):
        raise DCAEError(f"Pillow {PIL_VERSION} was built without {fmt} support")
    options = PILLOW_SETTINGS[fmt] if options is None else options
    codec = pillow_name(fmt)
    pixels = [read_image(p, ms_ssim) for p in images]
    records = []
    for q in qualities:
        for i, (path, rgb) in enumerate(zip(images, pixels)):
            img = Image.fromarray(rgb)
            buf = io.BytesIO()
            t0 = time.perf_counter()
            img.save(buf, format=fmt, quality=int(q), **options)
            t1 = time.perf_counter()
            data = buf.getvalue()
            with Image.open(io.BytesIO(data)) as dec:
                rec_rgb = np.array(dec.convert("RGB"))
            t2 = time.perf_counter()
            h, w = rgb.shape[:2]
            if rec_rgb.shape != rgb.shape:
                raise DCAEError(
                    f"{fmt} quality {q} decoded {path.name} ({w}x{h}) to "
                    f"{rec_rgb.shape[1]}x{rec_rgb.shape[0]}"
                )
            p, m = measure(rgb_to_tensor(rgb), rgb_to_tensor(rec_rgb), ms_ssim)
            rec = ImageRecord(
                codec, f"q{q}", path.stem, w, h, len(data), bpp_from_bytes(len(data), h * w),
                p, m, t1 - t0, t2 - t1,
            )  # fmt: skip
            records.append(rec)
            log(progress_line(rec, i + 1, len(images)))
    return records


def check_qualities(fmt: str, qualities: Iterable[int]) -> List[int]:
    """``qualities`` as ints, each checked for ``fmt``."""
    if fmt not in _NAMES:
        raise ValueError(f"unsupported format {fmt!r}; use JPEG, WEBP or AVIF")
    qualities = [int(q) for q in qualities]
    lo = _MIN_QUALITY[fmt]
    for q in qualities:
        if not lo <= q <= 100:
            raise ValueError(f"{fmt} quality must be in {lo}..100, got {q}")
    return qualities


def pillow_name(fmt: str) -> str:
    """The codec name of ``fmt`` in records and reports, e.g. ``"WebP (Pillow)"``."""
    return _NAMES[fmt]
