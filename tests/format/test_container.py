"""The .dcae format: layout, every validation, padding policies, shapes, model fingerprints."""

from __future__ import annotations

import copy
import dataclasses
import struct
import zlib

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from streams import make_stream

import dcae
from dcae.errors import DCAEError, FormatError, ModelMismatchError
from dcae.format.container import FORMAT_VERSION, MAGIC, Bitstream, pack, unpack
from dcae.format.fingerprint import model_fingerprint
from dcae.format.limits import DEFAULT_MAX_PIXELS, MAX_SIDE
from dcae.format.padding import MIN_CODED_SIDE, OFFICIAL_MULTIPLE, policy_padding
from dcae.format.shape import (
    decode_shape,
    encode_shape,
    latent_shapes,
    shape_budget,
    shape_elements,
)
from dcae.latent_codecs.coding_mode import PORTABLE
from dcae.zoo.checkpoints import save_checkpoint
from dcae.zoo.loading import load_checkpoint


def raw_shape(v) -> bytes:
    """The shape field as docs/guides/format.rst describes it, written independently."""

    def uint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
            n >>= 7
            if not n:
                return bytes(out)

    if v is None:
        return b"\x00"
    if isinstance(v, float):
        return b"\x06" + struct.pack(">d", v)
    if isinstance(v, int):
        return b"\x01" + uint(v)
    if isinstance(v, dict):
        items = b"".join(bytes([len(k)]) + k.encode() + raw_shape(x) for k, x in v.items())
        return bytes([4, len(v)]) + items
    tag = 5 if isinstance(v, torch.Size) else 3 if isinstance(v, list) else 2
    return bytes([tag, len(v)]) + b"".join(raw_shape(x) for x in v)


def raw_pack(
    s: Bitstream,
    *,
    version=FORMAT_VERSION,
    flags=0,
    kind_code=None,
    policy_code=None,
    shape_bytes=None,
    num_strings=None,
    v3_quality=0,
) -> bytes:
    """Pack following docs/guides/format.rst byte by byte, without validation
    (so that invalid fields can be written with a correct CRC)."""
    name = s.model_name.encode("latin-1")
    kind = ("dcae", "compressai", "class").index(s.model_kind) if kind_code is None else kind_code
    code = ("minimal", "official", "multiple").index(s.padding_policy)
    code = code if policy_code is None else policy_code
    out = MAGIC + bytes([version, flags, kind, len(name)]) + name + s.model_digest
    if version >= 4:
        quality = float("nan") if s.quality is None else s.quality
        out += struct.pack(">dHHBB", quality, s.width, s.height, s.channels, s.bit_depth)
    else:  # version 3: a one-byte index of an earlier dcae's shipped model
        out += struct.pack(">BHHBB", v3_quality, s.width, s.height, s.channels, s.bit_depth)
    out += struct.pack(">BH4H", code, s.pad_multiple, *s.padding)
    shape = raw_shape(s.shape) if shape_bytes is None else shape_bytes
    out += struct.pack(">H", len(shape)) + shape
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
    assert data[9] == 5 == FORMAT_VERSION and data[10] == 0
    assert data[11] == 0 and data[12] == len("small")  # kind dcae, name length
    shape = raw_shape(s.shape)
    assert encode_shape(s.shape) == shape and len(shape) == 36
    header = 9 + 4 + 5 + 32 + 14 + 11 + 2 + len(shape) + 1
    assert len(data) == header + (4 + 8) + (4 + 2) + 4
    assert s.payload_bytes == 10
    assert unpack(data) == s


def test_user_codec_stream_round_trip():
    s = make_stream(
        21,
        37,
        "multiple",
        16,
        model_kind="class",
        model_name="my_codecs.nets:Codec.Inner",
        shape=torch.Size([2, 3]),
        strings=(b"a", b"", b"ccc"),
    )
    assert s.padding == (5, 6, 5, 6) and s.coded_size == (32, 48)
    back = unpack(pack(s))
    assert back == s and isinstance(back.shape, torch.Size)
    assert "class 'my_codecs.nets:Codec.Inner'" in back.describe_model()


sides = st.integers(1, 3000)
ints = st.integers(0, 300)
shapes = st.recursive(
    st.none() | ints | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.lists(ints, max_size=4).map(torch.Size)
        | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    h=sides,
    w=sides,
    policy=st.sampled_from(["minimal", "official", "multiple"]),
    multiple=st.integers(1, 256),
    channels=st.sampled_from([1, 3]),
    quality=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    kind=st.sampled_from(["dcae", "compressai"]),
    name=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=255),
    shape=shapes,
    strings=st.lists(st.binary(max_size=64), min_size=1, max_size=5).map(tuple),
)
def test_pack_unpack_round_trip(
    h, w, policy, multiple, channels, quality, kind, name, shape, strings
):
    s = make_stream(
        h,
        w,
        policy,
        multiple,
        channels=channels,
        quality=quality,
        model_kind=kind,
        model_name=name,
        shape=shape,
        strings=strings,
    )
    coded_h, coded_w = s.coded_size
    assume(shape_elements(shape) <= shape_budget(coded_h, coded_w))
    data = pack(s)
    assert data == raw_pack(s)
    back = unpack(data)
    assert back == s
    assert type(back.shape) is type(shape) or shape is None


@settings(max_examples=200, deadline=None)
@given(shape=shapes)
def test_shape_codec_is_canonical(shape):
    data = encode_shape(shape)
    assert data == raw_shape(shape)
    back = decode_shape(data)
    assert back == shape and encode_shape(back) == data


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), multiple=st.integers(1, 4096))
def test_padding_is_centred_to_multiple(h, w, multiple):
    left, right, top, bottom = policy_padding("official", h, w)
    assert (w + left + right) % OFFICIAL_MULTIPLE == 0
    assert (h + top + bottom) % OFFICIAL_MULTIPLE == 0
    assert 0 <= left <= right <= left + 1 < OFFICIAL_MULTIPLE + 1
    assert 0 <= top <= bottom <= top + 1
    assert w + left + right < w + OFFICIAL_MULTIPLE
    assert policy_padding("multiple", h, w, OFFICIAL_MULTIPLE) == (left, right, top, bottom)
    left, right, top, bottom = policy_padding("multiple", h, w, multiple)
    assert (w + left + right) % multiple == 0 and (h + top + bottom) % multiple == 0
    assert 0 <= left <= right <= left + 1 and 0 <= top <= bottom <= top + 1


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 65535), w=st.integers(1, 65535), multiple=st.integers(1, 256))
def test_minimal_padding_is_the_least_that_codes_well(h, w, multiple):
    """Centred, to a multiple of the stride (16 for DCAE), each side at least
    MIN_CODED_SIDE, never past MAX_SIDE (#23)."""
    for m, pad in ((16, policy_padding("minimal", h, w)), (multiple, None)):
        pad = policy_padding("minimal", h, w, m) if pad is None else pad
        left, right, top, bottom = pad
        for n, a, b in ((w, left, right), (h, top, bottom)):
            coded = n + a + b
            assert 0 <= a <= b <= a + 1
            if coded == MAX_SIDE and n > MAX_SIDE - m:
                continue  # capped: the model pads the rest itself
            assert coded % m == 0 and coded >= MIN_CODED_SIDE
            assert coded < max(n, MIN_CODED_SIDE) + m
    if h >= 32 and w >= 32 and h % 16 == 0 and w % 16 == 0:
        assert policy_padding("minimal", h, w) == (0, 0, 0, 0)
    assert policy_padding("minimal", 1, 1) == (15, 16, 15, 16)
    assert policy_padding("minimal", 300, 1) == (15, 16, 2, 2)
    assert policy_padding("minimal", 1, 65535) == (0, 0, 15, 16)


def test_padding_like_compressai_eval_model():
    from compressai.ops import compute_padding

    for h, w in [(1, 1), (37, 53), (64, 65), (512, 768), (1000, 333)]:
        pad, _ = compute_padding(h, w, min_div=64)
        assert policy_padding("multiple", h, w, 64) == pad


def test_unknown_policy_and_bad_multiple():
    with pytest.raises(ValueError, match="padding policy"):
        policy_padding("reflect", 4, 4)
    for bad in (None, 0, 4097, True):
        with pytest.raises(ValueError, match="multiple"):
            policy_padding("multiple", 4, 4, bad)


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


def test_quality_is_recorded_exactly():
    y, z = latent_shapes(21, 37)
    q = 2.0 / 3.0  # not a short decimal: stored as the exact float64
    s = make_stream(quality=q, shape={"y": (96, *y), "hyper": z, "image": (21, 37), "quality": q})
    data = pack(s)
    assert data == raw_pack(s)
    back = unpack(data)
    assert back.quality == q and back.shape["quality"] == q
    with pytest.raises(FormatError, match="differs from the shape"):
        pack(dataclasses.replace(s, quality=0.5))
    with pytest.raises(FormatError, match="finite"):
        pack(dataclasses.replace(s, quality=float("inf"), shape=make_stream().shape))
    nan_shape = raw_pack(s).replace(struct.pack(">d", q), struct.pack(">d", float("nan")))
    with pytest.raises(FormatError, match="shape.*finite|not finite"):
        unpack(reseal(nan_shape))


def legacy_stream(version: int, height: int = 21, width: int = 37) -> Bitstream:
    """A stream as versions 3 and 4 wrote it: ``minimal`` meant no padding."""
    s = make_stream(height, width)
    y, z = latent_shapes(height, width)
    shape = {"y": (96, *y), "hyper": z, "image": (height, width)}
    return dataclasses.replace(
        s, pad_multiple=1, padding=(0, 0, 0, 0), shape=shape, version=version
    )


def test_version_3_files_are_still_read():
    s = legacy_stream(3)
    back = unpack(raw_pack(s, version=3, v3_quality=3))
    assert back.quality is None  # an earlier dcae's shipped-model index means nothing now
    assert dataclasses.replace(back, quality=None) == s
    assert back.associated_data() is None  # their checks bind no header field


def test_version_4_files_are_still_read_with_their_minimal_policy():
    s = legacy_stream(4)
    assert unpack(pack(s)) == s and pack(s) == raw_pack(s, version=4)
    assert s.associated_data() is None
    # version 4's minimal policy is no padding; version 5's pads
    with pytest.raises(FormatError, match="multiple 16 does not match the 'minimal' policy"):
        unpack(raw_pack(dataclasses.replace(s, pad_multiple=16), version=4))
    with pytest.raises(FormatError, match="padding .* does not match the 'minimal' policy"):
        unpack(raw_pack(dataclasses.replace(s, version=5), version=5))
    with pytest.raises(FormatError, match="cannot write format version 3"):
        pack(dataclasses.replace(s, version=3))


def test_associated_data_covers_every_decoding_field():
    s = make_stream(quality=2.5)
    data = s.associated_data()
    assert data is not None and s.model_digest in data
    changes = [
        dict(quality=2.75),
        dict(quality=None),
        dict(width=36, padding=policy_padding("minimal", 21, 36)),
        dict(height=22, padding=policy_padding("minimal", 22, 37)),
        dict(channels=1),
        dict(model_digest=bytes(32)),
        dict(mode=PORTABLE),
        dict(policy="official"),
    ]
    for change in changes:
        if change.get("policy"):
            other = make_stream(policy="official", quality=2.5)
        else:
            other = dataclasses.replace(s, **change)
        assert other.associated_data() != data, change
    # the model name and the strings are not decoding fields
    assert dataclasses.replace(s, model_name="renamed").associated_data() == data


def test_unsupported_version_and_flags():
    s = make_stream()
    with pytest.raises(FormatError, match="unsupported .dcae format version 6"):
        unpack(raw_pack(s, version=6))
    with pytest.raises(FormatError, match="format version 1 .*re-encode"):
        unpack(raw_pack(s, version=1))
    with pytest.raises(FormatError, match="flags"):
        unpack(raw_pack(s, flags=4))


def v2_file() -> bytes:
    """A file of format version 2 (dcae 0.1.x), byte by byte as 0.1.x wrote it."""
    name = b"small"
    out = MAGIC + bytes([2, 0, len(name)]) + name + bytes(range(32))
    out += struct.pack(">BHHBBB", 0, 37, 21, 3, 8, 0) + struct.pack(">4H", 0, 0, 0, 0)
    out += struct.pack(">2H2H", 2, 3, 1, 1) + struct.pack(">B3I", 3, 1, 2, 3)
    out += bytes([2]) + struct.pack(">I", 8) + b"y-string" + struct.pack(">I", 2) + b"zz"
    return out + struct.pack(">I", zlib.crc32(out))


def test_version_2_files_are_refused_with_what_to_do():
    with pytest.raises(FormatError, match=r"format version 2 \(dcae 0\.1\.x.*re-encode.*0\.1\.x"):
        unpack(v2_file())
    with pytest.raises(FormatError, match="version 2"):
        dcae.decode(v2_file())


def test_length_past_end():
    s = make_stream()
    data = bytearray(raw_pack(s))
    y_len_at = len(data) - 4 - (4 + 2) - (4 + 8)
    assert struct.unpack(">I", data[y_len_at : y_len_at + 4]) == (8,)
    data[y_len_at : y_len_at + 4] = struct.pack(">I", 0xFFFFFFF0)
    with pytest.raises(FormatError, match=r"string 0 declares 4294967280 bytes"):
        unpack(reseal(bytes(data)))


@pytest.mark.parametrize(
    "changes, pack_kwargs, message",
    [
        (dict(width=0), {}, "width 0"),
        (dict(height=0), {}, "height 0"),
        (dict(channels=4), {}, "channel count 4"),
        (dict(channels=0), {}, "channel count 0"),
        (dict(bit_depth=16), {}, "bit depth 16"),
        (dict(padding=(0, 0, 0, 128)), {}, "padding"),
        (dict(pad_multiple=128), {}, "does not match the 'minimal' policy"),
        (dict(pad_multiple=0), {}, "multiple 0 is not in 1..4096"),
        (dict(model_name="sm\x07ll"), {}, "model name"),
        (dict(model_name=""), {}, "model name"),
        (dict(model_kind="class"), {}, "not module:Class"),
        (dict(), dict(kind_code=3), "model kind code 3"),
        (dict(), dict(policy_code=7), "padding policy code 7"),
        (dict(), dict(num_strings=0), "string count 0"),
        (dict(shape=(60000, 60000, 60000)), {}, "describes more than"),
        (dict(shape=[(2000,) * 2] * 40), {}, "describes more than"),
        (dict(shape=1 << 20), {}, "describes more than"),
    ],
)
def test_rejects_bad_fields_with_valid_crc(changes, pack_kwargs, message):
    s = dataclasses.replace(make_stream(), **changes)
    with pytest.raises(FormatError, match=message):
        unpack(raw_pack(s, **pack_kwargs))


@pytest.mark.parametrize(
    "shape_bytes, message",
    [
        (b"", "truncated"),
        (b"\x07", "unknown tag 7"),
        (b"\x01\x80", "truncated"),
        (b"\x01\x80\x00", "non-canonical"),
        (b"\x01\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
        (b"\x01\xff\xff\xff\xff\x1f", "exceeds"),
        (b"\x02\x02\x01\x01", "truncated"),
        (b"\x02\x41" + b"\x00" * 65, "declares 65 items"),
        (b"\x01\x01\x00", "after its value"),
        (b"\x03\x01" * 9 + b"\x00", "deeper"),
        (b"\x04\x02\x01y\x00\x01y\x00", "repeated dict key"),
        (b"\x04\x01\x00\x00", "bad or repeated dict key"),
        (b"\x04\x01\x01\x07\x00", "bad or repeated dict key"),
        (b"\x04\x01\x05ab", "truncated"),
        (b"\x05\x01\x00", "torch.Size of non-ints"),
        (b"\x00" * 1025, "exceeds 1024"),
    ],
)
def test_crafted_shape_fields_are_refused(shape_bytes, message):
    data = raw_pack(make_stream(), shape_bytes=shape_bytes)
    with pytest.raises(FormatError, match=message):
        unpack(data)


def test_shape_nodes_are_bounded():
    many = b"\x03\x40" + (b"\x03\x40" + b"\x00" * 64) * 4  # 1 + 4 * 65 values
    with pytest.raises(FormatError, match="more than 256 values"):
        decode_shape(many[: 2 + 4 * 66])
    with pytest.raises(ValueError, match="too deep or too large"):
        encode_shape([[None] * 64] * 4)


@pytest.mark.parametrize(
    "shape, message",
    [
        (float("nan"), "not finite"),
        (float("-inf"), "not finite"),
        (1 + 2j, "complex"),
        ((1, True), "bool"),
        ({"y": torch.zeros(2)}, "Tensor"),
        ({1: 2}, "key"),
        ({"": 2}, "key"),
        ((-1,), "not in 0"),
        (tuple(range(65)), "65 items"),
    ],
)
def test_encode_shape_refuses_what_it_cannot_store(shape, message):
    with pytest.raises(ValueError, match=message):
        encode_shape(shape)


def test_shape_budget_follows_the_image_size():
    assert shape_elements({"y": (320, 32, 48), "hyper": (8, 12), "image": (512, 768)}) == (
        320 * 32 * 48 + 8 * 12 + 512 * 768
    )
    assert shape_elements([None, 5, [(2, 3), 4]]) == 15
    assert shape_budget(1, 1) == 1 << 16
    assert shape_budget(512, 768) == 16 * 512 * 768
    big = make_stream(64, 64, shape=(320, 64, 64))  # 320 elements per pixel: refused
    with pytest.raises(FormatError, match="describes more than 65536 elements"):
        pack(big)


def test_multiple_policy_checks_its_padding():
    s = make_stream(21, 37, "multiple", 16)
    assert unpack(pack(s)) == s
    bad = dataclasses.replace(s, padding=(6, 5, 5, 6))
    with pytest.raises(FormatError, match="does not match the 'multiple' policy"):
        unpack(raw_pack(bad))
    with pytest.raises(FormatError, match="not in 1..4096"):
        unpack(raw_pack(dataclasses.replace(s, pad_multiple=0, padding=(0, 0, 0, 0))))


def test_official_padding_must_match_policy():
    s = make_stream(policy="official")
    bad = dataclasses.replace(s, padding=(s.padding[1], s.padding[0]) + s.padding[2:])
    with pytest.raises(FormatError, match="does not match the 'official' policy"):
        unpack(raw_pack(bad))


def test_absurd_sizes_are_bounded():
    big = make_stream(65535, 65535, shape=(3, 3))
    assert big.padding == (0, 0, 0, 0)  # minimal: no side beyond 65535
    with pytest.raises(FormatError, match="exceeds max_pixels"):
        unpack(pack(big))
    assert big.width * big.height > DEFAULT_MAX_PIXELS
    assert unpack(pack(big), max_pixels=None).width == 65535
    with pytest.raises(FormatError, match="padded size"):
        pack(make_stream(65535, 65535, "official", shape=(3, 3)))


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
    assert model_fingerprint(model) == before
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    after = model_fingerprint(model)
    assert after != before
    model.load_state_dict(small_model.state_dict())
    assert model_fingerprint(model) == before


@pytest.mark.parametrize(
    "write",
    [
        lambda m: m.g_s[0].weight.data.add_(1e-3),
        lambda m: next(m.parameters()).data.copy_(next(m.parameters()).data * 0.999),
        lambda m: m.latent_codec.hyper.h_s.scales[0].weight.data.mul_(1.001),
    ],
    ids=["data.add_", "data.copy_", "h_s data.mul_"],
)
def test_fingerprint_follows_writes_through_data(small_model, write):
    """In-place writes through ``.data`` (EMA code) bump no version counter;
    a file written before them must not decode with the changed model (#23)."""
    model = copy.deepcopy(small_model)
    data = dcae.encode(torch.rand(1, 3, 32, 32), model=model)
    before = model_fingerprint(model)
    write(model)
    assert model_fingerprint(model) != before
    with pytest.raises(ModelMismatchError, match="not by the given model"):
        dcae.decode(data, model=model)


def test_fingerprint_distinguishes_models(small_model):
    torch.manual_seed(1)
    other = dcae.DCAEModel("small").eval()
    other.update(force=True)
    assert model_fingerprint(other) != model_fingerprint(small_model)


def test_fingerprint_of_an_inference_mode_model(small_model):
    # tensors made under inference_mode have no version counter
    with torch.inference_mode():
        copy_ = dcae.DCAEModel(small_model.config).eval()
        copy_.load_state_dict(small_model.state_dict())
        assert model_fingerprint(copy_) == model_fingerprint(small_model)
        data = dcae.encode(torch.rand(1, 3, 24, 24), model=copy_)
    assert dcae.decode(data, model=small_model).size == (24, 24)
