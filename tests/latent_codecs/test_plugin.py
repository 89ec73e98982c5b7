"""DCAEEntropyModel as a plug-in: any channel counts, uneven slices, spatial context."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import HyperLatentCodec, HyperpriorLatentCodec
from compressai.models.base import get_scale_table
from compressai.models.utils import conv, deconv
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dcae import DCAEEntropyModel, DCAEModel
from dcae.latent_codecs.spatial_context import checkerboard_masks

TINY: Dict[str, Any] = dict(
    dict_entries=8, dict_dim=16, dict_heads=2, msfa_depth=1, mlp_ratio=1, hidden_channels=(16,)
)


def ready(em: DCAEEntropyModel) -> DCAEEntropyModel:
    em.eval()
    em.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    return em


def make(seed: int = 0, **kw: Any) -> DCAEEntropyModel:
    torch.manual_seed(seed)
    args = {**TINY, **kw}
    m = args.pop("latent_channels", 24)
    return ready(DCAEEntropyModel(m, **args))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent_channels=0), "latent_channels"),
        (dict(latent_channels=10, num_slices=3), "divisible"),
        (dict(latent_channels=10, num_slices=0), "num_slices"),
        (dict(latent_channels=10, slice_sizes=[4, 4]), "sum to"),
        (dict(latent_channels=10, slice_sizes=[12, -2]), "slice_sizes"),
        (dict(latent_channels=10, slice_sizes=[]), "sum to"),
        (dict(latent_channels=10, slice_sizes="55"), "slice_sizes"),
        (dict(latent_channels=10, slice_sizes=[5.5, 4.5]), "slice_sizes"),
        (dict(side_channels=0), "side_channels"),
        (dict(max_support_slices=-2), "max_support_slices"),
        (dict(dict_entries=0), "dict_entries"),
        (dict(dict_dim=30, dict_heads=4), "multiple"),
        (dict(dict_heads=0), "dict_heads"),
        (dict(dict_out_channels=0), "dict_out_channels"),
        (dict(msfa_depth=-1), "msfa_depth"),
        (dict(mlp_ratio=0), "mlp_ratio"),
        (dict(hidden_channels=()), "hidden_channels"),
        (dict(hidden_channels=(16, 0)), "hidden_channels"),
        (dict(hidden_channels=16), "hidden_channels"),
        (dict(spatial_context="raster"), "spatial_context"),
        (dict(gaussian_conditional=nn.Identity()), "GaussianConditional"),
    ],
)
def test_invalid_configurations_raise_at_construction(kwargs: Dict[str, Any], match: str) -> None:
    args = {**TINY, "latent_channels": 20, **kwargs}
    m = args.pop("latent_channels")
    with pytest.raises(ValueError, match=match):
        DCAEEntropyModel(m, **args)


def test_default_parameter_names_are_unchanged() -> None:
    """The default model has no spatial-context modules and the input widths
    of the paper (official checkpoints depend on both)."""
    em = DCAEEntropyModel(96, 3, side_channels=192, **TINY)
    keys = list(em.state_dict())
    assert not any("context_prediction" in k for k in keys)
    assert em.mean_transforms[0][0].in_channels == 192 + 96
    cb = DCAEEntropyModel(96, 3, side_channels=192, spatial_context="checkerboard", **TINY)
    extra = set(cb.state_dict()) - set(keys)
    assert extra and all(k.startswith("context_prediction.") for k in extra)
    assert cb.mean_transforms[0][0].in_channels == 192 + 96 + 2 * 32
    # a full model's keys are those the official-layout converter knows
    assert DCAEModel("small").to_official_state_dict()


def test_checkerboard_masks_partition_the_latent() -> None:
    anchor, other = checkerboard_masks((3, 4))
    assert torch.equal(anchor ^ other, torch.ones(3, 4, dtype=torch.bool))
    assert anchor[0, 0] and not anchor[0, 1] and anchor[1, 1]


@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    side=st.integers(1, 12),
    support=st.integers(-1, 3),
    lrp=st.booleans(),
    checkerboard=st.booleans(),
    batch=st.integers(1, 2),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_any_configuration_round_trips_exactly(
    sizes, side, support, lrp, checkerboard, batch, h, w, seed
) -> None:
    """Uneven slices, any side channel count, LRP on/off, spatial context on/off:
    decompress(compress(y)) == compress y_hat == eval forward y_hat."""
    em = make(
        seed,
        latent_channels=sum(sizes),
        slice_sizes=sizes,
        side_channels=side,
        max_support_slices=support,
        lrp=lrp,
        spatial_context="checkerboard" if checkerboard else None,
    )
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(batch, sum(sizes), h, w, generator=g) * 4
    side_params = torch.randn(batch, side, h + 2, w + 1, generator=g)
    with torch.no_grad():
        enc = em.compress(y, side_params)
        dec = em.decompress(enc["strings"], enc["shape"], side_params)
        fwd = em(y, side_params)
    assert torch.equal(dec["y_hat"], enc["y_hat"])
    assert torch.equal(fwd["y_hat"], enc["y_hat"])
    assert fwd["likelihoods"]["y"].shape == y.shape
    assert len(enc["strings"][0]) == batch


def test_checkerboard_anchor_and_context_causality() -> None:
    """Anchor parameters of a slice ignore the slice itself; non-anchor
    parameters see its anchors only; later slices see everything."""
    em = make(1, latent_channels=12, slice_sizes=[4, 8], spatial_context="checkerboard")
    recorded = []
    em.register_params_hook(lambda i, means, scales: recorded.append((means, scales)))
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 12, 4, 4, generator=g) * 4
    side_params = torch.randn(1, em.side_channels, 4, 4, generator=g)
    anchor, other = checkerboard_masks((4, 4))

    def params(y_in):
        recorded.clear()
        with torch.no_grad():
            em.compress(y_in, side_params)
        return list(recorded)  # [(means, scales)] per slice and pass

    base = params(y)
    assert len(base) == 4  # 2 slices x 2 passes
    y2 = y.clone()
    y2[:, :4, other] += 10  # slice 0, non-anchor positions
    p2 = params(y2)
    for a, b in zip(base[:2], p2[:2]):  # slice 0, both passes
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(base[2][0], p2[2][0])  # slice 1 sees slice 0
    y3 = y.clone()
    y3[:, :4, anchor] += 10  # slice 0 anchors
    p3 = params(y3)
    assert torch.equal(base[0][0], p3[0][0])  # anchor pass ignores the slice
    assert not torch.equal(base[1][0][:, :, other], p3[1][0][:, :, other])


def test_checkerboard_trains() -> None:
    """Gradients reach the spatial context and the rate is differentiable."""
    torch.manual_seed(0)
    em = DCAEEntropyModel(8, 2, side_channels=5, spatial_context="checkerboard", **TINY).train()
    y = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = em(y, torch.randn(2, 5, 4, 4))
    rate = -out["likelihoods"]["y"].log2().sum()
    (rate + out["y_hat"].pow(2).mean()).backward()
    assert em.context_prediction[0].weight.grad is not None
    assert em.context_prediction[0].weight.grad.abs().sum() > 0
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_drops_into_compressai_hyperprior_latent_codec() -> None:
    """Inside CompressAI's HyperpriorLatentCodec with a side-parameter count
    other than 2M, batch 2, exact round trip."""
    torch.manual_seed(0)
    n, m, side = 8, 20, 12
    h_a = nn.Sequential(conv(m, n, 3, 1), nn.ReLU(), conv(n, n, 5, 2), nn.ReLU(), conv(n, n))
    h_s = nn.Sequential(deconv(n, n), nn.ReLU(), deconv(n, side))
    codec = HyperpriorLatentCodec(
        latent_codec={
            "y": DCAEEntropyModel(
                m, slice_sizes=[2, 2, 4, 12], side_channels=side, lrp=False, **TINY
            ),
            "hyper": HyperLatentCodec(EntropyBottleneck(n), h_a, h_s, quantizer="ste"),
        }
    ).eval()
    codec.y.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    codec.hyper.entropy_bottleneck.update(force=True)
    y = torch.randn(2, m, 6, 5) * 3
    with torch.no_grad():
        enc = codec.compress(y)
        dec = codec.decompress(enc["strings"], enc["shape"])
        fwd = codec(y)
    assert torch.equal(dec["y_hat"], enc["y_hat"])
    assert torch.equal(fwd["y_hat"], enc["y_hat"])
