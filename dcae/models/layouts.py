"""Checkpoint layouts of DCAE: the official implementation's, dcae's and the
one of CompressAI's own DCAE port (timm's ``checkpoint_filter_fn``, beside
the model: :meth:`~dcae.DCAEModel.from_state_dict` reads all three).

The official ``train.py`` saves ``{"state_dict": ...}`` (keys possibly
prefixed ``module.`` by DataParallel/DDP) with the module names of
``models/dcae.py``.  :func:`to_dcae_layout` maps such a state dict to this
package's names and :func:`to_official_layout` maps back; the two are exact
inverses on every tensor.
:func:`~dcae.models.infer_config.infer_config` reads a
:class:`~dcae.config.DCAEConfig` off the tensor shapes.
:func:`to_layout` converts between all three layouts (through the official
one), :func:`detect_layout` tells them apart.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Tuple

import torch
from torch import Tensor

from ..errors import ModelMismatchError

__all__ = [
    "WRAPPERS",
    "compressai_to_official",
    "detect_layout",
    "is_compressai_layout",
    "is_official_layout",
    "official_to_compressai",
    "to_dcae_layout",
    "to_layout",
    "to_official_layout",
    "unwrap",
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


#: keys under which checkpoints wrap their state dict (``{"state_dict": ...}``
#: and the like), in the order they are tried
WRAPPERS = ("state_dict", "model_state_dict", "network", "model")


def unwrap(checkpoint: Any) -> Dict[str, Any]:
    """The state dict of a checkpoint: wrappers (:data:`WRAPPERS`, up to two
    levels, e.g. ``{"state_dict": {"network": ...}}``) removed and ``module.``
    prefixes (DataParallel, DDP) stripped.

    Raises:
        ModelMismatchError: there is no state dict (a mapping of string keys).
    """
    sd = checkpoint
    for _ in range(2):
        for key in WRAPPERS:
            if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
                sd = sd[key]
                break
    if not isinstance(sd, Mapping):
        raise ModelMismatchError("checkpoint is not a state dict")
    for k in sd:
        if not isinstance(k, str):
            raise ModelMismatchError(f"checkpoint key {k!r} is not a string")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def is_official_layout(state_dict: Mapping[str, Any]) -> bool:
    """True if the (unwrapped) state dict uses the official implementation's names."""
    sd = unwrap(state_dict)
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
    sd = unwrap(state_dict)
    return _convert(sd, forward=True) if is_official_layout(sd) else sd


def to_official_layout(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Convert a dcae state dict to the official implementation's names."""
    sd = unwrap(state_dict)
    return sd if is_official_layout(sd) else _convert(sd, forward=False)


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


def is_compressai_layout(state_dict: Mapping[str, Any]) -> bool:
    """True for a state dict of CompressAI's own DCAE port."""
    sd = unwrap(state_dict)
    return "shared_dictionary.dt" in sd


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """``"dcae"``, ``"official"`` or ``"compressai"``.

    Raises:
        ModelMismatchError: not a DCAE state dict of any known layout.
    """
    sd = unwrap(state_dict)
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
    sd = unwrap(state_dict)
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
    sd = unwrap(state_dict)
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
    sd = unwrap(state_dict)
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
