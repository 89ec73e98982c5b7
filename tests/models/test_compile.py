"""torch.compile: the transforms and a per-slice entropy network compile
without graph breaks (``fullgraph=True``) on CPU and match eager mode.

Compiling takes minutes on a loaded 2-core machine, so these are ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from dcae import DCAEModel, attention_backend

pytestmark = pytest.mark.slow

ATOL = 1e-4


@pytest.fixture(scope="module")
def model() -> DCAEModel:
    torch.manual_seed(0)
    return DCAEModel("small").eval()


def _compile(module: torch.nn.Module) -> torch.nn.Module:
    torch._dynamo.reset()
    return torch.compile(module, fullgraph=True, dynamic=False)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_g_a_and_g_s_compile_fullgraph(model, backend):
    # 72 x 88: the 16 x 20 ... maps are not window multiples (padded windows)
    x = torch.rand(1, 3, 72, 88)
    with torch.no_grad(), attention_backend(backend, model):
        y = model.g_a(x)
        torch.testing.assert_close(_compile(model.g_a)(x), y, atol=ATOL, rtol=0)
        x_hat = model.g_s(y)
        torch.testing.assert_close(_compile(model.g_s)(y), x_hat, atol=ATOL, rtol=0)


def test_entropy_slice_networks_compile_fullgraph(model):
    em = model.entropy_model
    ctx = torch.randn(1, em.context_channels(0), 5, 6)
    with torch.no_grad():
        features = em.cross_attention[0](ctx, em.dictionary)
        compiled = _compile(em.cross_attention[0])
        torch.testing.assert_close(compiled(ctx, em.dictionary), features, atol=ATOL, rtol=0)
        support = torch.cat([ctx, features], dim=1)
        means = em.mean_transforms[0](support)
        compiled = _compile(em.mean_transforms[0])
        torch.testing.assert_close(compiled(support), means, atol=ATOL, rtol=0)


def test_hyper_synthesis_compiles_fullgraph(model):
    z_hat = torch.round(torch.randn(1, model.config.z_channels, 2, 3))
    h_s = model.latent_codec.hyper.h_s
    with torch.no_grad():
        torch.testing.assert_close(_compile(h_s)(z_hat), h_s(z_hat), atol=ATOL, rtol=0)
