"""Dictionary-based cross-attention (Sec. 3.2, Eq. (7)-(8) of Lu et al.,
"Learned Image Compression with Dictionary-based Entropy Model", CVPR 2025).

Einops axis legend: ``b`` batch, ``c`` channels, ``H``/``W`` latent sides,
``h`` heads, ``l = H*W`` query tokens, ``e`` dictionary entries, ``d`` head dim.
"""

from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import AttentionModule, dictionary_attention
from .msfa import MSFA
from .swin import ConvGLU, ResScale

__all__ = ["DictionaryCrossAttention"]


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
