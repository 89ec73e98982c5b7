"""Attention backends: equivalence, masking semantics, caches, chunking.

Tolerances: fp32 on CPU, every backend within ``ATOL = 1e-5`` of the reference
backend and of a naive per-window implementation written here; fp16/bf16 on
CUDA within ``5e-2`` of fp32 (tests marked ``cuda``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import dcae
import dcae.layers.window_attention as window_attention
from dcae.layers.attention import attention_backend, dictionary_attention
from dcae.layers.window_attention import WindowAttention

ATOL = 1e-5
WINDOW_BACKENDS = ("reference", "fused", "sdpa", "auto")


def naive_window_attention(module: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Swin (shifted) window attention written window by window, token by token
    masks, independent of the module's layout code: zero padding at the
    bottom/right, cyclic shift, Swin's region labels, padded keys hidden."""
    b, h, w, c = x.shape
    ws, heads, d = module.window_size, module.num_heads, module.head_dim
    shift = ws // 2 if module.shifted else 0
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    xp = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    xp[:, :h, :w] = x
    valid = torch.zeros(hp, wp, dtype=torch.bool)
    valid[:h, :w] = True
    region = torch.zeros(hp, wp, dtype=torch.long)
    if shift:
        label = 0
        for rs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for cs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                region[rs, cs] = label
                label += 1
        xp = torch.roll(xp, (-shift, -shift), (1, 2))
        valid = torch.roll(valid, (-shift, -shift), (0, 1))
    table = module.relative_position_bias.detach()  # (heads, 2ws-1, 2ws-1)
    wq, bq = module.qkv.weight.detach(), module.qkv.bias.detach()
    out = torch.zeros_like(xp)
    for i in range(0, hp, ws):
        for j in range(0, wp, ws):
            ri, ci = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
            ri, ci = ri.flatten(), ci.flatten()
            bias = table[:, ri[:, None] - ri[None, :] + ws - 1, ci[:, None] - ci[None, :] + ws - 1]
            reg = region[i + ri, j + ci]
            ok = valid[i + ri, j + ci]
            hidden = (reg[:, None] != reg[None, :]) | (ok[:, None] & ~ok[None, :])
            tok = xp[:, i : i + ws, j : j + ws].reshape(b, ws * ws, c)
            q, k, v = F.linear(tok, wq, bq).view(b, ws * ws, 3, heads, d).permute(2, 0, 3, 1, 4)
            sim = q @ k.transpose(-2, -1) * module.scale + bias
            sim = sim.masked_fill(hidden, float("-inf"))
            o = (sim.softmax(-1) @ v).transpose(1, 2).reshape(b, ws * ws, c)
            out[:, i : i + ws, j : j + ws] = module.proj(o).detach().view(b, ws, ws, c)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :h, :w]


def _module(dim=16, head_dim=4, window=4, shifted=False, seed=0) -> WindowAttention:
    torch.manual_seed(seed)
    m = WindowAttention(dim, head_dim, window, shifted).eval()
    with torch.no_grad():  # a bias large enough to matter
        m.relative_position_bias.normal_(0, 0.5)
    return m


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 13),
    w=st.integers(1, 13),
    b=st.integers(1, 2),
    shifted=st.booleans(),
    window=st.sampled_from([2, 4]),
    backend=st.sampled_from(WINDOW_BACKENDS),
)
def test_window_attention_matches_naive_reference(h, w, b, shifted, window, backend):
    m = _module(window=window, shifted=shifted)
    x = torch.randn(b, h, w, 16)
    with torch.no_grad(), attention_backend(backend, m):
        out = m(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, naive_window_attention(m, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("hw", [(16, 24), (8, 8), (13, 21), (3, 5)])
@pytest.mark.parametrize("b", [1, 3])
def test_backends_agree_window8(shifted, hw, b):
    m = _module(dim=32, head_dim=8, window=8, shifted=shifted)
    x = torch.randn(b, *hw, 32)
    with torch.no_grad():
        with attention_backend("reference", m):
            ref = m(x)
        for backend in ("fused", "sdpa", "auto"):
            with attention_backend(backend, m):
                torch.testing.assert_close(m(x), ref, atol=ATOL, rtol=0)


def test_batch_elements_are_independent():
    m = _module(shifted=True)
    x = torch.randn(3, 9, 11, 16)
    with torch.no_grad():
        full = m(x)
        for i in range(3):
            torch.testing.assert_close(full[i : i + 1], m(x[i : i + 1]), atol=ATOL, rtol=0)


def test_padding_does_not_leak_into_real_positions():
    """Outputs of a padded map equal those of the same map embedded in a
    bigger one whose extra rows/cols are in *other* windows: only the masking
    of padded keys can make them agree (zero padding would otherwise add
    ``exp(q.k_pad)`` terms)."""
    m = _module(window=4, shifted=False)
    x = torch.randn(1, 6, 7, 16)  # pads to 8 x 8: partial windows
    with torch.no_grad():
        out = m(x)
        # windows fully inside x are unaffected by anything else
        torch.testing.assert_close(out[:, :4, :4], m(x[:, :4, :4]), atol=ATOL, rtol=0)
        # a partial window alone: the same as the padded one
        torch.testing.assert_close(out[:, 4:, 4:], m(x[:, 4:, 4:]), atol=ATOL, rtol=0)
        # and it differs from attending to zero tokens (what padding without a mask gives)
        zero = torch.zeros(1, 8, 8, 16)
        zero[:, :6, :7] = x
        assert (m(zero)[:, 4:6, 4:7] - out[:, 4:, 4:]).abs().max() > 1e-4


@pytest.mark.parametrize("backend", ["reference", "fused", "sdpa"])
def test_chunking_is_invisible_and_bounded(backend, monkeypatch):
    """One window per chunk gives the same result as one chunk for all; every
    chunk's score tensor respects the module's byte budget."""
    m = _module(dim=32, head_dim=8, window=4, shifted=True)
    x = torch.randn(2, 12, 10, 32)
    per_window = m.num_heads * 16 * 16 * 4
    sizes = []
    core = WindowAttention._core

    def spy(self, backend_, q, k, v, additive):
        sizes.append(additive.numel() * additive.element_size())
        return core(self, backend_, q, k, v, additive)

    with torch.no_grad(), attention_backend(backend, m):
        m.chunk_bytes = 1 << 30
        whole = m(x)
        monkeypatch.setattr(WindowAttention, "_core", spy)
        for budget in (per_window, 3 * per_window + 1):
            sizes.clear()
            m.chunk_bytes = budget
            torch.testing.assert_close(m(x), whole, atol=ATOL, rtol=0)
            assert max(sizes) <= budget
            assert sum(sizes) == 2 * 3 * 3 * per_window  # every window exactly once


def test_geometry_cached_per_shape_and_additive_follows_parameter():
    m = _module(shifted=True)
    x = torch.randn(1, 8, 12, 16)
    with torch.no_grad():
        first = m(x)
        geo = m.geometry(1, 8, 12, x.device)
        m(x)
        assert m.geometry(1, 8, 12, x.device) is geo
        assert m.geometry(2, 8, 12, x.device) is not geo
        key = (8, 12, x.device, torch.float32)
        additive = m._memo_additive(key, geo)
        assert m._memo_additive(key, geo) is additive  # memoised while the table is unchanged
        m.relative_position_bias.mul_(2.0)  # an in-place update (optimiser step)
        assert torch.equal(m._memo_additive(key, geo)[:, :, 0, 0], 2 * additive[:, :, 0, 0])
        changed = m(x)
    assert (changed - first).abs().max() > 1e-4
    torch.testing.assert_close(changed, naive_window_attention(m, x), atol=ATOL, rtol=0)


def test_mask_types_are_few():
    """Shifted windows without padding need 4 mask types whatever the size."""
    m = _module(window=4, shifted=True)
    geo = m.geometry(1, 64, 96, torch.device("cpu"))
    assert geo.masks is not None and geo.masks.shape[0] == 4
    assert geo.types.shape == (16 * 24,)
    regular = _module(window=4, shifted=False).geometry(1, 64, 96, torch.device("cpu"))
    assert regular.masks is None and int(regular.types.max()) == 0


@pytest.mark.parametrize("backend", ["fused", "sdpa"])
def test_gradients_match_reference(backend):
    m = _module(shifted=True).train()
    x = torch.randn(2, 7, 9, 16)
    grads = {}
    for name in ("reference", backend):
        m.zero_grad()
        xx = x.clone().requires_grad_(True)
        with attention_backend(name, m):
            (m(xx) ** 2).sum().backward()
        grads[name] = (xx.grad, m.relative_position_bias.grad.clone(), m.qkv.weight.grad.clone())
    for a, b in zip(grads["reference"], grads[backend]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(
    b=st.integers(1, 3),
    heads=st.sampled_from([1, 2, 4]),
    length=st.integers(1, 40),
    entries=st.integers(1, 20),
    backend=st.sampled_from(["fused", "sdpa", "auto"]),
)
def test_dictionary_attention_backends_agree(b, heads, length, entries, backend):
    d = 8
    q = torch.randn(b, heads, length, d)
    k, v = torch.randn(heads, entries, d), torch.randn(heads, entries, d)
    t = torch.rand(heads) * 2 + 0.1
    naive = torch.softmax(t.view(1, -1, 1, 1) * q @ k.transpose(-2, -1), dim=-1) @ v
    for name in ("reference", backend):
        out = dictionary_attention(q, k, v, t, name)
        torch.testing.assert_close(out, naive, atol=ATOL, rtol=0)


def test_default_backend_switch():
    """Without a model the switch sets the default that new modules copy."""
    before = dcae.get_attention_backend()
    with dcae.attention_backend("fused"):
        assert dcae.get_attention_backend() == "fused"
        with dcae.attention_backend("reference"):
            assert dcae.get_attention_backend() == "reference"
        assert dcae.get_attention_backend() == "fused"
    assert dcae.get_attention_backend() == before
    with pytest.raises(ValueError, match="not one of"):
        dcae.set_attention_backend("nope")
    with pytest.raises(ValueError, match="WindowAttention expects"):
        _module()(torch.randn(1, 4, 4, 8))


def test_environment_variable_selects_backend():
    code = "import dcae.layers.attention as a; print(a.get_attention_backend())"
    env = dict(os.environ, DCAE_ATTENTION_BACKEND="SDPA")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "sdpa", out.stderr
    env["DCAE_ATTENTION_BACKEND"] = "bogus"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "DCAE_ATTENTION_BACKEND" in out.stderr


@pytest.mark.official
@pytest.mark.skipif(not os.environ.get("DCAE_OFFICIAL_REPO"), reason="DCAE_OFFICIAL_REPO not set")
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("backend", ["reference", "fused", "sdpa"])
def test_matches_official_wmsa(shifted, backend):
    sys.path.insert(0, os.environ["DCAE_OFFICIAL_REPO"])
    wmsa_cls = pytest.importorskip("models.dcae").WMSA
    m = _module(dim=64, head_dim=16, window=8, shifted=shifted)
    official = wmsa_cls(64, 64, 16, 8, "SW" if shifted else "W").eval()
    official.embedding_layer.load_state_dict(m.qkv.state_dict())
    official.linear.load_state_dict(m.proj.state_dict())
    official.relative_position_params.data.copy_(m.relative_position_bias.data)
    x = torch.randn(2, 16, 24, 64)
    with torch.no_grad(), attention_backend(backend, m):
        out = m(x)
        torch.testing.assert_close(out, official(x), atol=ATOL, rtol=0)
    if backend == "reference":  # same operations in the same order
        assert torch.equal(out, official(x))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["reference", "fused", "sdpa", "auto"])
@pytest.mark.parametrize("shifted", [False, True])
def test_cuda_low_precision_matches_fp32(dtype, backend, shifted):
    m = _module(dim=64, head_dim=16, window=8, shifted=shifted).cuda()
    x = torch.randn(2, 21, 30, 64, device="cuda")
    with torch.no_grad():
        with attention_backend("reference", m):
            ref = m(x)
        with attention_backend(backend, m):
            out = m.to(dtype)(x.to(dtype)).float()
    torch.testing.assert_close(out, ref, atol=5e-2, rtol=5e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_dictionary_low_precision(dtype):
    q = torch.randn(2, 4, 100, 32, device="cuda")
    k, v = torch.randn(4, 64, 32, device="cuda"), torch.randn(4, 64, 32, device="cuda")
    t = torch.ones(4, device="cuda")
    ref = dictionary_attention(q, k, v, t, "reference")
    out = dictionary_attention(q.to(dtype), k.to(dtype), v.to(dtype), t.to(dtype), "sdpa")
    out = out.float()
    torch.testing.assert_close(out, ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("backend", ["fused", "sdpa"])
def test_results_survive_geometry_cache_turnover(backend):
    """Results stay right while the geometry cache turns over (a bias+mask
    cache was once keyed on ``id(geo)``, which a new geometry can reuse once
    the old one is freed; every shape is checked)."""
    m = _module(window=4, shifted=True)
    m.backend = backend
    shapes = [(h, w) for h in (5, 6, 7, 8, 9, 11, 12) for w in (4, 6, 7, 10, 13)]
    assert len(shapes) > 2 * window_attention._CACHE_LIMIT
    with torch.no_grad():
        for h, w in shapes + shapes[::-1]:
            x = torch.randn(1, h, w, 16)
            out = m(x)
            torch.testing.assert_close(out, naive_window_attention(m, x), atol=ATOL, rtol=0)
