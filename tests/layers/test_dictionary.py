"""DictionaryCrossAttention and MSFA: shapes, dtypes, batch independence, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcae import MSFA, DictionaryCrossAttention


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    cin=st.integers(1, 20),
    cout=st.integers(1, 12),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    entries=st.integers(1, 16),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    depth=st.integers(0, 3),
)
def test_dictionary_cross_attention_shapes(
    batch, cin, cout, heads, head_dim, entries, h, w, depth
):
    torch.manual_seed(0)
    dim = heads * head_dim
    dca = DictionaryCrossAttention(
        cin, cout, dim=dim, num_heads=heads, num_entries=entries, msfa_depth=depth, mlp_ratio=2
    ).eval()
    x = torch.randn(batch, cin, h, w)
    out = dca(x)
    assert out.shape == (batch, cout, h, w)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out64 = dca.double()(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, atol=1e-4, rtol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    dim=st.integers(1, 24),
    depth=st.integers(0, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
)
def test_msfa_shapes(batch, dim, depth, h, w):
    torch.manual_seed(1)
    msfa = MSFA(dim, depth).eval()
    x = torch.randn(batch, dim, h, w)
    out = msfa(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert len(msfa.units) == depth
    assert msfa.merge.in_channels == dim * (depth + 1)


def test_msfa_receptive_field_grows_with_depth():
    """Each unit adds a 3x3 depthwise conv: an impulse spreads by one pixel per unit
    (plus the 7x7 spatial attention)."""
    torch.manual_seed(2)
    for depth in (1, 2, 3):
        msfa = MSFA(4, depth).eval()
        with torch.no_grad():
            msfa.spatial_attention.conv.weight.zero_()  # constant attention map
        x = torch.zeros(1, 4, 15, 15)
        x[..., 7, 7] = 1.0
        base = msfa(torch.zeros_like(x))
        diff = (msfa(x) - base).abs().sum(1)[0]
        rows = torch.nonzero(diff.sum(1) > 1e-7).flatten()
        assert int(rows.max() - rows.min()) == 2 * depth


def test_dictionary_shared_across_batch():
    """A sample alone gives the same output as inside a batch."""
    torch.manual_seed(3)
    dca = DictionaryCrossAttention(10, 6, dim=16, num_heads=4, num_entries=8, mlp_ratio=2).eval()
    x = torch.randn(3, 10, 5, 6)
    with torch.no_grad():
        together = dca(x)
        alone = torch.cat([dca(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


def test_dictionary_matters():
    """The output depends on the dictionary passed in (keys and values)."""
    torch.manual_seed(4)
    dca = DictionaryCrossAttention(10, 6, dim=16, num_heads=4, mlp_ratio=2).eval()
    x = torch.randn(1, 10, 4, 4)
    d1, d2 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.no_grad():
        assert not torch.allclose(dca(x, d1), dca(x, d2))
        # permuting dictionary entries does not change attention output
        torch.testing.assert_close(dca(x, d1), dca(x, d1[torch.randperm(8)]), atol=1e-5, rtol=0)


def test_temperature_sharpens_attention():
    """Large temperatures make the attention select the single best entry."""
    torch.manual_seed(5)
    from dcae.layers.attention import dictionary_attention

    q = torch.randn(1, 2, 5, 4)
    k = torch.randn(2, 6, 4)
    v = torch.randn(2, 6, 4)
    out = dictionary_attention(q, k, v, torch.full((2,), 1e4))
    best = torch.einsum("bhld,hed->bhle", q, k).argmax(-1)
    expected = torch.stack([v[h][best[0, h]] for h in range(2)])[None]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_wrong_shapes_raise():
    dca = DictionaryCrossAttention(10, 6, dim=16, num_heads=4, num_entries=8)
    with pytest.raises(ValueError, match="expects"):
        dca(torch.randn(1, 9, 4, 4))
    with pytest.raises(ValueError, match="dictionary"):
        dca(torch.randn(1, 10, 4, 4), torch.randn(8, 15))
    with pytest.raises(ValueError, match="no dictionary"):
        DictionaryCrossAttention(10, 6, dim=16, num_heads=4)(torch.randn(1, 10, 4, 4))
    with pytest.raises(ValueError, match="multiple"):
        DictionaryCrossAttention(10, 6, dim=15, num_heads=4)
    with pytest.raises(ValueError, match="MSFA expects"):
        MSFA(8)(torch.randn(1, 7, 4, 4))
    with pytest.raises(ValueError, match="depth"):
        MSFA(8, -1)
