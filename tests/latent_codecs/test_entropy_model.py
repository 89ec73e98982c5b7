"""DCAEEntropyModel: causality, channel-slice ordering, exact coding round trips."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
from compressai.models.base import get_scale_table
from hypothesis import given, settings
from hypothesis import strategies as st

from dcae import DCAEEntropyModel, DecodingError
from dcae.latent_codecs.slice_coders import SliceCoder

SLICES = (8, 8, 8)
SIDE = 12


TINY = dict(
    slice_sizes=SLICES,
    side_channels=SIDE,
    max_support_slices=-1,
    dict_entries=8,
    dict_dim=16,
    dict_heads=2,
    msfa_depth=1,
    mlp_ratio=2,
    hidden_channels=(16,),
)


def tiny_entropy_model(seed: int = 0, cls=DCAEEntropyModel, **kw) -> DCAEEntropyModel:
    torch.manual_seed(seed)
    args = {**TINY, **kw}
    em = cls(sum(args["slice_sizes"]), **args).eval()
    em.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    return em


def slice_outputs(
    em: DCAEEntropyModel, y: torch.Tensor, side: torch.Tensor
) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Means/scales of every slice and y_hat, through the model's one slice loop."""
    coder = RecordingCoder(y.split(em.slice_sizes, dim=1))
    with torch.no_grad():
        y_hat = em.run_slices(side, (y.shape[2], y.shape[3]), coder)
    return coder.params, y_hat


class RecordingCoder(SliceCoder):
    """Rounds around the means and records every slice's parameters."""

    def __init__(self, y_slices):
        self.y_slices = y_slices
        self.params: List[Tuple[torch.Tensor, torch.Tensor]] = []

    def code(self, i, means, scales, mask):
        self.params.append((means, scales))
        return torch.round(self.y_slices[i] - means) + means


EM = tiny_entropy_model()


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(0, len(SLICES) - 1),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_causality(k: int, h: int, w: int, seed: int) -> None:
    """Slices 0..k depend only on y slices 0..k-1 (and the side parameters)."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randn(1, SIDE, h, w, generator=g)
    y = torch.randn(1, sum(SLICES), h, w, generator=g) * 4
    y2 = y.clone()
    start = sum(SLICES[:k])
    y2[:, start:] = torch.randn(1, y.shape[1] - start, h, w, generator=g) * 4
    p1, yh1 = slice_outputs(EM, y, side)
    p2, yh2 = slice_outputs(EM, y2, side)
    for i in range(k + 1):
        assert torch.equal(p1[i][0], p2[i][0]), f"means of slice {i} depend on later slices"
        assert torch.equal(p1[i][1], p2[i][1]), f"scales of slice {i} depend on later slices"
    end = sum(SLICES[:k])
    assert torch.equal(yh1[:, :end], yh2[:, :end])


@settings(max_examples=15, deadline=None)
@given(j=st.integers(0, len(SLICES) - 2), seed=st.integers(0, 2**16))
def test_causality_not_vacuous(j: int, seed: int) -> None:
    """Changing an earlier slice j does change the parameters of every later slice."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randn(1, SIDE, 4, 4, generator=g)
    y = torch.randn(1, sum(SLICES), 4, 4, generator=g) * 4
    y2 = y.clone()
    a, b = sum(SLICES[:j]), sum(SLICES[: j + 1])
    y2[:, a:b] += 5.0
    p1, _ = slice_outputs(EM, y, side)
    p2, _ = slice_outputs(EM, y2, side)
    for i in range(j + 1, len(SLICES)):
        assert not torch.equal(p1[i][0], p2[i][0])
        assert not torch.equal(p1[i][1], p2[i][1])


def test_max_support_slices_limits_context() -> None:
    """With max_support_slices=1, slice 2 ignores slice 1."""
    em = tiny_entropy_model(max_support_slices=1)
    assert [em.context_channels(i) for i in range(3)] == [SIDE, SIDE + 8, SIDE + 8]
    g = torch.Generator().manual_seed(1)
    side = torch.randn(1, SIDE, 3, 3, generator=g)
    y = torch.randn(1, 24, 3, 3, generator=g) * 3
    y2 = y.clone()
    y2[:, 8:16] += 7.0  # slice 1 changes
    p1, _ = slice_outputs(em, y, side)
    p2, _ = slice_outputs(em, y2, side)
    assert torch.equal(p1[2][0], p2[2][0]) and torch.equal(p1[2][1], p2[2][1])


@pytest.mark.parametrize("batch", [1, 3])
def test_encoder_decoder_parameters_identical(batch: int) -> None:
    """For every slice the decoder computes exactly the encoder's means and scales."""
    em = EM
    g = torch.Generator().manual_seed(batch)
    side = torch.randn(batch, SIDE, 5, 7, generator=g)
    y = torch.randn(batch, 24, 5, 7, generator=g) * 3
    enc_params, dec_params = [], []
    recorded = enc_params
    handle = em.register_params_hook(lambda i, means, scales: recorded.append((means, scales)))
    try:
        with torch.no_grad():
            enc = em.compress(y, side)
            recorded = dec_params
            dec = em.decompress(enc["strings"], enc["shape"], side)
    finally:
        handle.remove()
    assert len(enc_params) == len(dec_params) == len(SLICES)
    for i, ((m1, s1), (m2, s2)) in enumerate(zip(enc_params, dec_params)):
        assert torch.equal(m1, m2), f"means of slice {i} differ"
        assert torch.equal(s1, s2), f"scales of slice {i} differ"
    assert torch.equal(enc["y_hat"], dec["y_hat"])
    assert len(enc["strings"][0]) == batch


class ReversedOrderModel(DCAEEntropyModel):
    """A wrong decoder: visits the slices last to first."""

    def run_slices(self, side_params, hw, coder, final_residual=True, mode=None):
        side_params = side_params[:, :, : hw[0], : hw[1]]
        done = {}
        for i in reversed(range(self.num_slices)):
            prev = [done.get(j, torch.zeros_like(side_params[:, :1]).expand(
                -1, self.slice_sizes[j], -1, -1)) for j in range(i)]  # fmt: skip
            means, scales, support = self.slice_params(i, side_params, prev)
            done[i] = self.residual(i, support, coder.code(i, means, scales, None))
            coder.end_slice(i)
        return torch.cat([done[i] for i in range(self.num_slices)], dim=1)


def test_wrong_slice_order_does_not_decode() -> None:
    g = torch.Generator().manual_seed(3)
    side = torch.randn(1, SIDE, 4, 4, generator=g)
    y = torch.randn(1, 24, 4, 4, generator=g) * 3
    with torch.no_grad():
        enc = EM.compress(y, side)
    wrong = tiny_entropy_model(cls=ReversedOrderModel)
    wrong.load_state_dict(EM.state_dict())
    with torch.no_grad(), pytest.raises(DecodingError, match="slice"):
        wrong.decompress(enc["strings"], enc["shape"], side)


@settings(max_examples=10, deadline=None)
@given(
    batch=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_compress_round_trip_matches_forward(batch: int, h: int, w: int, seed: int) -> None:
    """decompress(compress(y)) == compress y_hat == eval forward y_hat, exactly."""
    g = torch.Generator().manual_seed(seed)
    side = torch.randn(batch, SIDE, h + 2, w + 1, generator=g)  # larger side params are cropped
    y = torch.randn(batch, 24, h, w, generator=g) * 5
    with torch.no_grad():
        fwd = EM(y, side)
        enc = EM.compress(y, side)
        dec = EM.decompress(enc["strings"], enc["shape"], side)
    assert torch.equal(fwd["y_hat"], enc["y_hat"])
    assert torch.equal(dec["y_hat"], enc["y_hat"])
    assert fwd["likelihoods"]["y"].shape == y.shape


def test_real_bits_at_least_estimate() -> None:
    """Real rANS bits >= the -log2 likelihood estimate, within a small overhead,
    for latents drawn from the model's own Gaussians (slice by slice)."""
    g = torch.Generator().manual_seed(5)
    side = torch.randn(2, SIDE, 8, 8, generator=g)
    y = torch.zeros(2, 24, 8, 8)
    for i in range(len(SLICES)):
        params, _ = slice_outputs(EM, y, side)
        means, scales = params[i]
        a, b = sum(SLICES[:i]), sum(SLICES[: i + 1])
        scales = scales.clamp_min(0.11)  # the lower bound GaussianConditional applies
        y[:, a:b] = means + scales * torch.randn(means.shape, generator=g)
    with torch.no_grad():
        lik = EM(y, side)["likelihoods"]["y"]
        enc = EM.compress(y, side)
    for b in range(2):
        est = float(-torch.log2(lik[b]).sum())
        real = 8 * (len(enc["strings"][0][b]) - EM.string_overhead)  # rANS payload
        assert real >= est * 0.99
        assert real <= est * 1.1 + 64


def test_build_indexes_picks_the_level_nearest_in_log_domain() -> None:
    gen = torch.Generator().manual_seed(0)
    scales = torch.exp(torch.empty(2, 8, 5, 5).uniform_(-4, 7, generator=gen))
    scales[0, 0, 0, 0] = 0.0
    ours = EM.build_indexes(scales)
    gc = EM.gaussian_conditional
    bounded = gc.lower_bound_scale(scales).double()
    table = gc.scale_table.double()
    nearest = (bounded.log().unsqueeze(-1) - table.log()).abs().argmin(-1)
    assert torch.equal(ours.long(), nearest)
    # CompressAI rounds up instead: a different (wider) level for about half the scales
    compressai = gc.build_indexes(scales)
    assert (compressai >= ours).all() and (compressai > ours).float().mean() > 0.3


def test_training_mode_gradients_flow() -> None:
    em = tiny_entropy_model().train()
    side = torch.randn(2, SIDE, 4, 4, requires_grad=True)
    y = torch.randn(2, 24, 4, 4, requires_grad=True)
    out = em(y, side)
    loss = -out["likelihoods"]["y"].log2().sum() + out["y_hat"].square().sum()
    loss.backward()
    assert side.grad is not None and side.grad.abs().sum() > 0
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert em.dictionary.grad is not None and em.dictionary.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(latent_channels=30, num_slices=4), "divisible"),
        (dict(latent_channels=32, slice_sizes=[16, 8]), "sum to"),
        (dict(latent_channels=32, slice_sizes=[32, 0]), "positive"),
        (dict(latent_channels=32, num_slices=2, dict_dim=30, dict_heads=4), "multiple"),
        (dict(latent_channels=32, num_slices=2, max_support_slices=-2), "max_support"),
        (dict(latent_channels=32, num_slices=2, hidden_channels=()), "hidden"),
        (dict(latent_channels=0), "positive"),
    ],
)
def test_invalid_configurations_raise(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DCAEEntropyModel(**kwargs)


def test_wrong_shapes_raise() -> None:
    with pytest.raises(ValueError, match="side_params"):
        EM(torch.zeros(1, 24, 4, 4), torch.zeros(1, SIDE + 1, 4, 4))
    with pytest.raises(ValueError, match="smaller"):
        EM(torch.zeros(1, 24, 4, 4), torch.zeros(1, SIDE, 3, 4))
    with pytest.raises(ValueError, match="y must be"):
        EM(torch.zeros(1, 23, 4, 4), torch.zeros(1, SIDE, 4, 4))


def test_compress_without_y_hat_writes_the_same_stream() -> None:
    torch.manual_seed(3)
    side = torch.randn(1, SIDE, 4, 6)
    y = torch.randn(1, EM.latent_channels, 4, 6) * 3
    with torch.no_grad():
        full = EM.compress(y, side)
        lean = EM.compress(y, side, return_y_hat=False)
        dec = EM.decompress(lean["strings"], lean["shape"], side)
    assert "y_hat" not in lean
    assert lean["strings"] == full["strings"]
    assert torch.equal(dec["y_hat"], full["y_hat"])
