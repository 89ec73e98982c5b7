"""The ``.dcae`` container: one image compressed by any CompressAI model.

The byte layout is documented in ``docs/guides/format.rst``; in short (all
integers big-endian)::

    magic(9) version(1)=5 flags(1)         # bit 0: portable coding (DCAE only), bits 1-5 its grid
    model_kind(1) name_len(1) name(name_len) digest(32)
    quality(8) width(2) height(2) channels(1) bit_depth(1)   # quality: float64, NaN none
    policy(1) multiple(2) pad_left(2) pad_right(2) pad_top(2) pad_bottom(2)
    shape_len(2) shape(shape_len)          # the model's ``shape`` (dcae.format.shape)
    num_strings(1) [length(4) bytes(length)] x num_strings
    crc32(4)                               # of every byte before it

:func:`unpack` checks every field before anything is allocated from it and
raises :class:`~dcae.FormatError` with a message naming the field; the model
identifier (``digest``) is compared with the decoding model's
:func:`~dcae.format.fingerprint.model_fingerprint` by :func:`dcae.decode`.  Since version 5 the
header's fields that decide decoding (:meth:`Bitstream.associated_data`) are
bound into the checks of DCAE's ``y`` strings, so a rewritten header (with a
recomputed CRC) does not decode.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ..errors import FormatError
from ..latent_codecs.coding_mode import FIRST_PORTABLE_GRID_BITS, FLOAT32, CodingMode
from .limits import DEFAULT_MAX_PIXELS, DIGEST_SIZE, MAX_NAME, MAX_SIDE, MAX_STRINGS
from .padding import PADDING_POLICIES, policy_multiple, policy_padding
from .shape import MAX_SHAPE_BYTES, decode_shape, encode_shape, shape_budget, shape_elements

__all__ = [
    "FLAG_GRID_MASK",
    "FLAG_PORTABLE",
    "FORMAT_VERSION",
    "MAGIC",
    "MODEL_KINDS",
    "READ_VERSIONS",
    "WRITE_VERSIONS",
    "Bitstream",
    "pack",
    "unpack",
]

#: flag bit: the strings were coded in DCAE's portable mode
FLAG_PORTABLE = 0x01
#: flag bits 1-5: the grid exponent of portable coding (0: 16, the first portable mode)
FLAG_GRID_MASK = 0x3E
_FLAG_GRID_SHIFT = 1

MAGIC = b"\x89DCAE\r\n\x1a\n"
"""Nine bytes: a non-ASCII byte, ``DCAE``, CR LF, Ctrl-Z, LF (PNG-style, so
text-mode transfers and truncation to 7 bits are detected)."""

#: 5 since 2026-12-06: the header's decoding fields are bound into DCAE's
#: string checks (:meth:`Bitstream.associated_data`) and the ``minimal``
#: policy pads by edge replication to a multiple of the model's stride, at
#: least :data:`MIN_CODED_SIDE` per side (same layout as 4).
#: 4 since 2026-12-04: the quality is a real number (float64 in the header,
#: a float in the shape of variable-rate models); still read.  3: any CompressAI model;
#: the model's ``shape`` stored as it is; the per-slice checksums in the ``y``
#: string of :class:`dcae.DCAEEntropyModel`; still read (its one-byte quality
#: is read as "none").  Version 2 (dcae 0.1.x) and 1 files are refused with a
#: message to re-encode
FORMAT_VERSION = 5
#: versions :func:`unpack` reads
READ_VERSIONS = (3, 4, 5)
#: versions :func:`pack` writes (4 for tests and tools that rewrite old files)
WRITE_VERSIONS = (4, 5)
MODEL_KINDS = ("dcae", "compressai", "class")
"""How the model name is to be read, by its code in the file (index = code):
a DCAE preset name, a CompressAI registry name, or ``module:Class``."""

_FIXED = struct.Struct(">d HHBB BH HHHH")  # quality .. pad_bottom (after the digest)
_FIXED_V3 = struct.Struct(">B HHBB BH HHHH")  # version 3: a one-byte quality


@dataclass(frozen=True)
class Bitstream:
    """The content of one ``.dcae`` file.

    Args:
        model_kind: how ``model_name`` reads: ``"dcae"`` (a DCAE preset name),
            ``"compressai"`` (a CompressAI registry name) or ``"class"``
            (``module:Class`` of a user's model).
        model_name: name of the writing model (informational: the digest decides).
        model_digest: :func:`~dcae.format.fingerprint.model_fingerprint` of the
            writing model (32 bytes).
        quality: the quality a variable-rate model coded at (a real number,
            also ``shape["quality"]``), ``None`` for a single-rate model.
        width: original image width.
        height: original image height.
        channels: channels of the original image (1 grayscale, 3 RGB).
        bit_depth: bits per sample of the original image (8).
        padding_policy: ``"minimal"``, ``"official"`` or ``"multiple"``.
        pad_multiple: what the policy pads to (1, 128, or the model's
            downsampling factor).
        padding: ``(left, right, top, bottom)`` pixels added before coding.
        shape: the ``shape`` the model's ``compress`` returned.
        strings: the entropy-coded strings, one per list ``compress`` returned.
        mode: the coding mode of a DCAE model's strings
            (:class:`~dcae.latent_codecs.coding_mode.CodingMode`): flag bit 0
            portable, bits 1-5 its grid (0 stands for 16, the grid of the first
            portable streams).
        version: the format version (:data:`FORMAT_VERSION` for new files; an
            older one read by :func:`unpack` decides how the file decodes).
    """

    model_kind: str
    model_name: str
    model_digest: bytes
    quality: Optional[float]
    width: int
    height: int
    channels: int
    bit_depth: int
    padding_policy: str
    pad_multiple: int
    padding: Tuple[int, int, int, int]
    shape: Any
    strings: Tuple[bytes, ...]
    mode: CodingMode = FLOAT32
    version: int = FORMAT_VERSION

    @property
    def portable(self) -> bool:
        """Whether the strings were coded in DCAE's portable mode (flag bit 0)."""
        return self.mode.portable

    @property
    def grid_bits(self) -> Optional[int]:
        """The portable grid exponent (flag bits 1-5), ``None`` if not portable."""
        return self.mode.grid_bits

    @property
    def coded_size(self) -> Tuple[int, int]:
        """``(height, width)`` of the image the model coded (padding included)."""
        left, right, top, bottom = self.padding
        return self.height + top + bottom, self.width + left + right

    @property
    def payload_bytes(self) -> int:
        """Bytes of the entropy-coded strings (header and CRC excluded)."""
        return sum(len(s) for s in self.strings)

    def associated_data(self) -> Optional[bytes]:
        """The header fields that decide decoding, as bytes bound into the
        string checks of a DCAE model (``DCAEModel.compress(...,
        associated_data=)``): the model digest, flags, quality, image size,
        channels, bit depth and padding.  ``None`` for files of versions 3
        and 4, whose checks bind none of them.

        Everything else a decoder reads is the model's ``shape`` (whose
        latent sizes, quality and image size the model binds itself) and the
        strings."""
        if self.version < 5:
            return None
        return (
            b"dcae-header-v5\0"
            + self.model_digest
            + struct.pack(">B", self._flags())
            + _FIXED.pack(*self._fixed_fields())
        )

    def _flags(self) -> int:
        bits = self.mode.grid_bits
        if bits is None:
            return 0
        grid = 0 if bits == FIRST_PORTABLE_GRID_BITS else bits
        return FLAG_PORTABLE | grid << _FLAG_GRID_SHIFT

    def _fixed_fields(self) -> Tuple[Any, ...]:
        return (
            math.nan if self.quality is None else float(self.quality),
            self.width,
            self.height,
            self.channels,
            self.bit_depth,
            PADDING_POLICIES.index(self.padding_policy),
            self.pad_multiple,
            *self.padding,
        )

    def describe_model(self) -> str:
        """``"'small' (weights sha256 0123abcd...)"`` for error messages."""
        what = {"compressai": "CompressAI model ", "class": "class "}.get(self.model_kind, "")
        return f"{what}{self.model_name!r} (weights sha256 {self.model_digest.hex()[:16]}...)"

    def validate(self, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        """Check that every field is in range and consistent with the others.

        Raises:
            FormatError: naming the first bad field.
        """
        if self.version not in READ_VERSIONS:
            raise FormatError(f"format version {self.version!r} is not one of {READ_VERSIONS}")
        if not isinstance(self.mode, CodingMode):
            raise FormatError(f"mode must be a CodingMode, got {self.mode!r:.40}")
        if self.mode.portable and self.model_kind != "dcae":
            raise FormatError("portable coding is a DCAE mode; the model is not DCAE")
        if self.model_kind not in MODEL_KINDS:
            raise FormatError(f"unknown model kind {self.model_kind!r}")
        if not isinstance(self.model_digest, bytes) or len(self.model_digest) != DIGEST_SIZE:
            raise FormatError(f"model digest must be {DIGEST_SIZE} bytes")
        if not 1 <= len(self.model_name) <= MAX_NAME or not all(
            32 <= ord(c) < 127 for c in self.model_name
        ):
            raise FormatError(
                f"model name must be 1..{MAX_NAME} printable ASCII characters, "
                f"got {self.model_name!r}"
            )
        if self.model_kind == "class" and ":" not in self.model_name:
            raise FormatError(
                f"model name {self.model_name!r} of kind 'class' is not module:Class"
            )
        if self.quality is not None and (
            isinstance(self.quality, bool)
            or not isinstance(self.quality, (int, float))
            or not math.isfinite(self.quality)
        ):
            raise FormatError(f"quality {self.quality!r} is not a finite number or None")
        recorded = self.shape.get("quality") if isinstance(self.shape, dict) else None
        if recorded is not None and recorded != self.quality:
            raise FormatError(
                f"the header's quality {self.quality!r} differs from the shape's {recorded!r}"
            )
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
        legacy_minimal = self.version < 5 and self.padding_policy == "minimal"
        try:  # before version 5, "minimal" meant no padding, multiple 1
            multiple = (
                1 if legacy_minimal else policy_multiple(self.padding_policy, self.pad_multiple)
            )
        except ValueError as e:
            raise FormatError(str(e)) from None
        if self.pad_multiple != multiple:
            raise FormatError(
                f"padding multiple {self.pad_multiple} does not match the "
                f"{self.padding_policy!r} policy (expected {multiple})"
            )
        expected = (
            (0, 0, 0, 0)
            if legacy_minimal
            else policy_padding(self.padding_policy, self.height, self.width, multiple)
        )
        if tuple(self.padding) != expected:
            raise FormatError(
                f"padding {tuple(self.padding)} does not match the {self.padding_policy!r} "
                f"policy for a {self.width}x{self.height} image (expected {expected})"
            )
        ch, cw = self.coded_size
        if ch > MAX_SIDE or cw > MAX_SIDE:
            raise FormatError(f"padded size {cw}x{ch} exceeds {MAX_SIDE}")
        try:
            encode_shape(self.shape)
        except ValueError as e:
            raise FormatError(f"bad shape field: {e}") from None
        budget = shape_budget(ch, cw)
        if shape_elements(self.shape) > budget:
            raise FormatError(
                f"shape {self.shape!r:.80} describes more than {budget} elements, too many "
                f"for a coded image of {cw}x{ch} (corrupt or crafted shape field)"
            )
        if not 1 <= len(self.strings) <= MAX_STRINGS:
            raise FormatError(f"string count {len(self.strings)} is not in 1..{MAX_STRINGS}")
        if any(not isinstance(s, bytes) for s in self.strings):
            raise FormatError("strings must be bytes")
        if any(len(s) > 0xFFFFFFFF for s in self.strings):
            raise FormatError("a string is longer than 4 GiB")


def pack(stream: Bitstream) -> bytes:
    """Serialise ``stream`` (validated first) to the bytes of a ``.dcae`` file
    of its ``version`` (:data:`FORMAT_VERSION` unless given)."""
    stream.validate(max_pixels=None)
    if stream.version not in WRITE_VERSIONS:
        raise FormatError(f"cannot write format version {stream.version} (only {WRITE_VERSIONS})")
    name = stream.model_name.encode("ascii")
    shape = encode_shape(stream.shape)
    out = bytearray(MAGIC)
    out += struct.pack(
        ">BBBB",
        stream.version,
        stream._flags(),
        MODEL_KINDS.index(stream.model_kind),
        len(name),
    )
    out += name
    out += stream.model_digest
    out += _FIXED.pack(*stream._fixed_fields())
    out += struct.pack(">H", len(shape)) + shape
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


_OLD_VERSIONS = {
    1: "dcae before 2026-11-25, another mapping of scales to CDF tables",
    2: "dcae 0.1.x, DCAE models only, slice checksums in the header",
}


def unpack(data: bytes, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Bitstream:
    """Parse and check the bytes of a ``.dcae`` file.

    Checks, in order: magic, version, that every field and length-prefixed
    string lies inside the file, that nothing follows the final CRC, the CRC32
    of the whole file, then every field's range and consistency (see
    :meth:`Bitstream.validate`), the shape field's structure and its size
    against the recorded image size.  Nothing is allocated from an unchecked
    field.

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
    (version,) = r.unpack(struct.Struct(">B"), "version")
    if version in _OLD_VERSIONS:
        raise FormatError(
            f"this .dcae file uses format version {version} ({_OLD_VERSIONS[version]}); "
            f"this dcae reads versions {READ_VERSIONS[0]} to {FORMAT_VERSION}: re-encode the "
            "image with this dcae "
            "(or decode it with dcae <= 0.1.x)"
        )
    if version not in READ_VERSIONS:
        raise FormatError(
            f"unsupported .dcae format version {version} (this dcae reads versions "
            f"{READ_VERSIONS[0]} to {FORMAT_VERSION}; a newer file needs a newer dcae)"
        )
    flags, kind, name_len = r.unpack(struct.Struct(">BBB"), "header")
    name_raw = r.take(name_len, "model name")
    digest = r.take(DIGEST_SIZE, "model digest")
    fixed = r.unpack(_FIXED if version >= 4 else _FIXED_V3, "image header")
    (shape_len,) = r.unpack(struct.Struct(">H"), "shape length")
    if shape_len > MAX_SHAPE_BYTES:
        raise FormatError(f"shape field of {shape_len} bytes exceeds {MAX_SHAPE_BYTES}")
    shape_raw = r.take(shape_len, "shape field")
    (num_strings,) = r.unpack(struct.Struct(">B"), "string count")
    if num_strings == 0:
        raise FormatError("string count 0 is not in 1..255")
    strings = []
    for i in range(num_strings):
        (n,) = r.unpack(struct.Struct(">I"), f"length of string {i}")
        remaining = len(data) - r.pos
        if n > remaining:
            raise FormatError(
                f"string {i} declares {n} bytes at offset {r.pos} but only "
                f"{remaining} remain (truncated file or corrupt length field)"
            )
        strings.append(r.take(n, f"string {i}"))
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
    if flags & ~(FLAG_PORTABLE | FLAG_GRID_MASK):
        raise FormatError(
            f"unknown flags 0x{flags:02x} (only bit 0, portable, and bits 1-5, its grid, "
            "are defined)"
        )
    if flags & FLAG_GRID_MASK and not flags & FLAG_PORTABLE:
        raise FormatError(f"flags 0x{flags:02x} give a portable grid without the portable bit")
    if kind >= len(MODEL_KINDS):
        raise FormatError(f"unknown model kind code {kind}")
    if flags & FLAG_PORTABLE and MODEL_KINDS[kind] != "dcae":
        raise FormatError("the portable flag is set for a model that is not DCAE")
    try:
        model_name = name_raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("model name is not ASCII") from None
    quality, width, height, channels, bit_depth, policy, multiple = fixed[:7]
    if version < 4 or math.isnan(quality):
        quality = None  # version 3: the index of an earlier dcae's shipped model
    elif not math.isfinite(quality):
        raise FormatError(f"quality {quality} is not finite")
    if policy >= len(PADDING_POLICIES):
        raise FormatError(f"unknown padding policy code {policy}")
    stream = Bitstream(
        model_kind=MODEL_KINDS[kind],
        model_name=model_name,
        model_digest=digest,
        quality=quality,
        width=width,
        height=height,
        channels=channels,
        bit_depth=bit_depth,
        padding_policy=PADDING_POLICIES[policy],
        pad_multiple=multiple,
        padding=tuple(fixed[7:11]),  # type: ignore[arg-type]
        shape=decode_shape(shape_raw),
        strings=tuple(strings),
        mode=CodingMode(
            (flags & FLAG_GRID_MASK) >> _FLAG_GRID_SHIFT or FIRST_PORTABLE_GRID_BITS
            if flags & FLAG_PORTABLE
            else None
        ),
        version=version,
    )
    stream.validate(max_pixels=max_pixels)
    return stream
