"""Fast mode: reduced-precision g_a/g_s, float32 entropy model, streams
decodable across modes."""

from __future__ import annotations

import pytest
import torch

from dcae import DCAEModel
from dcae.layers.fast import fast_mode, is_fast_mode


@pytest.fixture()
def model() -> DCAEModel:
    torch.manual_seed(0)
    m = DCAEModel("small").eval()
    m.update(force=True)
    return m


def _image() -> torch.Tensor:
    torch.manual_seed(3)
    # smooth content so that a random-weight codec is not pure noise
    base = torch.rand(1, 3, 6, 7)
    return torch.nn.functional.interpolate(base, size=(90, 100), mode="bilinear")


def test_switch_and_validation(model):
    assert is_fast_mode(model) is None
    assert fast_mode(model) is model and is_fast_mode(model) == torch.bfloat16
    fast_mode(model, enabled=False)
    assert is_fast_mode(model) is None
    with pytest.raises(ValueError, match="dtype"):
        fast_mode(model, torch.float64)
    with pytest.raises(ValueError, match="DCAEModel"):
        fast_mode(torch.nn.Linear(2, 2))


def test_transforms_run_in_low_precision_entropy_model_in_fp32(model):
    x = _image()
    seen = {}

    def spy(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)

        return hook

    hooks = [
        model.g_a[0].conv.register_forward_hook(spy("g_a")),
        model.entropy_model.mean_transforms[0].register_forward_hook(spy("entropy")),
    ]
    fast_mode(model)
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    assert seen == {"g_a": torch.bfloat16, "entropy": torch.float32}
    assert out["x_hat"].dtype == torch.float32
    assert out["likelihoods"]["y"].dtype == torch.float32


def test_round_trip_exact_and_cross_mode(model):
    x = _image()
    with torch.no_grad():
        exact = model.compress(x)
        exact_x_hat = model.decompress(exact["strings"], exact["shape"])["x_hat"]
        fast_mode(model)
        fast = model.compress(x)
        # decoding verifies every slice's symbols against the encoder's checksums
        a = model.decompress(fast["strings"], fast["shape"])
        b = model.decompress(fast["strings"], fast["shape"])
        assert torch.equal(a["x_hat"], b["x_hat"])
        # an exact-mode stream decodes in fast mode: same symbols, g_s in bf16
        c = model.decompress(exact["strings"], exact["shape"])
        fast_mode(model, enabled=False)
        # and a fast-mode stream decodes in exact mode
        d = model.decompress(fast["strings"], fast["shape"])
    assert a["x_hat"].shape == x.shape and a["x_hat"].dtype == torch.float32
    # only g_s precision separates c from the exact decode: small, but not zero
    diff = (c["x_hat"] - exact_x_hat).abs().max().item()
    assert 0 < diff < 0.1
    mse = lambda u, v: torch.mean((u - v) ** 2).item()  # noqa: E731
    assert mse(d["x_hat"], a["x_hat"]) < 1e-3
