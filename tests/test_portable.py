"""Portable coding: strings written under any attention backend, thread count,
precision (fast mode) or compiled entropy networks decode under any other."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import dcae
from dcae import DCAEModel, DecodingError, attention_backend, pretrained
from dcae.codec import image_to_tensor
from dcae.nn.fast import fast_mode
from dcae.nn.slice_coders import PORTABLE_GRID_BITS

IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "kodim23_crop.png"
BACKENDS = ("reference", "fused", "sdpa")


@pytest.fixture(scope="module")
def model() -> DCAEModel:
    if pretrained.available_qualities():
        return pretrained.load_pretrained()
    torch.manual_seed(0)  # pragma: no cover - an installation without weights
    m = DCAEModel("small").eval()
    m.update(force=True)
    return m


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return image_to_tensor(IMAGE)[0][:, :, :128, :160].contiguous()


class threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.saved)


def check_cross_decoding(model, image, encode_combos, decode_combos) -> None:
    """Every stream encoded under an ``(backend, threads, fast)`` combination
    decodes under every ``(backend, threads)`` one, to one and the same y_hat."""
    streams = []
    with torch.no_grad():
        for backend, n, fast in encode_combos:
            fast_mode(model, enabled=fast)
            try:
                with attention_backend(backend, model), threads(n):
                    streams.append(model.compress(image, portable=True))
            finally:
                fast_mode(model, enabled=False)
        for enc in streams:
            y_hats = []
            for backend, n in decode_combos:
                with attention_backend(backend, model), threads(n):
                    out = model.latent_codec.decompress(
                        enc["strings"], enc["shape"], portable=True
                    )
                y_hats.append(out["y_hat"])
            assert all(torch.equal(y_hats[0], y) for y in y_hats[1:])


def test_portable_streams_decode_across_backends_threads_and_precision(model, image):
    """Each backend, one thread count and fast mode at encode; each backend and
    both thread counts at decode (the full product is the slow test below)."""
    small = image[:, :, :64, :96].contiguous()
    encode = [(b, 2, False) for b in BACKENDS] + [("sdpa", 1, False), ("fused", 2, True)]
    decode = list(itertools.product(BACKENDS, (1, 2)))
    check_cross_decoding(model, small, encode, decode)


@pytest.mark.slow
def test_portable_streams_full_cross_product(model, image):
    """{reference, fused, sdpa} x {1, 2 threads} x {fp32, bf16} at encode,
    {reference, fused, sdpa} x {1, 2 threads} at decode."""
    encode = list(itertools.product(BACKENDS, (1, 2), (False, True)))
    decode = list(itertools.product(BACKENDS, (1, 2)))
    check_cross_decoding(model, image, encode, decode)


def test_compiled_entropy_networks_do_not_change_portable_streams(image):
    """Portable coding runs the eager float64 networks, whatever is compiled."""
    torch.manual_seed(0)
    model = DCAEModel("small").eval()
    model.update(force=True)
    with torch.no_grad():
        eager = model.compress(image, portable=True)
    em = model.entropy_model
    for i in range(em.num_slices):  # compiled lazily: portable coding never calls them
        em.mean_transforms[i] = torch.compile(em.mean_transforms[i])
        em.scale_transforms[i] = torch.compile(em.scale_transforms[i])
    model.latent_codec.hyper.h_s = torch.compile(model.latent_codec.hyper.h_s)
    with torch.no_grad():
        compiled = model.compress(image, portable=True)
        dec = model.decompress(compiled["strings"], compiled["shape"], portable=True)
    assert compiled["strings"] == eager["strings"]
    assert dec["x_hat"].shape == image.shape


def test_the_mode_is_part_of_the_string_checks(model, image):
    with torch.no_grad():
        portable = model.compress(image, portable=True)
        legacy = model.compress(image)
        with pytest.raises(DecodingError):
            model.decompress(portable["strings"], portable["shape"])
        with pytest.raises(DecodingError):
            model.decompress(legacy["strings"], legacy["shape"], portable=True)


def test_portable_means_are_on_the_grid_and_cost_little(model):
    x = image_to_tensor(IMAGE)[0]
    em = model.entropy_model
    em.record_params = True
    try:
        with torch.no_grad():
            portable = model.compress(x, portable=True)
            recorded = list(em.recorded_params)
    finally:
        em.record_params = False
    assert recorded and all(m.dtype == torch.float64 for m, _ in recorded)
    for means, _ in recorded:
        scaled = means * 2**PORTABLE_GRID_BITS
        assert torch.equal(scaled, torch.round(scaled))
    with torch.no_grad():
        legacy = model.compress(x)
        dec_p = model.decompress(portable["strings"], portable["shape"], portable=True)
        dec_l = model.decompress(legacy["strings"], legacy["shape"])
    size_p = sum(len(s[0]) for s in portable["strings"])
    size_l = sum(len(s[0]) for s in legacy["strings"])
    assert abs(size_p - size_l) <= 0.005 * size_l + 4
    # the reconstructions differ only by the tiny float64 / grid changes of y_hat
    mse = float((dec_p["x_hat"] - dec_l["x_hat"]).square().mean())
    assert mse < 1e-6


def test_encode_records_the_mode_and_decode_follows_it(model, image):
    for portable in (False, True):
        data = dcae.encode(image, model=model, portable=portable)
        stream = dcae.codec.read_stream(data)
        assert stream.portable is portable
        decoded = dcae.decode(data, model=model)
        assert decoded.size == (image.shape[3], image.shape[2])


def test_portable_flag_in_the_header():
    """Flag bit 0 records portable coding; it round-trips, other bits and the
    flag on a non-DCAE model are refused."""
    import dataclasses
    import struct
    import zlib

    from test_bitstream import make_stream

    from dcae.bitstream import FLAG_PORTABLE, pack, unpack
    from dcae.errors import FormatError

    plain = make_stream()
    flagged = dataclasses.replace(plain, portable=True)
    assert unpack(pack(flagged)).portable is True
    assert unpack(pack(plain)).portable is False
    data = bytearray(pack(plain))
    flags_at = 10  # magic(9) version(1)
    assert data[flags_at] == 0 and pack(flagged)[flags_at] == FLAG_PORTABLE

    def with_flags(value: int) -> bytes:
        raw = bytearray(data)
        raw[flags_at] = value
        return bytes(raw[:-4]) + struct.pack(">I", zlib.crc32(bytes(raw[:-4])))

    with pytest.raises(FormatError, match="flags"):
        unpack(with_flags(0x02))
    other = dataclasses.replace(plain, model_kind="compressai", model_name="bmshj2018-factorized")
    with pytest.raises(FormatError, match="not DCAE"):
        pack(dataclasses.replace(other, portable=True))


def test_cli_compress_portable(tmp_path, model):
    from dcae.cli import main

    src = tmp_path / "in.png"
    from PIL import Image

    Image.open(IMAGE).crop((0, 0, 96, 64)).save(src)
    out = tmp_path / "in.dcae"
    assert main(["compress", str(src), "-o", str(out), "--portable", "-q"]) == 0
    assert dcae.codec.read_stream(out).portable
    assert main(["decompress", str(out), "-o", str(tmp_path / "out.png"), "-q"]) == 0
    assert Image.open(tmp_path / "out.png").size == (96, 64)


@pytest.mark.parametrize(
    "channels, kernel, padding, dilation", [(64, 3, 1, 1), (8, 5, 2, 1), (4, 3, 2, 2)]
)
def test_float64_depthwise_convolution_equals_conv2d(channels, kernel, padding, dilation):
    from dcae.nn.slice_coders import _DepthwiseConv64, float64_copy

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(
        channels, channels, kernel, padding=padding, dilation=dilation, groups=channels
    )
    net = float64_copy(torch.nn.Sequential(conv))
    assert isinstance(net[0], _DepthwiseConv64)
    x = torch.randn(2, channels, 13, 19, dtype=torch.float64)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(
            x, conv.weight.double(), conv.bias.double(), padding=padding,
            dilation=dilation, groups=channels,
        )  # fmt: skip
        torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-13)
    strided = torch.nn.Conv2d(4, 4, 3, stride=2, groups=4)
    assert not _DepthwiseConv64.handles(strided)  # left to conv2d
