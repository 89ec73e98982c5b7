"""The ``.dcae`` file format: one image compressed by any CompressAI model.

The byte layout is documented in ``docs/guides/format.rst``; in short (all
integers big-endian)::

    magic(9) version(1)=5 flags(1)         # bit 0: portable coding (DCAE only), bits 1-5 its grid
    model_kind(1) name_len(1) name(name_len) digest(32)
    quality(8) width(2) height(2) channels(1) bit_depth(1)   # quality: float64, NaN none
    policy(1) multiple(2) pad_left(2) pad_right(2) pad_top(2) pad_bottom(2)
    shape_len(2) shape(shape_len)          # the model's ``shape``, see encode_shape
    num_strings(1) [length(4) bytes(length)] x num_strings
    crc32(4)                               # of every byte before it

:func:`unpack` checks every field before anything is allocated from it and
raises :class:`~dcae.FormatError` with a message naming the field; the model
identifier (``digest``) is compared with the decoding model's
:func:`model_fingerprint` by :func:`dcae.decode`.  Since version 5 the
header's fields that decide decoding (:meth:`Bitstream.associated_data`) are
bound into the checks of DCAE's ``y`` strings, so a rewritten header (with a
recomputed CRC) does not decode.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .errors import FormatError

if TYPE_CHECKING:  # torch is imported where used: the CLI's parsers read this module
    import torch
    from torch import nn

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FLAG_PORTABLE",
    "FLAG_GRID_MASK",
    "FORMAT_VERSION",
    "HYPER_STRIDE",
    "LATENT_STRIDE",
    "MAGIC",
    "MAX_MULTIPLE",
    "MAX_SIDE",
    "MIN_CODED_SIDE",
    "MODEL_KINDS",
    "OFFICIAL_MULTIPLE",
    "READ_VERSIONS",
    "WRITE_VERSIONS",
    "PADDING_POLICIES",
    "Bitstream",
    "decode_shape",
    "encode_shape",
    "latent_shapes",
    "model_fingerprint",
    "pack",
    "policy_padding",
    "shape_budget",
    "shape_elements",
    "unpack",
]

#: flag bit: the strings were coded in DCAE's portable mode
FLAG_PORTABLE = 0x01
#: flag bits 1-5: the grid exponent of portable coding (0: 16, the first portable mode)
FLAG_GRID_MASK = 0x3E
_FLAG_GRID_SHIFT = 1
#: the grid exponent that flag bits 1-5 = 0 stand for (files of the first portable mode)
_FIRST_GRID_BITS = 16

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
MAX_SIDE = 65535
"""Largest width or height a file can record (16-bit fields)."""
DEFAULT_MAX_PIXELS = 1 << 25
"""Default bound on ``width * height`` accepted by :func:`unpack`: 2**25 pixels
(e.g. 8192 x 4096), which the ``small`` preset decodes in about 8 GB (peak RSS
3.8 GB at 4096 x 4096)."""
LATENT_STRIDE = 16
"""Spatial stride of DCAE's ``g_a``: ``y`` is ``ceil(H/16) x ceil(W/16)``."""
HYPER_STRIDE = 4
"""Stride of DCAE's hyper analysis: ``z`` is ``ceil(y_h/4) x ceil(y_w/4)``."""
OFFICIAL_MULTIPLE = 128
"""The official scripts pad images to a multiple of this (centred)."""
MIN_CODED_SIDE = 32
"""The ``minimal`` policy codes every side on at least this many pixels
(edge-replicated, the image centred): the transforms reconstruct the pixels
near an edge of the coded image poorly, so a 1-4 pixel image coded as it is
came back as garbage (format guide, "Padding policies")."""
MAX_MULTIPLE = 4096
"""Largest multiple the ``"multiple"`` padding policy can record."""
PADDING_POLICIES = ("minimal", "official", "multiple")
"""Padding policies by their code in the file (index = code)."""
MODEL_KINDS = ("dcae", "compressai", "class")
"""How the model name is to be read, by its code in the file (index = code):
a DCAE preset name, a CompressAI registry name, or ``module:Class``."""
DIGEST_SIZE = 32
MAX_NAME = 255
MAX_STRINGS = 255

# the model's ``shape`` structure (see encode_shape)
MAX_SHAPE_BYTES = 1024
MAX_SHAPE_DEPTH = 8
MAX_SHAPE_NODES = 256
MAX_SHAPE_ITEMS = 64
MAX_SHAPE_KEY = 32
MAX_SHAPE_INT = 0xFFFFFFFF
SHAPE_ELEMENTS_PER_PIXEL = 16
""":func:`shape_budget`: latent elements allowed per coded pixel."""
SHAPE_MIN_ELEMENTS = 1 << 16
""":func:`shape_budget` for tiny images."""

_FIXED = struct.Struct(">d HHBB BH HHHH")  # quality .. pad_bottom (after the digest)
_FIXED_V3 = struct.Struct(">B HHBB BH HHHH")  # version 3: a one-byte quality
_NONE, _INT, _TUPLE, _LIST, _DICT, _SIZE, _FLOAT = range(7)
_F64 = struct.Struct(">d")


def _centred(
    height: int, width: int, multiple: int, least: int = 1, most: Optional[int] = None
) -> Tuple[int, int, int, int]:
    def side(n: int) -> int:
        padded = (max(n, least) + multiple - 1) // multiple * multiple
        return padded if most is None else max(n, min(padded, most))

    new_h, new_w = side(height), side(width)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return (left, new_w - width - left, top, new_h - height - top)


def _check_multiple(policy: str, multiple: Any) -> int:
    if isinstance(multiple, bool) or not isinstance(multiple, int):
        raise ValueError(f"the {policy!r} policy needs an int multiple, got {multiple!r}")
    if not 1 <= multiple <= MAX_MULTIPLE:
        raise ValueError(f"padding multiple {multiple} is not in 1..{MAX_MULTIPLE}")
    return multiple


def policy_padding(
    policy: str, height: int, width: int, multiple: Optional[int] = None
) -> Tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding a policy applies to an image,
    always with the image centred (the odd column/row goes right/bottom).

    ``"minimal"`` pads to a multiple of ``multiple`` (the model's stride:
    default :data:`LATENT_STRIDE`, 16, for DCAE, whose latent is then
    ``ceil(H/16) x ceil(W/16)`` as without padding), each side at least
    :data:`MIN_CODED_SIDE` and at most :data:`MAX_SIDE` (a side of more than
    65520 pixels is padded to 65535 only: DCAE pads the rest inside its
    layers); ``"official"`` pads to a multiple of 128, as the
    official ``eval.py`` does; ``"multiple"`` pads to a multiple of
    ``multiple`` (a model's ``downsampling_factor``, as CompressAI's
    ``eval_model`` pads).  :func:`dcae.encode` fills the padding by edge
    replication.
    """
    if policy == "minimal":
        m = LATENT_STRIDE if multiple is None else _check_multiple(policy, multiple)
        return _centred(height, width, m, MIN_CODED_SIDE, MAX_SIDE)
    if policy == "official":
        return _centred(height, width, OFFICIAL_MULTIPLE)
    if policy == "multiple":
        return _centred(height, width, _check_multiple(policy, multiple))
    raise ValueError(f"unknown padding policy {policy!r}; choose one of {PADDING_POLICIES}")


def policy_multiple(policy: str, multiple: Optional[int] = None) -> int:
    """The multiple a policy pads to (``minimal``: ``multiple``, default 16;
    ``official``: 128; ``multiple``: ``multiple``)."""
    if policy == "minimal" and multiple is None:
        return LATENT_STRIDE
    if policy == "official":
        return OFFICIAL_MULTIPLE
    policy_padding(policy, 1, 1, multiple)  # checks policy and multiple
    return int(multiple)  # type: ignore[arg-type]


def latent_shapes(height: int, width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Shapes of DCAE's ``y`` and ``z`` for a coded (padded) image of ``height x width``."""
    y = (math.ceil(height / LATENT_STRIDE), math.ceil(width / LATENT_STRIDE))
    z = (math.ceil(y[0] / HYPER_STRIDE), math.ceil(y[1] / HYPER_STRIDE))
    return y, z


# ----------------------------------------------------------------------------- shape
def _put_uint(out: bytearray, v: int) -> None:
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def encode_shape(shape: Any) -> bytes:
    """Serialise a model's ``shape`` (what its ``compress`` returns) compactly.

    Accepted values: non-negative ints (< 2**32), finite floats, ``None``,
    and tuples, lists, ``torch.Size`` and dicts with short printable-ASCII
    string keys of them.  Each value is a one-byte tag (0 None, 1 int,
    2 tuple, 3 list, 4 dict, 5 ``torch.Size``, 6 float) followed by an
    unsigned LEB128 int, an IEEE float64 (big-endian, exact), or an item count
    (one byte) and the items (dict items as key length (one byte), key,
    value).

    Raises:
        ValueError: a value of another type, or limits exceeded (depth 8,
            256 values, 64 items per container, 1024 bytes).
    """
    out = bytearray()
    nodes = [0]

    def put(v: Any, depth: int) -> None:
        nodes[0] += 1
        if depth > MAX_SHAPE_DEPTH or nodes[0] > MAX_SHAPE_NODES:
            raise ValueError(
                f"shape is too deep or too large for a .dcae file (at most depth "
                f"{MAX_SHAPE_DEPTH} and {MAX_SHAPE_NODES} values)"
            )
        if v is None:
            out.append(_NONE)
        elif isinstance(v, int) and not isinstance(v, bool):
            if not 0 <= v <= MAX_SHAPE_INT:
                raise ValueError(f"shape value {v} is not in 0..{MAX_SHAPE_INT}")
            out.append(_INT)
            _put_uint(out, v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"shape value {v} is not finite")
            out.append(_FLOAT)
            out.extend(_F64.pack(v))
        elif isinstance(v, (tuple, list, dict)):
            if len(v) > MAX_SHAPE_ITEMS:
                raise ValueError(
                    f"a shape container has {len(v)} items (at most {MAX_SHAPE_ITEMS})"
                )
            if isinstance(v, dict):
                out.extend((_DICT, len(v)))
                for k, item in v.items():
                    if not isinstance(k, str) or not _valid_key(k):
                        raise ValueError(
                            f"shape dict key {k!r} is not a string of 1..{MAX_SHAPE_KEY} "
                            "printable ASCII characters"
                        )
                    out.append(len(k))
                    out.extend(k.encode("ascii"))
                    put(item, depth + 1)
            else:
                tag = _SIZE if _is_size(v) else _LIST if isinstance(v, list) else _TUPLE
                out.extend((tag, len(v)))
                for item in v:
                    put(item, depth + 1)
        else:
            raise ValueError(
                f"shape holds a {type(v).__name__} ({v!r:.40}); a .dcae file stores shapes "
                "made of ints, floats, None, tuples, lists, torch.Size and dicts"
            )

    put(shape, 1)
    if len(out) > MAX_SHAPE_BYTES:
        raise ValueError(f"shape takes {len(out)} bytes (at most {MAX_SHAPE_BYTES})")
    return bytes(out)


def _valid_key(k: str) -> bool:
    return 1 <= len(k) <= MAX_SHAPE_KEY and all(32 <= ord(c) < 127 for c in k)


def decode_shape(data: bytes) -> Any:
    """Inverse of :func:`encode_shape`; refuses anything it would not write.

    Raises:
        FormatError: truncated or trailing bytes, unknown tags, non-canonical
            ints, duplicate or bad keys, limits exceeded.
    """
    if len(data) > MAX_SHAPE_BYTES:
        raise FormatError(f"shape field of {len(data)} bytes exceeds {MAX_SHAPE_BYTES}")
    pos = 0
    nodes = 0

    def byte(what: str) -> int:
        nonlocal pos
        if pos >= len(data):
            raise FormatError(f"shape field is truncated ({what} at byte {pos})")
        pos += 1
        return data[pos - 1]

    def get(depth: int) -> Any:
        nonlocal pos, nodes
        nodes += 1
        if depth > MAX_SHAPE_DEPTH or nodes > MAX_SHAPE_NODES:
            raise FormatError(
                f"shape field nests deeper than {MAX_SHAPE_DEPTH} or holds more than "
                f"{MAX_SHAPE_NODES} values"
            )
        tag = byte("tag")
        if tag == _NONE:
            return None
        if tag == _INT:
            value, shift = 0, 0
            while True:
                b = byte("int")
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    if b == 0 and shift > 7:
                        raise FormatError("shape field has a non-canonical int")
                    break
                if shift >= 35:
                    raise FormatError("shape field has an int longer than 5 bytes")
            if value > MAX_SHAPE_INT:
                raise FormatError(f"shape value {value} exceeds {MAX_SHAPE_INT}")
            return value
        if tag == _FLOAT:
            raw = data[pos : pos + _F64.size]
            if len(raw) != _F64.size:
                raise FormatError("shape field is truncated (float)")
            pos += _F64.size
            (number,) = _F64.unpack(raw)
            if not math.isfinite(number):
                raise FormatError("shape field has a float that is not finite")
            return number
        if tag not in (_TUPLE, _LIST, _DICT, _SIZE):
            raise FormatError(f"shape field has an unknown tag {tag} at byte {pos - 1}")
        count = byte("item count")
        if count > MAX_SHAPE_ITEMS:
            raise FormatError(
                f"a shape container declares {count} items (at most {MAX_SHAPE_ITEMS})"
            )
        if tag == _DICT:
            out: Dict[str, Any] = {}
            for _ in range(count):
                n = byte("key length")
                raw = data[pos : pos + n]
                if len(raw) != n:
                    raise FormatError("shape field is truncated (dict key)")
                pos += n
                key = raw.decode("latin-1")
                if not _valid_key(key) or key in out:
                    raise FormatError(f"shape field has a bad or repeated dict key {key!r}")
                out[key] = get(depth + 1)
            return out
        items: List[Any] = [get(depth + 1) for _ in range(count)]
        if tag == _LIST:
            return items
        if tag == _SIZE:
            if any(not isinstance(v, int) for v in items):
                raise FormatError("shape field has a torch.Size of non-ints")
            import torch

            return torch.Size(items)
        return tuple(items)

    shape = get(1)
    if pos != len(data):
        raise FormatError(f"shape field has {len(data) - pos} bytes after its value")
    return shape


def shape_elements(shape: Any) -> int:
    """Elements a shape describes: the product of every sequence of ints plus
    every int outside one (what a decoder may allocate from it, per channel)."""
    limit = 1 << 64  # stop multiplying past any budget

    def walk(v: Any) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, dict):
            return min(limit, sum(walk(x) for x in v.values()))
        if isinstance(v, (tuple, list)):
            if v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                p = 1
                for x in v:
                    p = min(limit, p * x)
                return p
            return min(limit, sum(walk(x) for x in v))
        return 0

    return walk(shape)


def shape_budget(coded_height: int, coded_width: int) -> int:
    """Most elements (:func:`shape_elements`) a file's shape may describe for a
    coded image of ``coded_height x coded_width`` pixels: 16 per pixel, at
    least 65536.  Any CompressAI model's shapes stay far below (a latent of
    ``M`` channels at stride 16 has ``M/256`` elements per pixel)."""
    return max(SHAPE_MIN_ELEMENTS, SHAPE_ELEMENTS_PER_PIXEL * coded_height * coded_width)


def _is_size(v: Any) -> bool:
    """``isinstance(v, torch.Size)`` without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Size)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    import torch

    from .nn import host

    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = host.to_host(t)  # a model on an accelerator: one copy per tensor
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def model_fingerprint(model: nn.Module) -> bytes:
    """SHA-256 identifying a model's weights, CDF tables and configuration.

    Hashes the configuration (without its informational ``name``) and every
    state-dict entry in key order (key, dtype, shape, little-endian bytes).
    The digest is computed from the tensors on every call, never cached, so
    it follows every change however it is made (an optimiser step,
    ``load_state_dict``, ``update()``, in-place writes through ``.data`` as
    EMA code does, tensors made under ``torch.inference_mode()``).  It costs
    a pass over the weights at about 1.5 GB/s: about 13 ms for the ``small``
    preset (18 MB) and 0.3 s for ``paper`` (478 MB), once per
    :func:`dcae.encode` or :func:`dcae.decode`.
    """
    h = hashlib.sha256(b"dcae-fingerprint-v1\0")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = {k: v for k, v in config.to_dict().items() if k != "name"}
        h.update(json.dumps(cfg, sort_keys=True).encode())
    for k, v in model.state_dict().items():
        h.update(f"\0{k}\0{v.dtype}\0{tuple(v.shape)}\0".encode())
        h.update(_tensor_bytes(v))
    return h.digest()


@dataclass(frozen=True)
class Bitstream:
    """The content of one ``.dcae`` file.

    Args:
        model_kind: how ``model_name`` reads: ``"dcae"`` (a DCAE preset name),
            ``"compressai"`` (a CompressAI registry name) or ``"class"``
            (``module:Class`` of a user's model).
        model_name: name of the writing model (informational: the digest decides).
        model_digest: :func:`model_fingerprint` of the writing model (32 bytes).
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
        portable: the strings were coded in DCAE's portable mode
            (``compress(..., portable=True)``); flag bit 0.
        grid_bits: for portable streams, the grid exponent they were coded
            with (``compress(..., grid_bits=)``; flag bits 1-5, where 0 stands
            for 16, the grid of the first portable streams); ``None`` otherwise.
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
    portable: bool = False
    grid_bits: Optional[int] = None
    version: int = FORMAT_VERSION

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
        if self.grid_bits is None:
            return 0
        grid = 0 if self.grid_bits == _FIRST_GRID_BITS else self.grid_bits
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
        if self.portable and self.model_kind != "dcae":
            raise FormatError("portable coding is a DCAE mode; the model is not DCAE")
        if self.portable != (self.grid_bits is not None):
            raise FormatError(
                "a portable stream records its grid_bits, and only a portable stream does"
            )
        if self.grid_bits is not None and (
            isinstance(self.grid_bits, bool)
            or not isinstance(self.grid_bits, int)
            or not 1 <= self.grid_bits <= FLAG_GRID_MASK >> _FLAG_GRID_SHIFT
        ):
            raise FormatError(f"grid_bits must be an int in [1, 31], got {self.grid_bits!r}")
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
        portable=bool(flags & FLAG_PORTABLE),
        grid_bits=(
            (flags & FLAG_GRID_MASK) >> _FLAG_GRID_SHIFT or _FIRST_GRID_BITS
            if flags & FLAG_PORTABLE
            else None
        ),
        version=version,
    )
    stream.validate(max_pixels=max_pixels)
    return stream
