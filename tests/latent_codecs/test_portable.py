"""Portable coding: strings written under any attention backend, thread count,
precision (fast mode) or compiled entropy networks decode under any other."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

import dcae
from dcae import DCAEModel, DecodingError, attention_backend
from dcae.format.pixels import image_to_tensor
from dcae.latent_codecs.coding_mode import PORTABLE, PORTABLE_GRID_BITS, CodingMode
from dcae.layers.fast import fast_mode
from dcae.zoo import shipped

IMAGE = Path(__file__).resolve().parents[2] / "examples" / "images" / "kodim23_crop.png"
BACKENDS = ("reference", "fused", "sdpa")


@pytest.fixture(scope="module")
def model() -> DCAEModel:
    if shipped.available_qualities():
        return shipped.load_pretrained()
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
                    # nothing bound but the latent: decoded to y_hat below
                    streams.append(model.compress(image, portable=True, associated_data=None))
            finally:
                fast_mode(model, enabled=False)
        for enc in streams:
            y_hats = []
            for backend, n in decode_combos:
                with attention_backend(backend, model), threads(n):
                    out = model.decompress_latent(
                        enc["strings"], enc["shape"], PORTABLE, associated_data=None
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
    recorded = []
    handle = em.register_params_hook(lambda i, means, scales: recorded.append((means, scales)))
    try:
        with torch.no_grad():
            portable = model.compress(x, portable=True)
    finally:
        handle.remove()
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
    # the grid moves y_hat by at most 2^-(grid+1): the quality does not change
    mse_p = float((dec_p["x_hat"] - x).square().mean())
    mse_l = float((dec_l["x_hat"] - x).square().mean())
    assert abs(10 * math.log10(mse_l / mse_p)) < 0.02  # dB


def test_encode_records_the_mode_and_decode_follows_it(model, image):
    for portable in (False, True):
        data = dcae.encode(image, model=model, portable=portable)
        stream = dcae.codec.read_stream(data)
        assert stream.portable is portable
        assert stream.grid_bits == (PORTABLE_GRID_BITS if portable else None)
        decoded = dcae.decode(data, model=model)
        assert decoded.size == (image.shape[3], image.shape[2])


def test_files_are_portable_by_default_for_dcae_models_only(model, image):
    """``dcae.encode`` writes portable files with DCAE models unless told not
    to; models without the mode (any other CompressAI model) code as always."""
    from compressai.models import FactorizedPrior

    assert dcae.codec.read_stream(dcae.encode(image, model=model)).portable
    torch.manual_seed(0)
    other = FactorizedPrior(8, 8).eval()
    other.update(force=True)
    assert not dcae.codec.read_stream(dcae.encode(image, model=other)).portable
    with pytest.raises(ValueError, match="portable coding is a DCAE mode"):
        dcae.encode(image, model=other, portable=True)


def test_portable_flag_and_grid_in_the_header():
    """Flag bit 0 records portable coding and bits 1-5 its grid (0 for the
    first grid, 16, so first-mode files keep their bytes); they round-trip;
    unknown bits, a grid without the portable bit, a portable stream without
    a grid and the flag on a non-DCAE model are refused."""
    import dataclasses
    import struct
    import zlib

    from streams import make_stream

    from dcae.errors import FormatError
    from dcae.format.container import FLAG_PORTABLE, pack, unpack

    plain = make_stream()
    assert unpack(pack(plain)).portable is False and unpack(pack(plain)).grid_bits is None
    flags_at = 10  # magic(9) version(1)
    for grid, flags in ((16, FLAG_PORTABLE), (6, FLAG_PORTABLE | 6 << 1), (31, 0x3F), (1, 0x03)):
        flagged = dataclasses.replace(plain, mode=CodingMode(grid))
        back = unpack(pack(flagged))
        assert back.portable is True and back.grid_bits == grid
        assert pack(flagged)[flags_at] == flags
    data = bytearray(pack(plain))
    assert data[flags_at] == 0

    def with_flags(value: int) -> bytes:
        raw = bytearray(data)
        raw[flags_at] = value
        return bytes(raw[:-4]) + struct.pack(">I", zlib.crc32(bytes(raw[:-4])))

    for bad in (0x40, 0x80, 0x0C):  # unknown bits; a grid without the portable bit
        with pytest.raises(FormatError, match="flags"):
            unpack(with_flags(bad))
    for grid in (0, 32, True, 6.0):  # a mode is validated where it is made
        with pytest.raises(ValueError, match="grid_bits"):
            CodingMode(grid)
    with pytest.raises(FormatError, match="CodingMode"):
        pack(dataclasses.replace(plain, mode=6))
    other = dataclasses.replace(plain, model_kind="compressai", model_name="bmshj2018-factorized")
    with pytest.raises(FormatError, match="not DCAE"):
        pack(dataclasses.replace(other, mode=PORTABLE))


def test_first_portable_streams_still_decode(model, image):
    """Streams of the first portable mode (grid 2^-16, flag bits 1-5 zero)
    decode as before; each grid is part of the string seed, so a stream
    decoded with another grid never verifies."""
    import dataclasses

    from dcae.format.container import pack
    from dcae.latent_codecs.coding_mode import FIRST_PORTABLE_GRID_BITS
    from dcae.latent_codecs.string_checks import string_seed

    first = FIRST_PORTABLE_GRID_BITS
    assert string_seed((8, 2, 3), [4, 4], 1, CodingMode(first)) != string_seed(
        (8, 2, 3), [4, 4], 1, PORTABLE
    )
    with torch.no_grad():
        old = model.compress(image, portable=True, grid_bits=first)
        new = model.compress(image, portable=True)
        for out, grid in ((old, first), (new, PORTABLE_GRID_BITS)):
            x_hat = model.decompress(out["strings"], out["shape"], portable=True, grid_bits=grid)
            assert float((x_hat["x_hat"] - image).abs().mean()) < 0.1
        with pytest.raises(DecodingError, match="does not verify"):
            model.decompress(old["strings"], old["shape"], portable=True)
        with pytest.raises(DecodingError, match="does not verify"):
            model.decompress(new["strings"], new["shape"], portable=True, grid_bits=first)
    # a file written by the first portable mode (format version 3 or 4: only
    # flag bit 0, no header bound into the checks, minimal = no padding)
    stream = dcae.codec.read_stream(dcae.encode(image, model=model, portable=True))
    assert stream.grid_bits == PORTABLE_GRID_BITS and stream.padding == (0, 0, 0, 0)
    with torch.no_grad():
        legacy = model.compress(image, portable=True, grid_bits=first, associated_data=None)
    y, z = legacy["strings"]
    old_file = pack(
        dataclasses.replace(
            stream, strings=(y[0], z[0]), mode=CodingMode(first), version=4, pad_multiple=1
        )
    )
    assert old_file[9:11] == bytes([4, 0x01])
    decoded = image_to_tensor(dcae.decode(old_file, model=model))[0]
    assert decoded.shape == image.shape
    assert float((decoded - image).abs().mean()) < 0.1


def test_grid_bits_needs_portable_and_a_range(model, image):
    with pytest.raises(ValueError, match="portable=True"):
        model.compress(image, grid_bits=6)
    for bad in (0, 32, 6.0, True):
        with pytest.raises(ValueError, match="grid_bits"):
            model.compress(image, portable=True, grid_bits=bad)


def test_cli_compress_portable(tmp_path, model):
    from dcae.cli import main

    src = tmp_path / "in.png"
    from PIL import Image

    Image.open(IMAGE).crop((0, 0, 96, 64)).save(src)
    for flag, portable in (([], True), (["--portable"], True), (["--no-portable"], False)):
        out = tmp_path / "in.dcae"
        assert main(["compress", str(src), "-o", str(out), "-f", "-q", *flag]) == 0
        assert dcae.codec.read_stream(out).portable is portable
        assert main(["decompress", str(out), "-o", str(tmp_path / "out.png"), "-f", "-q"]) == 0
        assert Image.open(tmp_path / "out.png").size == (96, 64)


@pytest.mark.parametrize(
    "channels, kernel, padding, dilation", [(64, 3, 1, 1), (8, 5, 2, 1), (4, 3, 2, 2)]
)
def test_float64_depthwise_convolution_equals_conv2d(channels, kernel, padding, dilation):
    from dcae.latent_codecs.float64 import float64_copy
    from dcae.latent_codecs.float64_layers import DepthwiseConv64

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(
        channels, channels, kernel, padding=padding, dilation=dilation, groups=channels
    )
    net = float64_copy(torch.nn.Sequential(conv))
    assert isinstance(net[0], DepthwiseConv64)
    x = torch.randn(2, channels, 13, 19, dtype=torch.float64)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(
            x, conv.weight.double(), conv.bias.double(), padding=padding,
            dilation=dilation, groups=channels,
        )  # fmt: skip
        torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-13)
    strided = torch.nn.Conv2d(4, 4, 3, stride=2, groups=4)
    assert not DepthwiseConv64.handles(strided)  # left to conv2d


@pytest.mark.parametrize(
    "layer, channels, kernel, padding, size, batch",
    [
        ("WinogradConv64", 48, 3, 1, (13, 19), 2),  # odd output: a cut tile
        ("WinogradConv64", 300, 3, 1, (32, 48), 1),  # a first layer of the shipped model
        ("WinogradConv64", 40, 3, (0, 2), (4, 9), 1),
        ("WinogradConv64", 32, 3, 1, (1, 1), 1),
        ("DenseConv64", 40, (3, 5), (0, 2), (4, 9), 2),
        ("DenseConv64", 32, 5, 2, (1, 1), 1),
    ],
)
def test_float64_convolutions_equal_conv2d(layer, channels, kernel, padding, size, batch):
    """The float64 replacements of dense convolutions (Winograd F(2x2, 3x3)
    for 3x3 kernels, one product per tap otherwise) compute ``conv2d`` to a
    few ulps, for contiguous and channels-last inputs, any padding and odd
    sizes; layers they do not fit are left to ``conv2d``."""
    from dcae.latent_codecs import float64, float64_layers

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, 17, kernel, padding=padding)
    net = float64.float64_copy(torch.nn.Sequential(conv))
    assert type(net[0]).__name__ == layer
    x = torch.randn(batch, channels, *size, dtype=torch.float64)
    # a channels-last view, as a permuted feature map arrives
    x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(
            x, conv.weight.double(), conv.bias.double(), padding=padding
        )
        for inp in (x, x_cl):
            out = net(inp)
            assert out.shape == expected.shape and out.is_contiguous()
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="Kernel size"):  # conv2d's own error
        net(torch.zeros(1, channels, 0, 0, dtype=torch.float64))
    for other in (
        torch.nn.Conv2d(64, 8, 1),  # 1x1: already a single product
        torch.nn.Conv2d(64, 8, 3, stride=2),
        torch.nn.Conv2d(64, 8, 3, dilation=2),
        torch.nn.Conv2d(8, 8, 3),  # too narrow to gain
        torch.nn.Conv2d(64, 8, 3, padding_mode="reflect"),
        torch.nn.Conv2d(64, 8, 3, groups=2),
    ):
        assert not float64_layers.WinogradConv64.handles(other)
        assert not float64_layers.DenseConv64.handles(other)


def test_float64_copy_reads_permuted_inputs_contiguously():
    """Linear and the remaining Conv2d layers of a float64 copy make their
    input contiguous (MKL's float64 products are several times slower on
    transposed operands) and still compute the same function."""
    from torch.overrides import TorchFunctionMode

    from dcae.latent_codecs.float64 import float64_copy

    class Record(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.inputs = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.nn.functional.linear, torch.nn.functional.conv2d):
                self.inputs.append(args[0].is_contiguous())
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Conv2d(8, 4, 1))
    copied = float64_copy(net)
    x = torch.randn(2, 5, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        with Record() as rec:
            h = copied[0](x.transpose(1, 2))  # non-contiguous in
            out = copied[1](h.permute(0, 3, 1, 2))
        ref64 = net.double()
        ref = ref64[1](ref64[0](x.transpose(1, 2)).permute(0, 3, 1, 2))
    assert rec.inputs == [True, True]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-13)
    assert isinstance(copied[0], torch.nn.Linear) and isinstance(copied[1], torch.nn.Conv2d)


def test_float64_copy_is_reused_until_the_module_changes():
    """The float64 copy is kept while nothing it depends on changes and made
    afresh after an in-place weight update, new buffers, a train flag or a
    swapped submodule; its numbers always follow the current weights."""
    from dcae.latent_codecs import float64
    from dcae.latent_codecs.float64 import float64_copy

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU())
    x = torch.randn(3, 4, dtype=torch.float64)
    first = float64_copy(net)
    assert float64_copy(net) is first
    with torch.no_grad():
        net[0].weight.mul_(2)  # an optimiser step or load_state_dict: in place
    second = float64_copy(net)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x), net.double()(x).float().double(), atol=1e-6, rtol=0)
    net.float()
    net[0].register_buffer("extra", torch.zeros(1))
    assert float64_copy(net) is not float64_copy(torch.nn.Sequential(*net))
    third = float64_copy(net)
    net.train(not net.training)
    assert float64_copy(net) is not third
    net[1] = torch.nn.Tanh()
    assert isinstance(float64_copy(net)[1], torch.nn.Tanh)
    net[0].note = "a plain setting"  # e.g. an attention backend, record_params
    fourth = float64_copy(net)
    assert float64_copy(net) is fourth and fourth[0].note == "a plain setting"
    net[0].note = "changed"
    assert float64_copy(net)[0].note == "changed"
    with torch.inference_mode():
        frozen = torch.nn.Linear(2, 2)  # inference tensors: no versions, no reuse
    assert float64_copy(frozen) is not float64_copy(frozen)
    kept = float64_copy(net)
    float64.clear_float64_copies()  # memory back on request
    assert float64_copy(net) is not kept


def test_paired_first_layers_give_the_same_bits():
    """The mean and scale networks' first layers computed as one product
    (:func:`run_pair`) give bit for bit what each computes alone; a paired
    layer called on its own computes alone, and nothing is kept between calls."""
    from dcae.latent_codecs.float64 import float64_copy
    from dcae.latent_codecs.float64_layers import (
        PairedWinogradConv64,
        pair_first_layers,
        run_pair,
    )

    torch.manual_seed(0)

    def net():
        return torch.nn.Sequential(torch.nn.Conv2d(40, 16, 3, padding=1), torch.nn.GELU())

    mean, scale = float64_copy(net()), float64_copy(net())
    x = torch.randn(1, 40, 9, 14, dtype=torch.float64)
    other = torch.randn_like(x)
    with torch.no_grad():
        alone = mean(x), scale(x), scale(other)
        assert pair_first_layers(mean, scale)
        assert isinstance(mean[0], PairedWinogradConv64)
        a, b = run_pair(mean, scale, x)
        assert torch.equal(a, alone[0]) and torch.equal(b, alone[1])
        assert torch.equal(mean(x), alone[0]) and torch.equal(scale(other), alone[2])
        assert not [t for t in vars(mean[0]).values() if isinstance(t, tuple)]  # no pending
        # an unpaired couple: two calls
        c, d = run_pair(scale, mean, x)
        assert torch.equal(c, alone[1]) and torch.equal(d, alone[0])
    assert not pair_first_layers(float64_copy(net()), torch.nn.Sequential(torch.nn.Linear(2, 2)))


# ------------------------------------------------------------------ one coding mode
def test_coding_mode_is_one_value_made_at_the_api():
    assert CodingMode.of() == CodingMode() and not CodingMode().portable
    assert CodingMode.of(portable=True) == PORTABLE == CodingMode(PORTABLE_GRID_BITS)
    assert CodingMode.of(portable=True, grid_bits=16).grid_bits == 16
    assert CodingMode.of(PORTABLE) is PORTABLE
    with pytest.raises(ValueError, match="not both"):
        CodingMode.of(PORTABLE, portable=True)
    with pytest.raises(TypeError, match="CodingMode"):
        CodingMode.of("portable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="portable=True"):
        CodingMode.of(grid_bits=6)
    x = torch.tensor([0.3, -1.26, 2.0], dtype=torch.float64)
    assert CodingMode().snap(x) is x
    assert torch.equal(
        CodingMode(2).snap(x), torch.tensor([0.25, -1.25, 2.0], dtype=torch.float64)
    )


def test_only_the_api_takes_portable_and_grid_bits():
    """Inside dcae one ``mode`` flows; the keywords ``portable``/``grid_bits``
    are converted at the public API only."""
    import ast
    from pathlib import Path

    api = {
        ("codec.py", "encode"),
        ("coding_mode.py", "of"),
        ("entropy_model.py", "compress"),
        ("entropy_model.py", "decompress"),
        ("dcae.py", "compress"),
        ("dcae.py", "decompress"),
    }
    found = set()
    for path in Path(dcae.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {a.arg for a in [*node.args.args, *node.args.kwonlyargs]}
                if names & {"portable", "grid_bits"}:
                    found.add((path.name, node.name))
    assert found == api


def test_decompress_accepts_the_mode_itself(model, image):
    with torch.no_grad():
        out = model.compress(image, mode=PORTABLE)
        by_mode = model.decompress(out["strings"], out["shape"], mode=PORTABLE)["x_hat"]
        by_keywords = model.decompress(out["strings"], out["shape"], portable=True)["x_hat"]
        assert out["strings"] == model.compress(image, portable=True)["strings"]
    assert torch.equal(by_mode, by_keywords)


def test_float64_copy_follows_writes_through_data():
    """A write through ``.data`` (EMA code, ``p.data.copy_``) leaves the
    parameter's version counter unchanged; the copy must still follow it, and
    a portable stream of the changed model equals a fresh model's."""
    from dcae.latent_codecs.float64 import float64_copy

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    x = torch.randn(3, 4, dtype=torch.float64)
    first = float64_copy(net)
    version = net[0].weight._version
    net[0].weight.data.add_(1e-3)
    assert net[0].weight._version == version  # the case a version key misses
    second = float64_copy(net)
    assert second is not first
    with torch.no_grad():
        assert torch.equal(second(x), torch.nn.functional.linear(
            x, net[0].weight.double(), net[0].bias.double()
        ))  # fmt: skip
        assert float64_copy(net) is second  # unchanged values: kept


def test_portable_strings_follow_writes_through_data(small_model):
    import copy

    model = copy.deepcopy(small_model)
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.compress(x, portable=True)  # keeps a float64 copy
        for p in model.latent_codec.y.parameters():
            p.data.mul_(1.5)
        fresh = copy.deepcopy(model)  # no kept copy
        assert (
            model.compress(x, portable=True)["strings"]
            == fresh.compress(x, portable=True)["strings"]
        )
