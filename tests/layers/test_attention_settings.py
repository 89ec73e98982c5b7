"""State rules (issue #14): a result depends only on the model and its settings.

* the attention backend and the window chunk budget are module attributes,
  copied from the defaults when a module is built; switching the default
  afterwards leaves existing modules alone, switching a model changes it;
* nothing is cached against pointers or version counters: ``load_state_dict``
  gives the new result, and models built or deep-copied under
  :func:`torch.inference_mode` run.
"""

from __future__ import annotations

import copy
from typing import Tuple

import pytest
import torch

import dcae
import dcae.layers.window_attention as window_attention
from dcae import DictionaryCrossAttention
from dcae.layers.attention import AttentionModule, attention_backend, set_attention_backend
from dcae.layers.window_attention import WindowAttention

ATOL = 1e-5


def _modules() -> Tuple[WindowAttention, DictionaryCrossAttention]:
    torch.manual_seed(0)
    window = WindowAttention(32, 8, 4, shifted=True).eval()
    cross = DictionaryCrossAttention(8, 8, dim=32, num_heads=4, num_entries=24).eval()
    with torch.no_grad():  # weights large enough that backends differ in the last bits
        window.relative_position_bias.normal_(0, 0.5)
        cross.temperature.uniform_(0.5, 2.0)
    return window, cross


def _inputs() -> Tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 9, 13, 32), torch.randn(2, 8, 7, 9)


def _run(window, cross, x, ctx) -> Tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return window(x), cross(ctx)


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("how", ["setter", "context"])
def test_default_switch_after_construction_leaves_existing_modules_alone(how):
    before = dcae.get_attention_backend()
    with attention_backend("sdpa"):  # modules copy the default when built
        window, cross = _modules()
    assert window.backend == cross.backend == "sdpa"
    assert dcae.get_attention_backend() == before
    x, ctx = _inputs()
    own = _run(window, cross, x, ctx)
    # the reference backend gives other bits on these inputs (so the check
    # below would see a switch)
    with attention_backend("reference", window), attention_backend("reference", cross):
        reference = _run(window, cross, x, ctx)
    assert not torch.equal(own[0], reference[0]) and not torch.equal(own[1], reference[1])
    try:
        if how == "setter":
            set_attention_backend("reference")
            after = _run(window, cross, x, ctx)
            new = WindowAttention(32, 8, 4)
        else:
            with attention_backend("reference"):
                after = _run(window, cross, x, ctx)
                new = WindowAttention(32, 8, 4)
        assert window.backend == cross.backend == "sdpa"
        assert _same(after, own)
        assert new.backend == "reference"  # modules built later follow the default
    finally:
        set_attention_backend(before)


def test_switch_on_a_model_changes_its_modules_and_restores_them():
    window, cross = _modules()
    window.backend = cross.backend = "sdpa"
    model = torch.nn.ModuleDict({"window": window, "cross": cross})
    x, ctx = _inputs()
    own = _run(window, cross, x, ctx)
    with attention_backend("reference", model):
        assert dcae.get_attention_backend(model) == "reference"
        reference = _run(window, cross, x, ctx)
    assert dcae.get_attention_backend(model) == "sdpa"
    assert _same(_run(window, cross, x, ctx), own)
    assert not _same(reference, own)
    set_attention_backend("reference", model)
    assert _same(_run(window, cross, x, ctx), reference)
    # each module gets its own setting back, even when they differed
    window.backend = "fused"
    with attention_backend("sdpa", model):
        assert window.backend == cross.backend == "sdpa"
    assert (window.backend, cross.backend) == ("fused", "reference")
    with pytest.raises(ValueError, match="mixes attention backends"):
        dcae.get_attention_backend(model)
    with pytest.raises(ValueError, match="no dcae attention module"):
        set_attention_backend("sdpa", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not one of"):
        window.backend = "nope"


def test_a_dcae_model_switches_every_attention_module():
    model = dcae.DCAEModel("small").eval()
    kinds = {type(m) for m in model.modules() if isinstance(m, AttentionModule)}
    assert kinds == {WindowAttention, DictionaryCrossAttention}
    dcae.set_attention_backend("reference", model)
    assert all(m.backend == "reference" for m in model.modules() if isinstance(m, AttentionModule))


def test_chunk_budget_is_a_module_setting():
    """No global decides the chunks: the per-device defaults are read-only and
    a module's ``chunk_bytes`` sets its plan (without changing its result)."""
    with pytest.raises(TypeError):
        window_attention.WINDOW_CHUNK_BYTES["cpu"] = 1  # type: ignore[index]
    window, _ = _modules()
    assert window.chunk_bytes is None
    x, _ = _inputs()
    chunks = []
    window.qkv.register_forward_hook(lambda *args: chunks.append(1))
    with torch.no_grad():
        whole = window(x)
        assert len(chunks) == 1
        per_window = window.num_heads * 16 * 16 * 4
        window_attention.set_window_chunk_bytes(per_window, window)
        chunks.clear()
        torch.testing.assert_close(window(x), whole, atol=ATOL, rtol=0)
        assert len(chunks) == 2 * 3 * 4  # one window per chunk
        window_attention.set_window_chunk_bytes(None, window)
        chunks.clear()
        assert torch.equal(window(x), whole) and len(chunks) == 1
    with pytest.raises(ValueError, match="positive"):
        window_attention.set_window_chunk_bytes(0, window)


def test_deep_copy_under_inference_mode_runs():
    window, cross = _modules()
    x, ctx = _inputs()
    expected = _run(window, cross, x, ctx)
    with torch.inference_mode():
        window2, cross2 = copy.deepcopy(window), copy.deepcopy(cross)
        assert _same((window2(x), cross2(ctx)), expected)


def test_layout_cached_under_inference_mode_serves_autograd():
    window, _ = _modules()
    x, _ = _inputs()
    with torch.inference_mode():
        window(x)
    window(x).sum().backward()  # the cached gather index is a normal tensor
    assert window.relative_position_bias.grad is not None


@pytest.mark.parametrize("inference", [False, True])
def test_load_state_dict_gives_the_new_result(inference):
    """A bias table changed by ``load_state_dict`` is used at once (also for a
    model built and run under inference mode, whose parameters have no
    version counter to key a cache on)."""
    mode = torch.inference_mode if inference else torch.no_grad
    x, _ = _inputs()
    with mode():
        window, _ = _modules()
        window.backend = "fused"
        first = window(x)
        state = window.state_dict()
        state["relative_position_bias"] = state["relative_position_bias"].flip(-1) * 2
        window.load_state_dict(state)
        changed = window(x)
        fresh, _ = _modules()
        fresh.backend = "fused"
        fresh.load_state_dict(state)
        expected = fresh(x)
    assert (changed - first).abs().max() > 1e-3
    assert torch.equal(changed, expected)


def test_model_built_under_inference_mode_runs_and_deep_copies():
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.manual_seed(0)
        model = dcae.DCAEModel("small").eval()
        out = model(x)["x_hat"]
        assert torch.equal(copy.deepcopy(model)(x)["x_hat"], out)


@pytest.mark.parametrize("how", ["in place", "data", "assign", "inference"])
def test_any_bias_update_gives_the_new_result(how):
    """The memoised bias + mask follows the table's value whatever way it
    changes: an in-place edit (an EMA or optimiser step), ``.data``
    assignment, ``load_state_dict(assign=True)``, an edit in inference mode."""
    window, _ = _modules()
    window.backend = "fused"
    x, _ = _inputs()
    with torch.no_grad():
        first = window(x)
        new = window.relative_position_bias.detach().flip(-1) * 2
        if how == "in place":
            window.relative_position_bias.copy_(new)
        elif how == "data":
            window.relative_position_bias.data = new.clone()
        elif how == "assign":
            state = dict(window.state_dict(), relative_position_bias=new.clone())
            window.load_state_dict(state, assign=True)
        changed = window(x)
    if how == "inference":
        with torch.inference_mode():
            window.relative_position_bias.copy_(new)
            changed = window(x)
    fresh, _ = _modules()
    fresh.backend = "fused"
    with torch.no_grad():
        fresh.load_state_dict(window.state_dict())
        expected = fresh(x)
    assert (changed - first).abs().max() > 1e-3
    assert torch.equal(changed, expected)
