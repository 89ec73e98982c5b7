"""Regression: forward, compress and decompress agree whatever ran before them."""

from __future__ import annotations

import pytest
import torch

from dcae import attention_backend


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_decode_after_other_shapes_matches_forward(small_model, backend):
    torch.manual_seed(7)
    small = torch.rand(1, 3, 40, 56)
    x = torch.rand(1, 3, 136, 200)
    with attention_backend(backend, small_model), torch.no_grad():
        small_model(small)  # fill caches with other shapes first
        ref = small_model(x)["x_hat"].clamp(0, 1)
        enc = small_model.compress(x)
        small_model(small)
        dec = small_model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], ref)


def test_decode_matches_forward_at_size_not_multiple_of_64():
    """Regression (fixed 2026-11-25): y of 9x13 (side params cropped from 12x16)
    decoded with 3e-8 drift because the encoder's slices were non-contiguous."""
    from dcae import DCAEModel

    torch.manual_seed(0)
    model = DCAEModel("small").eval()
    model.update(force=True)
    x = torch.rand(1, 3, 136, 200)
    with torch.no_grad():
        ref = model(x)["x_hat"].clamp(0, 1)
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], ref)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("hw", [(136, 200), (64, 64), (72, 40), (200, 136)])
def test_forward_side_params_and_x_hat_equal_the_decoders(small_model, seed, hw):
    """Regression (fixed 2026-11-25): ``forward`` rounded z with ``quantize_ste``
    (off by an ulp) on a channels-last tensor, so its side parameters and
    ``x_hat`` differed from the decoder's by ~1e-7 on some inputs."""
    torch.manual_seed(seed)
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        out = small_model(x)
        enc = small_model.compress(x)
        dec = small_model.decompress(enc["strings"], enc["shape"])
        y = small_model.g_a(x)
        hyper = small_model.latent_codec.hyper
        fwd_params = hyper(y)["params"]
        dec_params = hyper.decompress([enc["strings"][-1]], enc["shape"]["hyper"])["params"]
    assert torch.equal(fwd_params, dec_params)
    assert torch.equal(dec["x_hat"], out["x_hat"].clamp(0, 1))


def test_exact_rounding_keeps_the_straight_through_gradient():
    from dcae.latent_codecs.rounding import round_around_means

    y = torch.randn(2, 3, 4, 5, requires_grad=True)
    means = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = round_around_means(y, means)
    assert torch.equal(out, torch.round(y - means) + means)
    out.mul(torch.arange(5.0)).sum().backward()
    assert torch.equal(y.grad, torch.arange(5.0).expand_as(y))
    assert means.grad is None  # d(round(y - m) + m)/dm = -1 + 1 under the STE rule
