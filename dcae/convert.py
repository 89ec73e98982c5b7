"""Checkpoint layouts: the official implementation's, dcae's and the one of
CompressAI's own DCAE port.

The official ``train.py`` saves ``{"state_dict": ...}`` (keys possibly
prefixed ``module.`` by DataParallel/DDP) with the module names of
``models/dcae.py``.  :func:`to_dcae_layout` maps such a state dict to this
package's names and :func:`to_official_layout` maps back; the two are exact
inverses on every tensor.  :func:`infer_config` reads a
:class:`~dcae.config.DCAEConfig` off the tensor shapes.
:func:`to_layout` converts between all three layouts (through the official
one), :func:`detect_layout` tells them apart.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .config import DCAEConfig
from .errors import ModelMismatchError

__all__ = [
    "compressai_to_official",
    "config_of",
    "detect_layout",
    "infer_config",
    "is_compressai_layout",
    "is_official_layout",
    "official_to_compressai",
    "to_dcae_layout",
    "to_layout",
    "to_official_layout",
]

# (official, dcae) key-prefix pairs; '#' stands for an integer
_PREFIXES: List[Tuple[str, str]] = [
    ("dt_cross_attention.#.", "latent_codec.y.cross_attention.#."),
    ("cc_mean_transforms.", "latent_codec.y.mean_transforms."),
    ("cc_scale_transforms.", "latent_codec.y.scale_transforms."),
    ("lrp_transforms.", "latent_codec.y.lrp_transforms."),
    ("gaussian_conditional.", "latent_codec.y.gaussian_conditional."),
    ("entropy_bottleneck.", "latent_codec.hyper.entropy_bottleneck."),
    ("h_a.", "latent_codec.hyper.h_a."),
    ("h_z_s1.", "latent_codec.hyper.h_s.scales."),
    ("h_z_s2.", "latent_codec.hyper.h_s.means."),
    ("g_a.", "g_a."),
    ("g_s.", "g_s."),
]

# rules on the rest of a key inside a Swin stage ('*': the remaining path)
_SWIN: List[Tuple[str, str]] = [
    ("#.layers.#.ln1.*", "#.blocks.#.norm1.*"),
    ("#.layers.#.ln2.*", "#.blocks.#.norm2.*"),
    ("#.layers.#.msa.embedding_layer.*", "#.blocks.#.attn.qkv.*"),
    ("#.layers.#.msa.linear.*", "#.blocks.#.attn.proj.*"),
    ("#.layers.#.msa.relative_position_params", "#.blocks.#.attn.relative_position_bias"),
    ("#.layers.#.mlp.dwconv.dwconv.*", "#.blocks.#.ffn.dwconv.*"),
    ("#.layers.#.mlp.*", "#.blocks.#.ffn.*"),
    ("#.layers.#.*", "#.blocks.#.*"),
]

# rules on the rest of a key inside one dictionary cross-attention
_CROSS: List[Tuple[str, str]] = [
    ("x_trans.*", "in_proj.*"),
    ("ln_scale.*", "norm_msfa.*"),
    ("msa.s.*", "msfa.in_conv.*"),
    ("msa.dense.conv_layers.#.1.in_trans.*", "msfa.units.#.conv1.*"),
    ("msa.dense.conv_layers.#.1.dw_conv.*", "msfa.units.#.dwconv.*"),
    ("msa.dense.conv_layers.#.1.out_trans.*", "msfa.units.#.conv2.*"),
    ("msa.dense.proj.*", "msfa.merge.*"),
    ("msa.spatial_atte.conv1.*", "msfa.spatial_attention.conv.*"),
    ("lnx.*", "norm_q.*"),
    ("q_trans.*", "q_proj.*"),
    ("dict_ln.*", "norm_dict.*"),
    ("k.*", "k_proj.*"),
    ("linear.*", "out_proj.*"),
    ("ln_mlp.*", "norm_ffn.*"),
    ("mlp.dwconv.dwconv.*", "ffn.dwconv.*"),
    ("mlp.*", "ffn.*"),
    ("output_trans.0.*", "out.*"),
    ("scale", "temperature"),
    ("res_scale_#.*", "res_scale_#.*"),
]


def _compile(pattern: str, prefix: bool = False) -> re.Pattern[str]:
    rx = re.escape(pattern).replace("\\#", r"(\d+)").replace("\\*", r"(.+)")
    return re.compile("^" + rx + ("" if prefix else "$"))


def _fill(template: str, groups: Tuple[str, ...]) -> str:
    it = iter(groups)
    return "".join(next(it) if ch in "#*" else ch for ch in template)


def _translate(key: str, rules: List[Tuple[str, str]], forward: bool, prefix: bool = False):
    """Apply the first matching rule; returns (new_key_part, rest) or None."""
    for a, b in rules:
        src, dst = (a, b) if forward else (b, a)
        m = _compile(src, prefix).match(key)
        if m:
            n_dst = sum(ch in "#*" for ch in dst)
            return _fill(dst, m.groups()[:n_dst]), key[m.end() :]
    return None


def _unwrap(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    sd: Any = state_dict
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
            break
    if not isinstance(sd, Mapping):
        raise ModelMismatchError("checkpoint is not a state dict")
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ModelMismatchError(f"checkpoint key {k!r} is not a string")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def is_official_layout(state_dict: Mapping[str, Any]) -> bool:
    """True if the (unwrapped) state dict uses the official implementation's names."""
    sd = _unwrap(state_dict)
    return "dt" in sd or any(k.startswith("dt_cross_attention.") for k in sd)


def _convert(sd: Dict[str, Any], forward: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    dict_src, dict_dst = ("dt", "latent_codec.y.dictionary")
    if not forward:
        dict_src, dict_dst = dict_dst, dict_src
    for key, value in sd.items():
        if key == dict_src:
            out[dict_dst] = value
            continue
        hit = _translate(key, _PREFIXES, forward, prefix=True)
        if hit is None:
            raise ModelMismatchError(f"unexpected checkpoint key {key!r}")
        head, rest = hit
        if "cross_attention" in head or "dt_cross_attention" in head:
            sub = _translate(rest, _CROSS, forward)
            if sub is None:
                raise ModelMismatchError(f"unexpected checkpoint key {key!r}")
            rest = sub[0]
            if rest in ("temperature", "scale") and isinstance(value, Tensor):
                value = value.reshape(-1) if forward else value.reshape(-1, 1, 1)
        else:
            sub = _translate(rest, _SWIN, forward)
            if sub is not None:
                rest = sub[0]
        out[head + rest] = value
    return out


def to_dcae_layout(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Unwrap, strip ``module.`` and convert official names; dcae layouts pass through."""
    sd = _unwrap(state_dict)
    return _convert(sd, forward=True) if is_official_layout(sd) else sd


def to_official_layout(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Convert a dcae state dict to the official implementation's names."""
    sd = _unwrap(state_dict)
    return sd if is_official_layout(sd) else _convert(sd, forward=False)


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def infer_config(state_dict: Mapping[str, Any]) -> DCAEConfig:
    """Read a :class:`DCAEConfig` off the shapes of a dcae-layout state dict."""
    sd = _unwrap(state_dict)
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
    return DCAEConfig(
        image_channels=shape("g_a.0.conv.weight")[1],
        feature_dims=feats,  # type: ignore[arg-type]
        depths=depths,  # type: ignore[arg-type]
        head_dims=tuple(hd),  # type: ignore[arg-type]
        synthesis_head_dims=None if shd == hd[::-1] else tuple(shd),  # type: ignore[arg-type]
        window_size=window,
        N=n,
        M=m,
        z_channels=shape(f"{ha}.2.weight")[0],
        hyper_depth=hyper_depth,
        hyper_head_dim=hhd,
        hyper_window_size=hw if hw > 0 else base.hyper_window_size,
        num_slices=num_slices,
        slice_sizes=None if equal else sizes,
        max_support_slices=max_support,
        dict_entries=dict_entries,
        dict_heads=heads,
        dict_dim=dict_dim,
        msfa_depth=msfa_depth,
        mlp_ratio=mlp_ratio,
        entropy_hidden=hidden,
        lrp=lrp,
        spatial_context="checkerboard" if checkerboard else None,
        rate_lambdas=_rate_lambdas(sd),
        name="inferred",
    )


def _rate_lambdas(sd: Mapping[str, Tensor]) -> Optional[Tuple[float, ...]]:
    """A variable-rate state dict's lambdas: those of the ``small-vr`` preset
    when the count matches (the lambdas themselves are not in the weights)."""
    if "log_gain" not in sd:
        return None
    from .config import VARIABLE_RATE_LAMBDAS

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


# ------------------------------------------------- CompressAI-port layout
# CompressAI's development versions port DCAE as ``compressai.models.dcae.DCAE``
# with a containerised state dict.  Key prefixes (port, official); '#' is the
# slice index.  The port feeds ``[means, scales, ...]`` where the official code
# feeds ``[scales, means, ...]``: the leading 2*M input channels of the first
# layer of the cross-attention and of the mean, scale and LRP nets are swapped.
_PORT: List[Tuple[str, str]] = [
    ("shared_dictionary.dt", "dt"),
    ("latent_codec.y.channel_context.y#.cross_attention.", "dt_cross_attention.#."),
    ("latent_codec.y.channel_context.y#.mean_cc.", "cc_mean_transforms.#."),
    ("latent_codec.y.channel_context.y#.scale_cc.", "cc_scale_transforms.#."),
    ("latent_codec.y.latent_codec.y#.lrp_transform.", "lrp_transforms.#."),
    ("latent_codec.y.latent_codec.y#.gaussian_conditional.", "gaussian_conditional."),
    ("latent_codec.h_a.", "h_a."),
    ("latent_codec.h_s.h_scale_s.", "h_z_s1."),
    ("latent_codec.h_s.h_mean_s.", "h_z_s2."),
    ("latent_codec.z.entropy_bottleneck.", "entropy_bottleneck."),
]
_SWAPPED = re.compile(
    r"^(dt_cross_attention\.\d+\.x_trans\.weight"
    r"|(cc_mean_transforms|cc_scale_transforms|lrp_transforms)\.\d+\.0\.weight)$"
)


def _prefix_rx(prefix: str) -> str:
    """Regex of a key prefix ('#': slice index); names without a dot match whole keys."""
    rx = "^" + re.escape(prefix).replace("\\#", r"(\d+)")
    return rx if prefix.endswith(".") else rx + "$"


def _strip(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    sd: Any = state_dict
    for wrapper in ("state_dict", "model", "model_state_dict", "network"):
        if isinstance(sd, Mapping) and isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) for k in sd):
        raise ModelMismatchError("checkpoint is not a state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def is_compressai_layout(state_dict: Mapping[str, Any]) -> bool:
    """True for a state dict of CompressAI's own DCAE port."""
    sd = _strip(state_dict)
    return "shared_dictionary.dt" in sd


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """``"dcae"``, ``"official"`` or ``"compressai"``.

    Raises:
        ModelMismatchError: not a DCAE state dict of any known layout.
    """
    sd = _strip(state_dict)
    if is_compressai_layout(sd):
        return "compressai"
    if is_official_layout(sd):
        return "official"
    if "latent_codec.y.dictionary" in sd:
        return "dcae"
    raise ModelMismatchError("not a DCAE state dict (no dictionary tensor found)")


def _swap_halves(weight: Tensor, m: int) -> Tensor:
    """Swap input channels ``[0, M)`` and ``[M, 2M)`` (self-inverse)."""
    return torch.cat([weight[:, m : 2 * m], weight[:, :m], weight[:, 2 * m :]], dim=1)


def _latent_channels(official: Mapping[str, Tensor]) -> int:
    """``M``: the summed output widths of the last layers of the mean nets."""
    last: Dict[str, Tuple[int, int]] = {}
    for k, v in official.items():
        m = re.match(r"^cc_mean_transforms\.(\d+)\.(\d+)\.weight$", k)
        if m and int(m.group(2)) >= last.get(m.group(1), (-1, 0))[0]:
            last[m.group(1)] = (int(m.group(2)), int(v.shape[0]))
    if not last:
        raise ModelMismatchError("cannot find the mean nets (cc_mean_transforms) of the model")
    return sum(size for _, size in last.values())


def compressai_to_official(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Convert a CompressAI-port state dict to the official layout (exact)."""
    sd = _strip(state_dict)
    out: Dict[str, Any] = {}
    for key, value in sd.items():
        for port, official in _PORT:
            m = re.match(_prefix_rx(port), key)
            if m:
                head = official.replace("#", m.group(1)) if m.groups() else official
                new = head + key[m.end() :]
                if "gaussian_conditional" in official and m.group(1) != "0":
                    new = ""  # per-slice copies of one shared module
                break
        else:
            new = key
            if not key.startswith(("g_a.", "g_s.")):
                raise ModelMismatchError(f"unexpected key {key!r} in a CompressAI DCAE state dict")
        if new:
            out[new] = value
    m = _latent_channels(out)
    return {k: _swap_halves(v, m) if _SWAPPED.match(k) else v for k, v in out.items()}


def official_to_compressai(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Convert an official state dict to CompressAI's port layout (exact)."""
    sd = _strip(state_dict)
    m = _latent_channels(sd)
    num_slices = len({k.split(".")[1] for k in sd if k.startswith("cc_mean_transforms.")})
    out: Dict[str, Any] = {}
    for key, value in sd.items():
        if _SWAPPED.match(key):
            value = _swap_halves(value, m)
        for port, official in _PORT:
            mt = re.match(_prefix_rx(official), key)
            if not mt:
                continue
            rest = key[mt.end() :]
            if official == "gaussian_conditional.":
                for i in range(num_slices):
                    out[port.replace("#", str(i)) + rest] = value
            else:
                out[(port.replace("#", mt.group(1)) if mt.groups() else port) + rest] = value
            break
        else:
            if not key.startswith(("g_a.", "g_s.")):
                raise ModelMismatchError(f"unexpected key {key!r} in an official DCAE state dict")
            out[key] = value
    return out


def to_layout(state_dict: Mapping[str, Any], layout: str) -> Dict[str, Any]:
    """Convert a DCAE state dict of any known layout to ``layout``
    (``"dcae"``, ``"official"`` or ``"compressai"``); wrappers such as
    ``{"state_dict": ...}`` and ``module.`` prefixes are removed."""
    if layout not in ("dcae", "official", "compressai"):
        raise ValueError(f"layout must be dcae, official or compressai, got {layout!r}")
    sd = _strip(state_dict)
    source = detect_layout(sd)
    if source == layout:
        return sd
    official = {
        "compressai": compressai_to_official,
        "official": dict,
        "dcae": to_official_layout,
    }[source](sd)
    if layout == "official":
        return official
    if layout == "compressai":
        return official_to_compressai(official)
    return to_dcae_layout(official)


def config_of(state_dict: Mapping[str, Any]) -> DCAEConfig:
    """The :class:`DCAEConfig` of a state dict of any layout."""
    return infer_config(to_layout(state_dict, "dcae"))
