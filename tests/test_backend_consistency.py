"""Regression: forward, compress and decompress agree whatever ran before them."""

from __future__ import annotations

import pytest
import torch

from dcae import attention_backend


@pytest.mark.xfail(
    strict=True,
    reason="known bug (2026-11-25): a decompress after calls on other image shapes "
    "in the same process drifts; "
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
        dec = model.decompress(enc["strings"], enc["shape"], checksums=enc["checksums"])
    assert torch.equal(dec["x_hat"], ref)
