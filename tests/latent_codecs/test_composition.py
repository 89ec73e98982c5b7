"""DCAEEntropyModel composed with CompressAI's latent codecs: self-checking
strings through every composition, ChannelGroupsLatentCodec, the registry,
quantiser choice, user parameter networks and clear errors on misuse."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    CheckerboardLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import CheckerboardMaskedConv2d
from compressai.models.utils import conv, deconv
from compressai.registry import MODULES
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dcae import DCAEEntropyModel, DCAEError, DCAEModel, DecodingError

TINY: Dict[str, Any] = dict(
    dict_entries=8, dict_dim=16, dict_heads=2, msfa_depth=1, mlp_ratio=1, hidden_channels=(16,)
)
N, M, SIDE = 8, 20, 12


def hyperprior(seed: int = 0, slice_sizes=(2, 2, 4, 12), **kw: Any) -> HyperpriorLatentCodec:
    """A researcher's hyperprior codec with DCAE coding y (eval mode, tables built)."""
    torch.manual_seed(seed)
    h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N, 5, 2), nn.ReLU(), conv(N, N))
    h_s = nn.Sequential(deconv(N, N), nn.ReLU(), deconv(N, SIDE))
    codec = HyperpriorLatentCodec(
        latent_codec={
            "y": DCAEEntropyModel(
                M, slice_sizes=list(slice_sizes), side_channels=SIDE, **{**TINY, **kw}
            ),
            "hyper": HyperLatentCodec(EntropyBottleneck(N), h_a, h_s, quantizer="ste"),
        }
    ).eval()
    codec.y.update()
    codec.hyper.entropy_bottleneck.update(force=True)
    return codec


CODEC = hyperprior()


def encoded(seed: int = 0, batch: int = 1, hw=(6, 5)) -> Dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(batch, M, *hw, generator=g) * 3
    with torch.no_grad():
        return CODEC.compress(y)


def decode(codec: HyperpriorLatentCodec, strings, shape) -> torch.Tensor:
    with torch.no_grad():
        return codec.decompress(strings, shape)["y_hat"]


# ---------------------------------------------------------------- self-checking strings
def test_hyperprior_round_trip_is_exact_and_strings_carry_their_checks() -> None:
    enc = encoded(batch=2)
    assert torch.equal(decode(CODEC, enc["strings"], enc["shape"]), enc["y_hat"])
    assert enc["shape"]["y"] == (M, 6, 5)
    assert CODEC.y.string_overhead == 5  # 4 slices: 3 x 4 bits + 24 bits -> 5 bytes


def test_another_model_of_the_same_architecture_raises() -> None:
    enc = encoded()
    other = hyperprior(seed=1)
    with pytest.raises(DecodingError, match="slice 0 of sample 0"):
        decode(other, enc["strings"], enc["shape"])


def test_another_slice_layout_raises() -> None:
    enc = encoded()
    other = hyperprior(slice_sizes=(4, 4, 4, 8))
    with pytest.raises(DecodingError, match="does not verify"):
        decode(other, enc["strings"], enc["shape"])


def test_strings_in_the_wrong_order_raise() -> None:
    enc = encoded()
    y_strings, z_strings = enc["strings"]
    with pytest.raises(DecodingError):
        decode(CODEC, [z_strings, y_strings], enc["shape"])


@pytest.mark.parametrize("shape", [(M, 5, 5), (M, 6, 4), (6, 4)])
def test_a_wrong_latent_shape_raises(shape) -> None:
    enc = encoded()
    bad = {**enc["shape"], "y": shape}
    with pytest.raises(DecodingError):
        decode(CODEC, enc["strings"], bad)


def test_a_wrong_channel_count_is_named() -> None:
    enc = encoded()
    with pytest.raises(ValueError, match="channels"):
        decode(CODEC, enc["strings"], {**enc["shape"], "y": (M + 1, 6, 5)})


@pytest.mark.parametrize("keep", [0, 2, 4, 5, 10])
def test_truncated_strings_raise(keep: int) -> None:
    enc = encoded(hw=(8, 8))
    (y,), z = enc["strings"]
    with pytest.raises(DecodingError):
        decode(CODEC, [[y[:keep]], z], enc["shape"])


def test_a_two_byte_string_for_a_large_latent_raises() -> None:
    em = CODEC.y
    side = torch.randn(1, SIDE, 64, 64)
    with torch.no_grad(), pytest.raises(DecodingError, match="check bytes"):
        em.decompress([[b"\x00\x01"]], (M, 64, 64), side)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_corrupted_byte_raises_or_changes_nothing(data) -> None:
    """A string with one byte changed never decodes to another y_hat silently."""
    enc = encoded(seed=3, hw=(5, 7))
    (y,), z = enc["strings"]
    pos = data.draw(st.integers(0, len(y) - 1))
    xor = data.draw(st.integers(1, 255))
    bad = bytearray(y)
    bad[pos] ^= xor
    try:
        y_hat = decode(CODEC, [[bytes(bad)], z], enc["shape"])
    except DecodingError:
        return
    assert torch.equal(y_hat, enc["y_hat"])


def test_a_drifted_decoder_names_the_slice() -> None:
    """Parameters that drift from slice 2 on: slices 0 and 1 verify, 2 does not."""
    enc = encoded(seed=4, hw=(8, 8))
    drifted = hyperprior()
    with torch.no_grad():
        for p in drifted.y.mean_transforms[2].parameters():
            p.add_(0.5)
    with pytest.raises(DecodingError, match="slice [23] of sample 0"):
        decode(drifted, enc["strings"], enc["shape"])


def test_full_model_refuses_foreign_and_swapped_strings() -> None:
    torch.manual_seed(0)
    a = DCAEModel("small").eval()
    a.update()
    torch.manual_seed(1)
    b = DCAEModel("small").eval()
    b.update()
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        enc = a.compress(x)
        with pytest.raises(DecodingError):
            b.decompress(enc["strings"], enc["shape"])
        with pytest.raises(DecodingError):
            a.decompress(enc["strings"][::-1], enc["shape"])
        y, z = enc["strings"]
        with pytest.raises(DecodingError):
            a.decompress([[y[0][: len(y[0]) // 2]], z], enc["shape"])


# ---------------------------------------------------------------- misuse
def test_unknown_keywords_raise() -> None:
    enc = encoded()
    side = torch.randn(1, SIDE, 6, 5)
    with pytest.raises(TypeError, match="checksum"):
        CODEC.y.decompress(enc["strings"][:1], enc["shape"]["y"], side, checksum=[1])
    with pytest.raises(TypeError):
        DCAEModel("small").decompress([[b""], [b""]], {"y": (1, 1), "hyper": (1, 1)}, checksums=1)


def test_a_flat_list_of_bytes_is_named() -> None:
    enc = encoded()
    side = torch.randn(1, SIDE, 6, 5)
    with pytest.raises(TypeError, match=r"flat list of bytes: wrap it as \[y_strings\]"):
        CODEC.y.decompress(enc["strings"][0], enc["shape"]["y"], side)


def test_standalone_entropy_model_names_its_own_update() -> None:
    em = DCAEEntropyModel(8, 2, side_channels=4, **TINY).eval()
    y, side = torch.randn(1, 8, 3, 3), torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        with pytest.raises(DCAEError, match=r"call update\(\) on it"):
            em.compress(y, side)
        assert em.update() is True
        enc = em.compress(y, side)
        assert torch.equal(
            em.decompress(enc["strings"], enc["shape"], side)["y_hat"], enc["y_hat"]
        )


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8), TypeError, "float"),
        (torch.rand(1, 3, 32, 32) * 255, ValueError, "divide 8-bit images by 255"),
        (torch.full((1, 3, 32, 32), float("nan")), ValueError, r"\[0, 1\]"),
        (torch.rand(1, 3, 32, 32) - 0.5, ValueError, r"\[0, 1\]"),
    ],
)
def test_model_compress_refuses_images_outside_0_1(x, error, match) -> None:
    model = DCAEModel("small").eval()
    model.update()
    with torch.no_grad(), pytest.raises(error, match=match):
        model.compress(x)


# ---------------------------------------------------------------- other compositions
def channel_groups(seed: int = 0) -> ChannelGroupsLatentCodec:
    """ELIC-style channel groups [8, 12], each coded by its own DCAEEntropyModel."""
    torch.manual_seed(seed)
    ctx = 6
    codec = ChannelGroupsLatentCodec(
        groups=[8, 12],
        channel_context={"y1": conv(8, ctx, kernel_size=3, stride=1)},
        latent_codec={
            "y0": DCAEEntropyModel(8, 2, side_channels=SIDE, **TINY),
            "y1": DCAEEntropyModel(12, slice_sizes=[4, 8], side_channels=SIDE + ctx, **TINY),
        },
    ).eval()
    for k in ("y0", "y1"):
        codec[k].update()
    return codec


def test_as_groups_of_channel_groups_latent_codec() -> None:
    codec = channel_groups()
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, M, 5, 6, generator=g) * 3
    side = torch.randn(2, SIDE, 5, 6, generator=g)
    with torch.no_grad():
        fwd = codec(y, side)
        enc = codec.compress(y, side)
        dec = codec.decompress(enc["strings"], enc["shape"], side)
    assert enc["shape"] == [(8, 5, 6), (12, 5, 6)]
    assert torch.equal(dec["y_hat"], enc["y_hat"])
    assert torch.equal(fwd["y_hat"], enc["y_hat"])
    assert fwd["likelihoods"]["y"].shape == y.shape
    # the strings still check themselves there: swap the two groups' strings
    swapped = [enc["strings"][1], enc["strings"][0]]
    with torch.no_grad(), pytest.raises((DecodingError, ValueError)):
        codec.decompress(swapped, enc["shape"], side)


def test_checkerboard_latent_codec_gets_a_clear_error() -> None:
    cb = CheckerboardLatentCodec(
        latent_codec={"y": DCAEEntropyModel(8, 2, side_channels=16, **TINY)},
        entropy_parameters=nn.Conv2d(8 * 2 + 4, 16, 1),
        context_prediction=CheckerboardMaskedConv2d(8, 8 * 2, kernel_size=5, padding=2),
    )
    with pytest.raises(TypeError, match="spatial_context='checkerboard'"):
        cb(torch.randn(1, 8, 4, 4), torch.randn(1, 4, 4, 4))


def test_registered_as_a_compressai_module() -> None:
    assert MODULES["DCAEEntropyModel"] is DCAEEntropyModel
    em = MODULES["DCAEEntropyModel"](8, 2, side_channels=4, **TINY)
    assert isinstance(em, DCAEEntropyModel)


# ---------------------------------------------------------------- training options
def test_quantizer_choice() -> None:
    torch.manual_seed(0)
    y, side = torch.randn(2, 8, 4, 4) * 3, torch.randn(2, 4, 4, 4)
    ste = DCAEEntropyModel(8, 2, side_channels=4, quantizer="ste", **TINY)
    noise = DCAEEntropyModel(8, 2, side_channels=4, quantizer="noise", **TINY)
    noise.load_state_dict(ste.state_dict())
    ste.train()
    noise.train()
    # STE: y_hat - means is an integer for slice 0 (its means do not depend on y)
    torch.manual_seed(1)
    y_ste = ste(y, side)["y_hat"][:, :4]
    torch.manual_seed(1)
    y_noise = noise(y, side)["y_hat"][:, :4]
    assert not torch.equal(y_ste, y_noise)
    assert (y_noise - y[:, :4]).abs().max() <= 0.5 + 0.5  # noise + LRP (|0.5 tanh| < 0.5)
    # eval mode: both give the decoder's y_hat
    ste.eval()
    noise.eval()
    with torch.no_grad():
        assert torch.equal(ste(y, side)["y_hat"], noise(y, side)["y_hat"])
    with pytest.raises(ValueError, match="quantizer"):
        DCAEEntropyModel(8, 2, quantizer="round", **TINY)


def test_user_parameter_networks() -> None:
    built = []

    def one_by_one(cin: int, cout: int) -> nn.Module:
        built.append((cin, cout))
        return nn.Sequential(nn.Conv2d(cin, 16, 1), nn.ReLU(), nn.Conv2d(16, cout, 1))

    em = DCAEEntropyModel(
        8,
        2,
        side_channels=4,
        mean_net=one_by_one,
        scale_net=one_by_one,
        lrp_net=one_by_one,
        **TINY,
    ).eval()
    assert len(built) == 6 and isinstance(em.mean_transforms[0][0], nn.Conv2d)
    assert em.mean_transforms[0][0].kernel_size == (1, 1)
    em.update()
    y, side = torch.randn(1, 8, 5, 5) * 3, torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        enc = em.compress(y, side)
        assert torch.equal(
            em.decompress(enc["strings"], enc["shape"], side)["y_hat"], enc["y_hat"]
        )
    with pytest.raises(ValueError, match="mean_net"):
        DCAEEntropyModel(8, 2, mean_net=lambda a, b: 3, **TINY)  # type: ignore[arg-type]
