"""Regression: forward, compress and decompress agree whatever ran before them."""

from __future__ import annotations

import pytest
import torch

from dcae import attention_backend


@pytest.mark.xfail(
    strict=True,
    reason="known bug (2026-11-25): since the chunked window attention, a decompress after "
    "calls on other image shapes in the same process drifts (checksums catch it); "
    "single-image processes (the CLI) are unaffected",
)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_decode_after_other_shapes_matches_forward(small_model, backend):
    torch.manual_seed(7)
    small = torch.rand(1, 3, 40, 56)
    x = torch.rand(1, 3, 136, 200)
    with attention_backend(backend), torch.no_grad():
        small_model(small)  # fill caches with other shapes first
        ref = small_model(x)["x_hat"].clamp(0, 1)
        enc = small_model.compress(x)
        small_model(small)
        dec = small_model.decompress(enc["strings"], enc["shape"], checksums=enc["checksums"])
    assert torch.equal(dec["x_hat"], ref)
