"""The configuration of a DCAE checkpoint, read off its tensor shapes."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..config import VARIABLE_RATE_LAMBDAS, DCAEConfig
from ..errors import ModelMismatchError
from .layouts import to_layout, unwrap

__all__ = ["config_of", "infer_config"]


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def infer_config(state_dict: Mapping[str, Any]) -> DCAEConfig:
    """Read a :class:`DCAEConfig` off the shapes of a dcae-layout state dict."""
    sd = unwrap(state_dict)
    try:
        return _infer(sd)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
        raise ModelMismatchError(f"state dict is not a DCAE model: {e}") from e


def _infer(sd: Mapping[str, Tensor]) -> DCAEConfig:
    shape: Callable[[str], torch.Size] = lambda k: sd[k].shape  # noqa: E731
    feats = tuple(shape(f"g_a.{i}.conv.weight")[0] for i in (0, 2, 4))
    depths = tuple(_count(sd, rf"g_a\.{i}\.blocks\.(\d+)\.") for i in (1, 3, 5))

    def head_dim(prefix: str, dim: int, default: int) -> Tuple[int, int]:
        k = f"{prefix}.blocks.0.attn.relative_position_bias"
        if k not in sd:
            return default, -1
        heads, side = shape(k)[0], shape(k)[1]
        return dim // heads, (side + 1) // 2

    base = DCAEConfig()
    hd, windows = [], []
    for i, f, default in zip((1, 3, 5), feats, base.head_dims):
        d, w = head_dim(f"g_a.{i}", f, default)
        hd.append(d)
        windows.append(w)
    shd = []
    for i, f, default in zip((1, 3, 5), reversed(feats), reversed(base.head_dims)):
        d, w = head_dim(f"g_s.{i}", f, default)
        shd.append(d)
        windows.append(w)
    window = max(windows) if max(windows) > 0 else base.window_size
    ha = "latent_codec.hyper.h_a"
    n = shape(f"{ha}.0.conv.weight")[0]
    hyper_depth = _count(sd, rf"{ha}\.1\.blocks\.(\d+)\.")
    hhd, hw = head_dim(f"{ha}.1", n, base.hyper_head_dim)
    y = "latent_codec.y"
    num_slices = _count(sd, rf"{y}\.mean_transforms\.(\d+)\.")
    sizes = tuple(
        shape(f"{y}.mean_transforms.{i}.{_last_conv(sd, f'{y}.mean_transforms.{i}')}.weight")[0]
        for i in range(num_slices)
    )
    m = sum(sizes)
    ctx = [shape(f"{y}.cross_attention.{i}.in_proj.weight")[1] for i in range(num_slices)]
    side = ctx[0]
    support = 0
    for i in range(1, num_slices):
        if ctx[i] > ctx[i - 1]:
            support = i
    max_support = num_slices if support == num_slices - 1 else support
    dict_entries, dict_dim = shape(f"{y}.dictionary")
    heads = sd[f"{y}.cross_attention.0.temperature"].numel()
    msfa_depth = _count(sd, rf"{y}\.cross_attention\.0\.msfa\.units\.(\d+)\.")
    mlp_ratio = shape(f"{y}.cross_attention.0.ffn.fc1.weight")[0] // dict_dim
    n_layers = int(_last_conv(sd, f"{y}.mean_transforms.0")) // 2
    hidden = tuple(shape(f"{y}.mean_transforms.0.{2 * j}.weight")[0] for j in range(n_layers))
    lrp = any(k.startswith(f"{y}.lrp_transforms.") for k in sd)
    checkerboard = any(k.startswith(f"{y}.context_prediction.") for k in sd)
    if side != 2 * m:
        raise ValueError(f"side channels {side} != 2*M={2 * m}")
    equal = len(set(sizes)) == 1
    fields = {
        "image_channels": shape("g_a.0.conv.weight")[1],
        "feature_dims": feats,
        "depths": depths,
        "head_dims": tuple(hd),
        "synthesis_head_dims": None if shd == hd[::-1] else tuple(shd),
        "window_size": window,
        "N": n,
        "M": m,
        "z_channels": shape(f"{ha}.2.weight")[0],
        "hyper_depth": hyper_depth,
        "hyper_head_dim": hhd,
        "hyper_window_size": hw if hw > 0 else base.hyper_window_size,
        "num_slices": num_slices,
        "slice_sizes": None if equal else sizes,
        "max_support_slices": max_support,
        "dict_entries": dict_entries,
        "dict_heads": heads,
        "dict_dim": dict_dim,
        "msfa_depth": msfa_depth,
        "mlp_ratio": mlp_ratio,
        "entropy_hidden": hidden,
        "lrp": lrp,
        "spatial_context": "checkerboard" if checkerboard else None,
        "rate_lambdas": _rate_lambdas(sd),
    }
    return DCAEConfig(name="inferred", **fields)


def _rate_lambdas(sd: Mapping[str, Tensor]) -> Optional[Tuple[float, ...]]:
    """A variable-rate state dict's lambdas: those of the ``small-vr`` preset
    when the count matches (the lambdas themselves are not in the weights)."""
    if "log_gain" not in sd:
        return None
    points = sd["log_gain"].shape[0]
    if points != len(VARIABLE_RATE_LAMBDAS):
        raise ValueError(
            f"a variable-rate state dict with {points} rate points and no config: its "
            "lambdas are unknown (load it from a file that stores its config)"
        )
    return VARIABLE_RATE_LAMBDAS


def _last_conv(sd: Mapping[str, Any], prefix: str) -> str:
    indices = sorted(
        int(m.group(1))
        for k in sd
        for m in [re.match(rf"{re.escape(prefix)}\.(\d+)\.weight$", k)]
        if m
    )
    if not indices:
        raise KeyError(prefix)
    return str(indices[-1])


def config_of(state_dict: Mapping[str, Any]) -> DCAEConfig:
    """The :class:`DCAEConfig` of a state dict of any layout."""
    return infer_config(to_layout(state_dict, "dcae"))
