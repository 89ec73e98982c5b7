"""Exceptions raised by dcae."""

from __future__ import annotations

__all__ = ["DCAEError", "FormatError", "ModelMismatchError", "DecodingError"]


class DCAEError(Exception):
    """Base class of every error dcae raises on bad input."""


class FormatError(DCAEError, ValueError):
    """A ``.dcae`` file is malformed: bad magic, version, lengths, CRC, sizes."""


class ModelMismatchError(DCAEError):
    """A file or checkpoint does not belong to the model used to read it."""


class DecodingError(DCAEError):
    """Decoding produced symbols that do not match the encoder's checksums."""
