"""The limits of a ``.dcae`` file and of what dcae codes (no torch: the
command line's parsers read them)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DIGEST_SIZE",
    "MAX_MULTIPLE",
    "MAX_NAME",
    "MAX_SIDE",
    "MAX_STRINGS",
]

MAX_SIDE = 65535
"""Largest width or height a file can record (16-bit fields)."""
DEFAULT_MAX_PIXELS = 1 << 25
"""Default bound on ``width * height`` accepted by :func:`unpack`: 2**25 pixels
(e.g. 8192 x 4096), which the ``small`` preset decodes in about 8 GB (peak RSS
3.8 GB at 4096 x 4096)."""
MAX_MULTIPLE = 4096
"""Largest multiple the ``"multiple"`` padding policy can record."""
#: bytes of the model digest (SHA-256)
DIGEST_SIZE = 32
#: longest model name a file records
MAX_NAME = 255
#: most strings a file holds
MAX_STRINGS = 255
