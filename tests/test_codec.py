"""dcae.encode / dcae.decode: sizes, modes, refusals, model selection, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import signal
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import dcae
from dcae import codec
from dcae.codec import decode, encode
from dcae.errors import DCAEError, DecodingError, FormatError, ModelMismatchError
from dcae.format.container import Bitstream, pack, unpack
from dcae.format.fingerprint import model_fingerprint
from dcae.format.images import UnsupportedImageError
from dcae.format.padding import policy_padding
from dcae.format.pixels import tensor_to_uint8
from dcae.latent_codecs.coding_mode import PORTABLE
from dcae.zoo import shipped as shipped_model
from dcae.zoo.resolve import resolve_model

FUZZ_TIME_LIMIT_S = 60  # a hang guard, far above the ~0.05 s a small decode takes


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail with TimeoutError if the body runs longer than ``seconds`` (hang guard)."""

    def handler(signum, frame):
        raise TimeoutError(f"decode did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def random_image(h: int, w: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    # smooth + noise so that the model sees image-like content
    base = rng.integers(0, 256, size=(max(1, h // 4), max(1, w // 4), 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 9, size=(h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert(mode)


# ---------------------------------------------------------------------------- round trips
SIZES = st.one_of(
    st.sampled_from([1, 2, 3, 5, 7, 13, 16, 17, 31, 37, 61, 64, 65, 67, 79]),
    st.integers(1, 80),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=SIZES,
    w=SIZES,
    mode=st.sampled_from(["RGB", "L", "P", "1", "YCbCr"]),
    policy=st.sampled_from(["minimal", "official"]),
)
def test_round_trip_any_size_and_mode(small_model, h, w, mode, policy):
    img = random_image(h, w, mode)
    data = encode(img, model=small_model, padding=policy)
    stream = unpack(data)
    assert (stream.width, stream.height) == (w, h)
    assert stream.channels == (1 if mode in ("L", "1") else 3)
    out = decode(data, model=small_model)
    assert out.size == (w, h)
    assert out.mode == ("L" if mode in ("L", "1") else "RGB")


@pytest.mark.parametrize("h, w", [(1, 1), (1, 97), (97, 1), (127, 129), (131, 61)])
def test_round_trip_edge_sizes(small_model, h, w):
    img = random_image(h, w)
    for policy in ("minimal", "official"):
        data = encode(img, model=small_model, padding=policy)
        assert decode(data, model=small_model).size == (w, h)


@pytest.mark.parametrize("h, w", [(1, 4096), (4096, 1), (3, 4095)])
def test_round_trip_long_thin_images(small_model, h, w):
    img = random_image(h, w)
    data = encode(img, model=small_model)
    # each side coded on at least 32 pixels (#23): a 1-pixel strip has 2 latent rows
    assert unpack(data).shape["y"][-2:] == (-(-max(h, 32) // 16), -(-max(w, 32) // 16))
    assert decode(data, model=small_model).size == (w, h)


@pytest.mark.slow
def test_round_trip_4096_square(small_model):
    img = random_image(4096, 4096)
    data = encode(img, model=small_model)
    assert decode(data, model=small_model).size == (4096, 4096)


def test_minimal_padding_never_codes_more_latent_than_official(small_model):
    img = random_image(70, 33)
    s_min = unpack(encode(img, model=small_model, padding="minimal"))
    s_off = unpack(encode(img, model=small_model, padding="official"))
    assert s_min.shape["y"][-2:] == (5, 3) and s_off.shape["y"][-2:] == (8, 8)
    assert s_min.shape["image"] == (80, 48) and s_off.shape["image"] == (128, 128)
    assert s_min.padding == (7, 8, 5, 5) and s_off.padding == (47, 48, 29, 29)


def test_grayscale_restored_as_luma(small_model):
    img = random_image(24, 40, "L")
    data = encode(img, model=small_model)
    out = decode(data, model=small_model)
    rgb = tensor_to_uint8(codec.decode_stream(unpack(data), small_model)).numpy()
    assert np.array_equal(np.asarray(out), np.asarray(Image.fromarray(rgb).convert("L")))
    # the original is gray: its reconstruction is close to it
    err = np.abs(np.asarray(out).astype(int) - np.asarray(img).astype(int))
    assert err.mean() < 128


def test_tensor_and_pil_inputs_give_the_same_file(small_model):
    img = random_image(19, 23)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    data = encode(img, model=small_model)
    assert encode(x, model=small_model) == data
    assert encode(x[None], model=small_model) == data
    gray = random_image(19, 23, "L")
    g = torch.from_numpy(np.array(gray)).float()[None] / 255
    assert encode(g, model=small_model) == encode(gray, model=small_model)
    assert unpack(encode(g[None], model=small_model)).channels == 1


def test_path_input(small_model, tmp_path):
    img = random_image(20, 30)
    img.save(tmp_path / "a.png")
    assert encode(tmp_path / "a.png", model=small_model) == encode(img, model=small_model)
    assert decode(encode(str(tmp_path / "a.png"), model=small_model), model=small_model)
    (tmp_path / "b.dcae").write_bytes(encode(img, model=small_model))
    assert decode(tmp_path / "b.dcae", model=small_model).size == (30, 20)


def test_palette_decodes_as_rgb(small_model):
    img = random_image(16, 16, "P")
    out = decode(encode(img, model=small_model), model=small_model)
    assert out.mode == "RGB"


# ---------------------------------------------------------------------------- refusals
def _with_transparency() -> Image.Image:
    img = random_image(8, 8, "P")
    img.info["transparency"] = 0
    return img


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: random_image(8, 8, "RGBA"), "alpha"),
        (lambda: random_image(8, 8, "LA"), "alpha"),
        (_with_transparency, "alpha"),
        (lambda: Image.new("I;16", (8, 8), 1000), "8 bits"),
        (lambda: Image.new("I", (8, 8), 70000), "8 bits"),
        (lambda: Image.new("F", (8, 8), 0.5), "8 bits"),
        (lambda: random_image(8, 8, "CMYK"), "not supported"),
        (lambda: torch.rand(3, 8, 8) * 2, r"\[0, 1\]"),
        (lambda: torch.full((3, 8, 8), float("nan")), r"\[0, 1\]"),
        (lambda: torch.rand(4, 8, 8), "expected a tensor"),
        (lambda: torch.rand(2, 3, 8, 8), "expected a tensor"),
        (lambda: torch.zeros(3, 8, 8, dtype=torch.uint8), r"float tensor.*uint8.*/ 255"),
        (lambda: torch.zeros(1, 3, 8, 8, dtype=torch.int64), "float tensor"),
        (lambda: torch.rand(3, 8, 8) * 255, r"0\.\.255\? divide by 255"),
        (lambda: torch.rand(8, 8, 3), "expected a tensor"),
        (lambda: torch.rand(1, 8, 8, 3), "permute"),
        (lambda: torch.rand(3, 0, 8), "size"),
    ],
)
def test_unsupported_inputs_are_refused(small_model, make, message):
    with pytest.raises(UnsupportedImageError, match=message):
        encode(make(), model=small_model)
    assert issubclass(UnsupportedImageError, DCAEError)


def test_unreadable_files(small_model, tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    with pytest.raises(UnsupportedImageError, match="cannot read image"):
        encode(tmp_path / "x.png", model=small_model)
    random_image(32, 32).save(tmp_path / "t.png")
    (tmp_path / "t2.png").write_bytes((tmp_path / "t.png").read_bytes()[:200])
    with pytest.raises(UnsupportedImageError, match="cannot read image"):
        encode(tmp_path / "t2.png", model=small_model)
    with pytest.raises(FileNotFoundError):
        encode(tmp_path / "missing.png", model=small_model)


def test_bad_arguments(small_model):
    with pytest.raises(ValueError, match="padding policy"):
        encode(random_image(4, 4), model=small_model, padding="reflect")
    with pytest.raises(ValueError, match="single rate"):
        encode(random_image(4, 4), model=small_model, quality=1)
    with pytest.raises(ValueError, match="at most one"):
        resolve_model(model=small_model, checkpoint="x.pt")
    with pytest.raises(TypeError):
        encode(12, model=small_model)  # type: ignore[arg-type]


def test_model_without_cdfs(small_model):
    torch.manual_seed(3)
    fresh = dcae.DCAEModel("small").eval()
    with pytest.raises(DCAEError, match="update"):
        encode(random_image(8, 8), model=fresh)


def test_training_mode_model_is_restored(small_model):
    model = copy.deepcopy(small_model).train()
    data = encode(random_image(8, 8), model=model)
    assert model.training
    assert data == encode(random_image(8, 8), model=small_model)


# ---------------------------------------------------------------------------- models
def _other_model():
    torch.manual_seed(7)
    m = dcae.DCAEModel("small").eval()
    m.update(force=True)
    return m


def test_wrong_model_is_refused(small_model):
    data = encode(random_image(12, 12), model=small_model)
    with pytest.raises(ModelMismatchError, match="'small'.*not by the given model"):
        decode(data, model=_other_model())


def test_the_shipped_model_is_matched_by_digest(small_model, monkeypatch):
    monkeypatch.setattr(shipped_model, "available_qualities", lambda: [1, 2])
    monkeypatch.setattr(shipped_model, "shared_model", lambda q=None: small_model)
    img = random_image(12, 12)
    data = encode(img)  # the shipped model when none is given
    assert model_fingerprint(small_model) == unpack(data).model_digest
    assert decode(data).size == (12, 12)
    foreign = encode(img, model=_fresh_model(11))
    with pytest.raises(ModelMismatchError, match="not the model shipped"):
        decode(foreign)


def _fresh_model(seed: int):
    torch.manual_seed(seed)
    m = dcae.DCAEModel("small").eval()
    m.update(force=True)
    return m


def test_no_shipped_weights(small_model, monkeypatch):
    monkeypatch.setattr(shipped_model, "available_qualities", lambda: [])
    with pytest.raises(DCAEError, match="ships no pretrained weights"):
        encode(random_image(4, 4))
    data = encode(random_image(4, 4), model=small_model)
    with pytest.raises(ModelMismatchError, match="ships no pretrained weights"):
        decode(data)


def test_max_pixels(small_model):
    data = encode(random_image(40, 50), model=small_model)
    with pytest.raises(FormatError, match="max_pixels"):
        decode(data, model=small_model, max_pixels=1999)
    assert decode(data, model=small_model, max_pixels=2000).size == (50, 40)


# ---------------------------------------------------------------------------- corruption
def reseal(data: bytes) -> bytes:
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


def test_strings_in_the_wrong_order_are_detected(small_model):
    stream = unpack(encode(random_image(30, 30), model=small_model))
    data = pack(dataclasses.replace(stream, strings=stream.strings[::-1]))
    with pytest.raises(DecodingError):
        decode(data, model=small_model)


def test_dcae_shape_must_fit_the_image(small_model):
    """A DCAE file's shape follows from its image size: any other is refused
    before decoding (here with a valid CRC)."""
    stream = unpack(encode(random_image(30, 30), model=small_model))
    y = stream.shape["y"]
    for shape in (
        {**stream.shape, "y": (*y[:-2], y[-2] + 1, y[-1])},
        {**stream.shape, "hyper": (2, 2)},
        {**stream.shape, "image": (16, 16)},
        {"y": y},
        (1, 2),
    ):
        data = pack(dataclasses.replace(stream, shape=shape))
        with pytest.raises(FormatError, match="does not fit a DCAE model"):
            decode(data, model=small_model)


def test_tampered_y_string_is_detected(small_model):
    stream = unpack(encode(random_image(48, 48), model=small_model))
    y = bytearray(stream.strings[0])
    y[len(y) // 2] ^= 0xFF
    data = pack(dataclasses.replace(stream, strings=(bytes(y), stream.strings[1])))
    with pytest.raises(DecodingError, match="slice"):
        decode(data, model=small_model)
    short = pack(dataclasses.replace(stream, strings=(b"", b"")))
    with pytest.raises(DecodingError):
        decode(short, model=small_model)


def _fuzz_bases(model):
    return [
        encode(random_image(13, 21, seed=1), model=model),
        encode(random_image(1, 1, "L", seed=2), model=model),
        encode(random_image(35, 18, seed=3), model=model, padding="official"),
    ]


@st.composite
def mutations(draw, n_bases: int):
    base = draw(st.integers(0, n_bases - 1))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                st.integers(0, 2000),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return base, ops, draw(st.booleans())


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, pos, value in ops:
        i = pos % (len(b) + 1)
        if op == "flip" and b:
            b[i % len(b)] ^= 1 << (value % 8)
        elif op == "set" and b:
            b[i % len(b)] = value
        elif op == "insert":
            b[i:i] = bytes([value]) * (1 + value % 3)
        elif op == "delete" and b:
            del b[i % len(b) : i % len(b) + 1 + value % 4]
        elif op == "truncate":
            del b[i:]
    return bytes(b)


def _check_decode(model, data: bytes) -> str:
    """Decode must raise a DCAEError or return an image of the recorded size."""
    with time_limit(FUZZ_TIME_LIMIT_S):
        try:
            img = decode(data, model=model)
        except DCAEError as e:
            return type(e).__name__
    stream = unpack(data)
    assert img.size == (stream.width, stream.height)
    assert img.mode == ("L" if stream.channels == 1 else "RGB")
    return "decoded"


def _fuzz(model, case, bases):
    base, ops, fix_crc = case
    data = _mutate(bases[base], ops)
    if fix_crc and len(data) >= 4:
        data = reseal(data)  # past the CRC: exercises the field checks and the decoder
    outcome = _check_decode(model, data)
    event(f"{'resealed' if fix_crc else 'raw'}: {outcome}")
    return outcome


@pytest.fixture(scope="module")
def fuzz_bases(small_model):
    return _fuzz_bases(small_model)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=mutations(3))
def test_fuzz_mutated_files(small_model, fuzz_bases, case):
    _fuzz(small_model, case, fuzz_bases)


@pytest.mark.slow
@settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=mutations(3))
def test_fuzz_mutated_files_long(small_model, fuzz_bases, case):
    _fuzz(small_model, case, fuzz_bases)


def test_fuzz_payload_bytes_under_valid_crc(small_model, fuzz_bases):
    """Every single-byte change of the strings of a small file, CRC recomputed:
    the symbol checksums must catch what the CRC no longer does."""
    outcomes = {}
    data = fuzz_bases[1]
    stream = unpack(data)
    start = len(data) - 4 - stream.payload_bytes - 8
    for i in range(start, len(data) - 4):
        mutated = bytearray(data)
        mutated[i] ^= 0x5A
        kind = _check_decode(small_model, reseal(bytes(mutated)))
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert set(outcomes) <= {"FormatError", "DecodingError", "decoded"}
    assert outcomes.get("DecodingError", 0) + outcomes.get("FormatError", 0) > 0


# ---------------------------------------------------------------------------- #23
@pytest.fixture(scope="module")
def shipped():
    if not shipped_model.available_qualities():
        pytest.skip("no shipped weights")
    return shipped_model.load_pretrained()


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return 10 * np.log10(255**2 / max(((x - y) ** 2).mean(), 1e-10))


@pytest.mark.parametrize("w, h", [(1, 1), (4, 4), (1, 300), (300, 1), (3, 41)])
def test_tiny_images_code_correctly(shipped, w, h):
    """Images with a side of 1-4 pixels came back as garbage (12 dB for a
    solid colour, (200, 100, 50) as (99, 99, 82)); the minimal policy now codes
    every side on at least 32 edge-replicated pixels, the image centred."""
    solid = Image.new("RGB", (w, h), (200, 100, 50))
    data = encode(solid, model=shipped, quality=4)
    stream = unpack(data)
    assert min(stream.coded_size) >= 32 and stream.padding_policy == "minimal"
    out = decode(data, model=shipped)
    assert out.size == (w, h)
    err = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(solid, dtype=np.int16))
    assert _psnr(out, solid) > 33 and err.max() <= 16, (_psnr(out, solid), err.max())


def test_sides_not_multiple_of_16_code_as_well_as_their_neighbours(shipped):
    """Zeros next to the image (what the layers pad with) cost 16 dB on a
    100x70 photo crop; edge replication to a multiple of 16 restores it."""
    rng = np.random.default_rng(3)
    base = rng.integers(60, 200, size=(9, 13, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((112, 80), Image.BICUBIC)
    crop = big.crop((0, 0, 100, 70))
    p_crop = _psnr(decode(encode(crop, model=shipped), model=shipped), crop)
    p_big = _psnr(decode(encode(big, model=shipped), model=shipped), big)
    assert p_crop > p_big - 2, (p_crop, p_big)


def test_a_rewritten_quality_is_refused(shipped):
    """The quality decides the inverse gains, not the symbols: a file whose
    quality is rewritten in the header and in the shape record, CRC
    recomputed, used to decode to another image; the strings' checks now
    bind it (#23)."""
    img = random_image(48, 64)
    data = encode(img, model=shipped, quality=4)
    old, new = struct.pack(">d", 4.0), struct.pack(">d", 3.0)
    assert data.count(old) == 2  # the header field and the shape's float
    forged = reseal(data.replace(old, new))
    stream = unpack(forged)
    assert stream.quality == 3.0 and stream.shape["quality"] == 3.0
    with pytest.raises(DecodingError, match="does not verify"):
        decode(forged, model=shipped)
    assert decode(data, model=shipped).size == (64, 48)


@pytest.mark.parametrize("field", ["width", "channels", "policy"])
def test_rewritten_decoding_fields_are_refused(shipped, field):
    """Every header field that decides decoding is bound into the checks: a
    consistent rewrite (another crop offset, grayscale output, ...) fails."""
    img = random_image(40, 100)
    stream = unpack(encode(img, model=shipped, padding="official"))
    if field == "width":  # 100 -> 101: same coded size, other crop
        changes = dict(width=101, padding=policy_padding("official", 40, 101))
    elif field == "channels":
        changes = dict(channels=1)
    else:  # the same padding under another policy: even a harmless rewrite fails
        changes = dict(padding_policy="multiple", pad_multiple=128)
    forged = pack(dataclasses.replace(stream, **changes))
    with pytest.raises(DecodingError, match="does not verify"):
        decode(forged, model=shipped)


def test_files_of_format_version_4_still_decode(small_model):
    """Version 4 files (no padding under 'minimal', checks without the
    header) decode as before."""
    x = torch.from_numpy(np.asarray(random_image(21, 37))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = small_model.compress(x, portable=True, grid_bits=6, associated_data=None)
        expected = small_model.decompress(
            out["strings"], out["shape"], portable=True, grid_bits=6, associated_data=None
        )["x_hat"]
    stream = Bitstream(
        model_kind="dcae", model_name="small", model_digest=model_fingerprint(small_model),
        quality=None, width=37, height=21, channels=3, bit_depth=8,
        padding_policy="minimal", pad_multiple=1, padding=(0, 0, 0, 0),
        shape=out["shape"], strings=tuple(s[0] for s in out["strings"]),
        mode=PORTABLE, version=4,
    )  # fmt: skip
    data = pack(stream)
    assert data[9] == 4
    decoded = np.asarray(decode(data, model=small_model))
    assert np.array_equal(decoded, tensor_to_uint8(expected).numpy())
    # the same strings under version 5 do not verify: their checks bind no header
    with pytest.raises(DecodingError):
        decode(pack(dataclasses.replace(stream, version=5, pad_multiple=16,
                                        padding=policy_padding("minimal", 21, 37),
                                        shape=dict(out["shape"], image=(32, 48)))),
               model=small_model)  # fmt: skip


def _rotated_jpeg(path, w: int = 64, h: int = 48):
    """A JPEG stored as ``w x h`` pixels with EXIF Orientation=6 (viewers
    rotate it 90 degrees clockwise: upright it is ``h x w``); the top row
    is red, the rest gray, so the rotation is visible."""
    arr = np.full((h, w, 3), 128, np.uint8)
    arr[:8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_on_reading(small_model, tmp_path):
    from dcae.eval.measure import read_image
    from dcae.format.images import open_image

    path = _rotated_jpeg(tmp_path / "rotated.jpg")
    with Image.open(path) as raw:
        assert raw.size == (64, 48)  # stored sideways
    with open_image(path) as img:
        assert img.size == (48, 64)
        arr = np.asarray(img)
    # Orientation=6: the stored top row is the upright image's right column
    assert arr[:, -4, 0].min() > 200 and arr[:, 4, 0].max() < 160
    out = decode(encode(path, model=small_model), model=small_model)
    assert out.size == (48, 64)
    big = _rotated_jpeg(tmp_path / "big.jpg", 240, 180)
    assert read_image(big).shape == (240, 180, 3)  # dcae eval reads it upright too


def test_one_8bit_quantisation_on_tensors_and_arrays():
    """dcae's one image <-> tensor conversion (dcae.format.pixels): the tensor
    and the NumPy forms of the 8-bit quantisation agree, half to even, and
    8-bit levels survive the round trip."""
    from dcae.format.pixels import from_8bit, rgb_to_tensor, to_8bit_levels, to_uint8_array

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 7, 9, generator=g) * 1.2 - 0.1
    x[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 3.5]) / 255  # ties: half to even
    assert np.array_equal(tensor_to_uint8(x).numpy(), to_uint8_array(x.numpy()))
    assert tensor_to_uint8(x)[0, :4, 0].tolist() == [0, 2, 2, 4]
    levels = torch.randint(0, 256, (9, 7, 3), generator=g, dtype=torch.uint8)
    back = rgb_to_tensor(levels.numpy())
    assert torch.equal(back, from_8bit(levels).permute(2, 0, 1)[None])
    assert torch.equal(to_8bit_levels(back), levels.permute(2, 0, 1)[None].float())
    assert torch.equal(tensor_to_uint8(back), levels)
