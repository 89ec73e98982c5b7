"""The .dcae format: layout, every validation, padding policies, model fingerprints."""

from __future__ import annotations

import copy
import dataclasses
import struct
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dcae
from dcae.bitstream import (
    DEFAULT_MAX_PIXELS,
    FORMAT_VERSION,
    MAGIC,
    OFFICIAL_MULTIPLE,
    Bitstream,
    latent_shapes,
    model_fingerprint,
    pack,
    policy_padding,
    unpack,
)
from dcae.errors import DCAEError, FormatError, ModelMismatchError
from dcae.pretrained import load_checkpoint, save_checkpoint


def make_stream(height: int = 21, width: int = 37, policy: str = "minimal", **changes):
    pad = policy_padding(policy, height, width)
    y, z = latent_shapes(height + pad[2] + pad[3], width + pad[0] + pad[1])
    fields = dict(
        model_name="small",
        model_digest=bytes(range(32)),
        quality=0,
        width=width,
        height=height,
        channels=3,
        bit_depth=8,
        padding_policy=policy,
        padding=pad,
        y_shape=y,
        hyper_shape=z,
        checksums=(1, 2, 0xFFFFFFFF),
        strings=(b"y-string", b"zz"),
    )
    fields.update(changes)
    return Bitstream(**fields)


def raw_pack(
    s: Bitstream, *, version=FORMAT_VERSION, flags=0, policy_code=None, num_strings=None
) -> bytes:
    """Pack following docs/guides/format.rst byte by byte, without validation
    (so that invalid fields can be written with a correct CRC)."""
    name = s.model_name.encode("latin-1")
    code = ("minimal", "official").index(s.padding_policy) if policy_code is None else policy_code
    out = MAGIC + bytes([version, flags, len(name)]) + name + s.model_digest
    out += struct.pack(">BHHBBB", s.quality, s.width, s.height, s.channels, s.bit_depth, code)
    out += struct.pack(">4H", *s.padding) + struct.pack(">2H2H", *s.y_shape, *s.hyper_shape)
    out += struct.pack(f">B{len(s.checksums)}I", len(s.checksums), *s.checksums)
    strings = s.strings if num_strings is None else s.strings[:num_strings]
    out += bytes([len(strings)])
    for string in strings:
        out += struct.pack(">I", len(string)) + string
    return out + struct.pack(">I", zlib.crc32(out))


def reseal(data: bytes) -> bytes:
    """Recompute the final CRC32 so that only the field checks can object."""
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


# ---------------------------------------------------------------------------- layout
def test_layout_matches_documentation():
    s = make_stream()
    data = pack(s)
    assert data == raw_pack(s)
    assert data[:9] == b"\x89DCAE\r\n\x1a\n"
    assert data[9] == 2 and data[10] == 0 and data[11] == len("small")
    header = 9 + 3 + 5 + 32 + 24 + 1 + 4 * 3 + 1
    assert len(data) == header + (4 + 8) + (4 + 2) + 4
    assert s.payload_bytes == 10
    assert unpack(data) == s


sides = st.integers(1, 3000)


@settings(max_examples=60, deadline=None)
@given(
    h=sides,
    w=sides,
    policy=st.sampled_from(["minimal", "official"]),
    channels=st.sampled_from([1, 3]),
    quality=st.integers(0, 255),
    name=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=64),
    checksums=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
    strings=st.tuples(st.binary(max_size=64), st.binary(max_size=64)),
)
def test_pack_unpack_round_trip(h, w, policy, channels, quality, name, checksums, strings):
    s = make_stream(
        h,
        w,
        policy,
        channels=channels,
        quality=quality,
        model_name=name,
        checksums=tuple(checksums),
        strings=strings,
    )
    assert unpack(pack(s)) == s


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000))
def test_official_padding_is_centred_to_multiple(h, w):
    left, right, top, bottom = policy_padding("official", h, w)
    assert (w + left + right) % OFFICIAL_MULTIPLE == 0
    assert (h + top + bottom) % OFFICIAL_MULTIPLE == 0
    assert 0 <= left <= right <= left + 1 < OFFICIAL_MULTIPLE + 1
    assert 0 <= top <= bottom <= top + 1
    assert w + left + right < w + OFFICIAL_MULTIPLE
    assert policy_padding("minimal", h, w) == (0, 0, 0, 0)


def test_unknown_policy():
    with pytest.raises(ValueError, match="padding policy"):
        policy_padding("reflect", 4, 4)


# ---------------------------------------------------------------------------- errors
GOOD = pack(make_stream())


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "wrong magic"),
        (b"PNG\r\n" + GOOD[5:], "wrong magic"),
        (b"\x89DCAE\r\n\x1a\r" + GOOD[9:], "wrong magic"),
        (GOOD + b"\x00", "trailing garbage"),
        (GOOD + GOOD, "trailing garbage"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "CRC32 mismatch"),
        (GOOD[:60] + bytes([GOOD[60] ^ 0x80]) + GOOD[61:], "CRC32 mismatch"),
    ],
)
def test_rejects_corrupt_files(data, message):
    with pytest.raises(FormatError, match=message):
        unpack(data)


def test_every_truncation_is_rejected():
    for n in range(len(GOOD)):
        with pytest.raises(FormatError, match="magic|truncated|remain"):
            unpack(GOOD[:n])


def test_unsupported_version_and_flags():
    s = make_stream()
    with pytest.raises(FormatError, match="unsupported .dcae format version 3"):
        unpack(raw_pack(s, version=3))
    with pytest.raises(FormatError, match="format version 1 .*re-encode"):
        unpack(raw_pack(s, version=1))
    with pytest.raises(FormatError, match="flags"):
        unpack(raw_pack(s, flags=4))


def test_length_past_end():
    s = make_stream()
    data = bytearray(raw_pack(s))
    y_len_at = len(data) - 4 - (4 + 2) - (4 + 8)
    assert struct.unpack(">I", data[y_len_at : y_len_at + 4]) == (8,)
    data[y_len_at : y_len_at + 4] = struct.pack(">I", 0xFFFFFFF0)
    with pytest.raises(FormatError, match=r"string 0 \(y\) declares 4294967280 bytes"):
        unpack(reseal(bytes(data)))


@pytest.mark.parametrize(
    "changes, pack_kwargs, message",
    [
        (dict(width=0), {}, "width 0"),
        (dict(height=0), {}, "height 0"),
        (dict(channels=4), {}, "channel count 4"),
        (dict(channels=0), {}, "channel count 0"),
        (dict(bit_depth=16), {}, "bit depth 16"),
        (dict(y_shape=(3, 2)), {}, "latent shape"),
        (dict(y_shape=(60000, 60000)), {}, "latent shape"),
        (dict(hyper_shape=(9, 9)), {}, "hyper-latent shape"),
        (dict(padding=(0, 0, 0, 128)), {}, "padding"),
        (dict(checksums=()), {}, "slice count 0"),
        (dict(model_name="sm\x07ll"), {}, "model name"),
        (dict(), dict(policy_code=7), "padding policy code 7"),
        (dict(), dict(num_strings=1), "expected 2 strings"),
    ],
)
def test_rejects_bad_fields_with_valid_crc(changes, pack_kwargs, message):
    s = dataclasses.replace(make_stream(), **changes)
    with pytest.raises(FormatError, match=message):
        unpack(raw_pack(s, **pack_kwargs))


def test_official_padding_must_match_policy():
    s = make_stream(policy="official")
    bad = dataclasses.replace(s, padding=(s.padding[1], s.padding[0]) + s.padding[2:])
    with pytest.raises(FormatError, match="does not match the 'official' policy"):
        unpack(raw_pack(bad))


def test_absurd_sizes_are_bounded():
    big = make_stream(65535, 65535)
    with pytest.raises(FormatError, match="exceeds max_pixels"):
        unpack(pack(big))
    assert big.width * big.height > DEFAULT_MAX_PIXELS
    assert unpack(pack(big), max_pixels=None).width == 65535
    with pytest.raises(FormatError, match="padded size"):
        pack(make_stream(65535, 65535, "official"))


def test_unpack_rejects_non_bytes():
    with pytest.raises(TypeError):
        unpack("not bytes")  # type: ignore[arg-type]


def test_errors_are_dcae_errors():
    assert issubclass(FormatError, DCAEError) and issubclass(ModelMismatchError, DCAEError)


# ---------------------------------------------------------------------------- fingerprints
def test_fingerprint_survives_checkpoint_round_trip(small_model, tmp_path):
    save_checkpoint(small_model, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert model_fingerprint(loaded) == model_fingerprint(small_model)
    assert len(model_fingerprint(small_model)) == 32


def test_fingerprint_follows_weight_changes(small_model):
    model = copy.deepcopy(small_model)
    before = model_fingerprint(model)
    assert model_fingerprint(model) == before  # cached
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    after = model_fingerprint(model)
    assert after != before
    model.load_state_dict(small_model.state_dict())
    assert model_fingerprint(model) == before


def test_fingerprint_distinguishes_models(small_model):
    torch.manual_seed(1)
    other = dcae.DCAEModel("small").eval()
    other.update(force=True)
    assert model_fingerprint(other) != model_fingerprint(small_model)
