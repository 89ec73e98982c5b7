"""Multi-scale feature aggregation and dictionary-based cross-attention
(Sec. 3.2-3.3, Eq. (5)-(8) of Lu et al., "Learned Image Compression with
Dictionary-based Entropy Model", CVPR 2025).

Einops axis legend: ``b`` batch, ``c`` channels, ``H``/``W`` latent sides,
``h`` heads, ``l = H*W`` query tokens, ``e`` dictionary entries, ``d`` head dim.
"""

from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import AttentionModule, dictionary_attention
from .layers import ConvGLU, ResScale

__all__ = ["MSFA", "DictionaryCrossAttention", "EfficientConvUnit", "SpatialAttention"]


class EfficientConvUnit(nn.Module):
    """``GELU -> 1x1 -> GELU -> depthwise 3x3 -> GELU -> 1x1`` (one MSFA unit).

    Shapes: ``(b, c, H, W) -> (b, c, H, W)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.act(x))
        x = self.dwconv(self.act(x))
        return self.conv2(self.act(x))


class SpatialAttention(nn.Module):
    """CBAM spatial attention map ``sigmoid(conv7x7([mean_c(x), max_c(x)]))``.

    Shapes: ``(b, c, H, W) -> (b, 1, H, W)``.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class MSFA(nn.Module):
    """Multi-scale feature aggregation, Eq. (5)-(6).

    ``m`` stacked efficient convolution units, each fed by the previous one,
    so their receptive fields grow (3x3, 5x5, 7x7, ...); the input and all
    unit outputs are concatenated and merged by a 1x1 convolution, then
    weighted by a spatial attention map::

        x -> 1x1 -> s -> U_1 -> U_2 -> ... -> U_m
                     |     |      |            |
                     +-----+------+---- concat +-> 1x1 merge -> f -> f * SA(f)

    Shapes: ``(b, c, H, W) -> (b, c, H, W)``.

    Args:
        dim: channels ``c``.
        depth: number of units ``m`` (3 in the paper).
    """

    def __init__(self, dim: int, depth: int = 3):
        super().__init__()
        if depth < 0:
            raise ValueError(f"MSFA depth must be >= 0, got {depth}")
        self.dim = dim
        self.in_conv = nn.Conv2d(dim, dim, 1)
        self.units = nn.ModuleList(EfficientConvUnit(dim) for _ in range(depth))
        self.merge = nn.Conv2d(dim * (depth + 1), dim, 1)
        self.spatial_attention = SpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise ValueError(f"MSFA expects (b, {self.dim}, H, W), got {tuple(x.shape)}")
        outputs = [self.in_conv(x)]
        for unit in self.units:
            outputs.append(unit(outputs[-1]))
        f = self.merge(torch.cat(outputs, dim=1))
        return f * self.spatial_attention(f)


class DictionaryCrossAttention(AttentionModule):
    """Dictionary-based cross-attention, Eq. (7)-(8).

    The query comes from the latent context (hyperprior features and already
    decoded slices), keys and values from a learned dictionary ``D`` of typical
    image structures, shared by all samples of a batch::

        x --Linear--> x' --LN--> MSFA --(+ s1 * x')--> u
        u --LN--> Linear --> Q                 D --LN--> D_n --Linear--> K
        attn = softmax(t_h * Q K^T) D_n        (per head h, temperature t_h)
        v = Linear(attn) + s2 * u
        v = ConvGLU(LN(v)) + s3 * v  --Linear--> output

    Shapes: ``x`` ``(b, in_channels, H, W)``, dictionary ``(entries, dim)``,
    output ``(b, out_channels, H, W)``.

    The attention backend is the module's ``backend`` attribute, copied from
    the default when built (see :func:`dcae.set_attention_backend`).

    Args:
        in_channels: channels of the context ``x``.
        out_channels: channels of the output dictionary feature.
        dim: dictionary / attention width (``num_heads * 32 = 640`` in the paper).
        num_heads: attention heads; ``dim`` must be divisible by it.
        num_entries: if given, the module owns a learned dictionary of this many
            entries (``self.dictionary``); otherwise pass one to ``forward``
            (DCAE shares one dictionary across all slices).
        msfa_depth: number of MSFA units ``m``.
        mlp_ratio: ConvGLU hidden width as a multiple of ``dim``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 640,
        num_heads: int = 20,
        num_entries: Optional[int] = None,
        msfa_depth: int = 3,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        if num_heads <= 0 or dim % num_heads:
            raise ValueError(f"dim={dim} must be a positive multiple of num_heads={num_heads}")
        self.in_channels = in_channels
        self.dim = dim
        self.num_heads = num_heads
        self.dictionary: Optional[nn.Parameter] = None
        if num_entries is not None:
            self.dictionary = nn.Parameter(torch.randn(num_entries, dim))
        self.in_proj = nn.Linear(in_channels, dim)
        self.norm_msfa = nn.LayerNorm(dim)
        self.msfa = MSFA(dim, msfa_depth)
        self.res_scale_1 = ResScale(dim)
        self.norm_q = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.norm_dict = nn.LayerNorm(dim)
        self.k_proj = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.ones(num_heads))
        self.out_proj = nn.Linear(dim, dim)
        self.res_scale_2 = ResScale(dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = ConvGLU(dim, mlp_ratio * dim)
        self.res_scale_3 = ResScale(dim)
        self.out = nn.Linear(dim, out_channels)

    def forward(self, x: Tensor, dictionary: Optional[Tensor] = None) -> Tensor:
        """Cross-attend ``x`` ``(b, in_channels, H, W)`` to the dictionary."""
        if dictionary is None:
            dictionary = self.dictionary
        if dictionary is None:
            raise ValueError("no dictionary: pass one or build with num_entries=...")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DictionaryCrossAttention expects (b, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if dictionary.dim() != 2 or dictionary.shape[1] != self.dim:
            raise ValueError(
                f"dictionary must be (entries, {self.dim}), got {tuple(dictionary.shape)}"
            )
        hh = x.shape[2]
        x = self.in_proj(x.permute(0, 2, 3, 1))  # (b, H, W, dim)
        msfa = self.msfa(self.norm_msfa(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = msfa + self.res_scale_1(x)
        heads = self.num_heads
        q = rearrange(self.q_proj(self.norm_q(x)), "b H W (h d) -> b h (H W) d", h=heads)
        # dictionary normalised and projected once per call, shared by the batch
        values = self.norm_dict(dictionary)  # (e, dim)
        keys = rearrange(self.k_proj(values), "e (h d) -> h e d", h=heads)
        values = rearrange(values, "e (h d) -> h e d", h=heads)
        temperature = self.temperature.to(q.dtype)
        attn = dictionary_attention(q, keys, values, temperature, self.backend)
        attn = rearrange(attn, "b h (H W) d -> b H W (h d)", H=hh)
        x = self.out_proj(attn) + self.res_scale_2(x)
        x = self.ffn(self.norm_ffn(x)) + self.res_scale_3(x)
        return self.out(x).permute(0, 3, 1, 2)
