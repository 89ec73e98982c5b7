"""The ``.dcae`` file format: one compressed image per file.

The byte layout is documented in ``docs/guides/format.rst``; in short (all
integers big-endian)::

    magic(9) version(1) flags(1) name_len(1) name(name_len) digest(32)
    quality(1) width(2) height(2) channels(1) bit_depth(1) policy(1)
    pad_left(2) pad_right(2) pad_top(2) pad_bottom(2)
    y_h(2) y_w(2) hyper_h(2) hyper_w(2)
    num_slices(1) slice_crc32(4 x num_slices)
    num_strings(1) [length(4) bytes(length)] x num_strings
    crc32(4)                 # of every byte before it

:func:`unpack` checks every field before anything is allocated from it and
raises :class:`~dcae.FormatError` with a message naming the field; the model
identifier (``digest``) is compared with the decoding model's
:func:`model_fingerprint` by :func:`dcae.decode`.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from .errors import FormatError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "HYPER_STRIDE",
    "LATENT_STRIDE",
    "MAGIC",
    "MAX_SIDE",
    "OFFICIAL_MULTIPLE",
    "PADDING_POLICIES",
    "Bitstream",
    "model_fingerprint",
    "pack",
    "policy_padding",
    "unpack",
]

MAGIC = b"\x89DCAE\r\n\x1a\n"
"""Nine bytes: a non-ASCII byte, ``DCAE``, CR LF, Ctrl-Z, LF (PNG-style, so
text-mode transfers and truncation to 7 bits are detected)."""

#: 2 since 2026-11-25: scales are mapped to the nearest CDF table level in the
#: log domain (:meth:`dcae.DCAEEntropyModel.build_indexes`); version 1 files
#: used CompressAI's round-up rule and cannot be decoded by this dcae
FORMAT_VERSION = 2
MAX_SIDE = 65535
"""Largest width or height a file can record (16-bit fields)."""
DEFAULT_MAX_PIXELS = 1 << 25
"""Default bound on ``width * height`` accepted by :func:`unpack`: 2**25 pixels
(e.g. 8192 x 4096), which the ``small`` preset decodes in about 8 GB (peak RSS
3.8 GB at 4096 x 4096)."""
LATENT_STRIDE = 16
"""Spatial stride of ``g_a``: the latent ``y`` is ``ceil(H/16) x ceil(W/16)``."""
HYPER_STRIDE = 4
"""Stride of the hyper analysis: ``z`` is ``ceil(y_h/4) x ceil(y_w/4)``."""
OFFICIAL_MULTIPLE = 128
"""The official scripts pad images to a multiple of this (centred, zeros)."""
PADDING_POLICIES = ("minimal", "official")
"""Padding policies by their code in the file (index = code)."""
DIGEST_SIZE = 32
MAX_NAME = 64
NUM_STRINGS = 2  # y, z

_FIXED = struct.Struct(">B HHBBB HHHH HHHH")  # quality .. hyper_w (after the digest)


def policy_padding(policy: str, height: int, width: int) -> Tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding a policy applies to an image.

    ``"minimal"`` pads nothing (the model pads internally and crops);
    ``"official"`` pads to a multiple of 128 with the image centred, as the
    official ``eval.py`` does (the extra column/row goes right/bottom).
    """
    if policy == "minimal":
        return (0, 0, 0, 0)
    if policy == "official":
        p = OFFICIAL_MULTIPLE
        new_h = (height + p - 1) // p * p
        new_w = (width + p - 1) // p * p
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return (left, new_w - width - left, top, new_h - height - top)
    raise ValueError(f"unknown padding policy {policy!r}; choose one of {PADDING_POLICIES}")


def latent_shapes(height: int, width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Shapes of ``y`` and ``z`` for a coded (padded) image of ``height x width``."""
    y = (math.ceil(height / LATENT_STRIDE), math.ceil(width / LATENT_STRIDE))
    z = (math.ceil(y[0] / HYPER_STRIDE), math.ceil(y[1] / HYPER_STRIDE))
    return y, z


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def model_fingerprint(model: nn.Module) -> bytes:
    """SHA-256 identifying a model's weights, CDF tables and configuration.

    Hashes the configuration (without its informational ``name``) and every
    state-dict entry in key order (key, dtype, shape, little-endian bytes).
    The digest is cached on the model and recomputed when any tensor changes
    (storage or in-place version counter), so it stays valid after training
    steps, ``load_state_dict`` or ``update()``.
    """
    sd = model.state_dict()
    key = tuple((k, v.data_ptr(), v._version, tuple(v.shape)) for k, v in sd.items())
    cached = getattr(model, "_dcae_fingerprint", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256(b"dcae-fingerprint-v1\0")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = {k: v for k, v in config.to_dict().items() if k != "name"}
        h.update(json.dumps(cfg, sort_keys=True).encode())
    for k, v in sd.items():
        h.update(f"\0{k}\0{v.dtype}\0{tuple(v.shape)}\0".encode())
        h.update(_tensor_bytes(v))
    digest = h.digest()
    object.__setattr__(model, "_dcae_fingerprint", (key, digest))
    return digest


@dataclass(frozen=True)
class Bitstream:
    """The content of one ``.dcae`` file.

    Args:
        model_name: configuration/preset name of the writing model (informational).
        model_digest: :func:`model_fingerprint` of the writing model (32 bytes).
        quality: shipped-model quality the file was written with (0: another model).
        width: original image width.
        height: original image height.
        channels: channels of the original image (1 grayscale, 3 RGB).
        bit_depth: bits per sample of the original image (8).
        padding_policy: ``"minimal"`` or ``"official"``.
        padding: ``(left, right, top, bottom)`` pixels added before coding.
        y_shape: latent ``y`` height and width.
        hyper_shape: hyper-latent ``z`` height and width.
        checksums: CRC32 of the integer symbols of each slice of ``y``.
        strings: the entropy-coded ``y`` and ``z`` strings.
    """

    model_name: str
    model_digest: bytes
    quality: int
    width: int
    height: int
    channels: int
    bit_depth: int
    padding_policy: str
    padding: Tuple[int, int, int, int]
    y_shape: Tuple[int, int]
    hyper_shape: Tuple[int, int]
    checksums: Tuple[int, ...]
    strings: Tuple[bytes, ...]

    @property
    def coded_size(self) -> Tuple[int, int]:
        """``(height, width)`` of the image the model coded (padding included)."""
        left, right, top, bottom = self.padding
        return self.height + top + bottom, self.width + left + right

    @property
    def payload_bytes(self) -> int:
        """Bytes of the entropy-coded strings (header and CRC excluded)."""
        return sum(len(s) for s in self.strings)

    def describe_model(self) -> str:
        """``"'small' (sha256 0123abcd...)"`` for error messages."""
        return f"{self.model_name!r} (weights sha256 {self.model_digest.hex()[:16]}...)"

    def validate(self, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        """Check that every field is in range and consistent with the others.

        Raises:
            FormatError: naming the first bad field.
        """
        if not isinstance(self.model_digest, bytes) or len(self.model_digest) != DIGEST_SIZE:
            raise FormatError(f"model digest must be {DIGEST_SIZE} bytes")
        if len(self.model_name) > MAX_NAME or not all(32 <= ord(c) < 127 for c in self.model_name):
            raise FormatError(
                f"model name must be at most {MAX_NAME} printable ASCII characters, "
                f"got {self.model_name!r}"
            )
        if not 0 <= self.quality <= 255:
            raise FormatError(f"quality {self.quality} is not in 0..255")
        for name, v in (("width", self.width), ("height", self.height)):
            if not 1 <= v <= MAX_SIDE:
                raise FormatError(f"image {name} {v} is not in 1..{MAX_SIDE}")
        if max_pixels is not None and self.width * self.height > max_pixels:
            raise FormatError(
                f"image of {self.width}x{self.height} = {self.width * self.height} pixels "
                f"exceeds max_pixels={max_pixels} (pass a larger max_pixels to decode it)"
            )
        if self.channels not in (1, 3):
            raise FormatError(f"channel count {self.channels} is not 1 or 3")
        if self.bit_depth != 8:
            raise FormatError(f"bit depth {self.bit_depth} is not supported (only 8)")
        if self.padding_policy not in PADDING_POLICIES:
            raise FormatError(f"unknown padding policy {self.padding_policy!r}")
        expected = policy_padding(self.padding_policy, self.height, self.width)
        if tuple(self.padding) != expected:
            raise FormatError(
                f"padding {tuple(self.padding)} does not match the {self.padding_policy!r} "
                f"policy for a {self.width}x{self.height} image (expected {expected})"
            )
        ch, cw = self.coded_size
        if ch > MAX_SIDE or cw > MAX_SIDE:
            raise FormatError(f"padded size {cw}x{ch} exceeds {MAX_SIDE}")
        y, z = latent_shapes(ch, cw)
        if tuple(self.y_shape) != y:
            raise FormatError(
                f"latent shape {tuple(self.y_shape)} is inconsistent with the coded image "
                f"size {cw}x{ch} (expected {y})"
            )
        if tuple(self.hyper_shape) != z:
            raise FormatError(
                f"hyper-latent shape {tuple(self.hyper_shape)} is inconsistent with the "
                f"latent shape {y} (expected {z})"
            )
        if not 1 <= len(self.checksums) <= 255:
            raise FormatError(f"slice count {len(self.checksums)} is not in 1..255")
        if any(not 0 <= c <= 0xFFFFFFFF for c in self.checksums):
            raise FormatError("slice checksums must be 32-bit unsigned integers")
        if len(self.strings) != NUM_STRINGS:
            raise FormatError(f"expected {NUM_STRINGS} strings (y, z), got {len(self.strings)}")
        if any(len(s) > 0xFFFFFFFF for s in self.strings):
            raise FormatError("a string is longer than 4 GiB")


def pack(stream: Bitstream) -> bytes:
    """Serialise ``stream`` (validated first) to the bytes of a ``.dcae`` file."""
    stream.validate(max_pixels=None)
    name = stream.model_name.encode("ascii")
    out = bytearray(MAGIC)
    out += struct.pack(">BBB", FORMAT_VERSION, 0, len(name))
    out += name
    out += stream.model_digest
    out += _FIXED.pack(
        stream.quality,
        stream.width,
        stream.height,
        stream.channels,
        stream.bit_depth,
        PADDING_POLICIES.index(stream.padding_policy),
        *stream.padding,
        *stream.y_shape,
        *stream.hyper_shape,
    )
    out += struct.pack(f">B{len(stream.checksums)}I", len(stream.checksums), *stream.checksums)
    out += struct.pack(">B", len(stream.strings))
    for s in stream.strings:
        out += struct.pack(">I", len(s))
        out += s
    out += struct.pack(">I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


class _Reader:
    """Bounds-checked cursor over the file bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise FormatError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {len(self.data)} bytes"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> Tuple[int, ...]:
        return fmt.unpack(self.take(fmt.size, what))


def unpack(data: bytes, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Bitstream:
    """Parse and check the bytes of a ``.dcae`` file.

    Checks, in order: magic, version, that every field and length-prefixed
    string lies inside the file, that nothing follows the final CRC, the CRC32
    of the whole file, then every field's range and consistency (see
    :meth:`Bitstream.validate`).  Nothing is allocated from an unchecked field.

    Args:
        data: the file content.
        max_pixels: refuse images with more pixels (``None``: no bound beyond
            the 16-bit size fields).

    Raises:
        FormatError: with a message naming the problem.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    r = _Reader(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not a .dcae file (wrong magic bytes)")
    r.pos = len(MAGIC)
    version, flags, name_len = r.unpack(struct.Struct(">BBB"), "header")
    if version == 1:
        raise FormatError(
            "this .dcae file uses format version 1 (dcae before 2026-11-25, another "
            "mapping of scales to CDF tables); this dcae reads version "
            f"{FORMAT_VERSION}: re-encode the image with it"
        )
    if version != FORMAT_VERSION:
        raise FormatError(
            f"unsupported .dcae format version {version} (this dcae reads version "
            f"{FORMAT_VERSION}; a newer file needs a newer dcae)"
        )
    if name_len > MAX_NAME:
        raise FormatError(f"model name length {name_len} exceeds {MAX_NAME}")
    name_raw = r.take(name_len, "model name")
    digest = r.take(DIGEST_SIZE, "model digest")
    fixed = r.unpack(_FIXED, "image header")
    (num_slices,) = r.unpack(struct.Struct(">B"), "slice count")
    checksums = struct.unpack(f">{num_slices}I", r.take(4 * num_slices, "slice checksums"))
    (num_strings,) = r.unpack(struct.Struct(">B"), "string count")
    if num_strings != NUM_STRINGS:
        raise FormatError(f"expected {NUM_STRINGS} strings (y, z), got {num_strings}")
    strings = []
    for i, label in enumerate(("y", "z")):
        (n,) = r.unpack(struct.Struct(">I"), f"length of string {i} ({label})")
        remaining = len(data) - r.pos
        if n > remaining:
            raise FormatError(
                f"string {i} ({label}) declares {n} bytes at offset {r.pos} but only "
                f"{remaining} remain (truncated file or corrupt length field)"
            )
        strings.append(r.take(n, f"string {i} ({label})"))
    end = r.pos
    (stored_crc,) = r.unpack(struct.Struct(">I"), "CRC32")
    if r.pos != len(data):
        raise FormatError(
            f"{len(data) - r.pos} bytes of trailing garbage after the end of the stream "
            f"(offset {r.pos})"
        )
    actual_crc = zlib.crc32(data[:end]) & 0xFFFFFFFF
    if actual_crc != stored_crc:
        raise FormatError(
            f"CRC32 mismatch (stored {stored_crc:08x}, computed {actual_crc:08x}): "
            "the file is corrupted"
        )
    if flags != 0:
        raise FormatError(f"unknown flags 0x{flags:02x} (reserved, must be 0)")
    try:
        model_name = name_raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("model name is not ASCII") from None
    quality, width, height, channels, bit_depth, policy = fixed[:6]
    if policy >= len(PADDING_POLICIES):
        raise FormatError(f"unknown padding policy code {policy}")
    stream = Bitstream(
        model_name=model_name,
        model_digest=digest,
        quality=quality,
        width=width,
        height=height,
        channels=channels,
        bit_depth=bit_depth,
        padding_policy=PADDING_POLICIES[policy],
        padding=tuple(fixed[6:10]),  # type: ignore[arg-type]
        y_shape=tuple(fixed[10:12]),  # type: ignore[arg-type]
        hyper_shape=tuple(fixed[12:14]),  # type: ignore[arg-type]
        checksums=tuple(checksums),
        strings=tuple(strings),
    )
    stream.validate(max_pixels=max_pixels)
    return stream
