"""The ``shape`` field of a ``.dcae`` file: what a model's ``compress``
returns beside its strings, serialised compactly (:func:`encode_shape`,
:func:`decode_shape`), bounded against the coded image (:func:`shape_budget`),
and for DCAE models checked against the coded size (:func:`check_dcae_shape`).
"""

from __future__ import annotations

import math
import struct
import sys
from typing import Any, Dict, List, Tuple

from ..errors import FormatError

__all__ = [
    "HYPER_STRIDE",
    "LATENT_STRIDE",
    "MAX_SHAPE_BYTES",
    "check_dcae_shape",
    "decode_shape",
    "encode_shape",
    "latent_shapes",
    "shape_budget",
    "shape_elements",
]

LATENT_STRIDE = 16
"""Spatial stride of DCAE's ``g_a``: ``y`` is ``ceil(H/16) x ceil(W/16)``."""
HYPER_STRIDE = 4
"""Stride of DCAE's hyper analysis: ``z`` is ``ceil(y_h/4) x ceil(y_w/4)``."""
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

_NONE, _INT, _TUPLE, _LIST, _DICT, _SIZE, _FLOAT = range(7)
_F64 = struct.Struct(">d")


def latent_shapes(height: int, width: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Shapes of DCAE's ``y`` and ``z`` for a coded (padded) image of ``height x width``."""
    y = (math.ceil(height / LATENT_STRIDE), math.ceil(width / LATENT_STRIDE))
    z = (math.ceil(y[0] / HYPER_STRIDE), math.ceil(y[1] / HYPER_STRIDE))
    return y, z


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


def check_dcae_shape(shape: Any, coded_size: Tuple[int, int]) -> None:
    """Check a DCAE model's ``shape`` against the coded (padded) image size
    ``(height, width)`` it follows from, before anything is decoded.

    Raises:
        FormatError: the shape does not fit a DCAE model coding that size.
    """
    ch, cw = coded_size
    (yh, yw), z = latent_shapes(ch, cw)
    ok = isinstance(shape, dict) and {"y", "hyper"} <= set(shape)
    if ok:
        y, hyper, image = shape["y"], shape["hyper"], shape.get("image", (ch, cw))
        ok = (
            isinstance(y, (tuple, list))
            and len(y) >= 2
            and tuple(y[-2:]) == (yh, yw)
            and isinstance(hyper, (tuple, list))
            and tuple(hyper) == z
            and isinstance(image, (tuple, list))
            and tuple(image) == (ch, cw)
        )
    if not ok:
        raise FormatError(
            f"shape {shape!r:.120} does not fit a DCAE model coding a {cw}x{ch} image "
            f"(latent {yh}x{yw}, hyper-latent {z[0]}x{z[1]})"
        )
