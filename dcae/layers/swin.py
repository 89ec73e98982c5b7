"""Swin blocks of the DCAE transforms: ResScale, ConvGLU, Swin blocks and
stages (Sec. 3.1 of Lu et al., CVPR 2025).

Einops axis legend: ``b`` batch, ``c`` channels, ``H``/``W`` spatial sides.
Swin blocks work channels-last ``(b, H, W, c)``; stages take and return
``(b, c, H, W)`` like every convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import conv3x3
from torch import Tensor, nn

from .window_attention import WindowAttention

__all__ = ["ConvGLU", "ResScale", "SwinBlock", "SwinStage"]


class ResScale(nn.Module):
    """Learnable per-channel residual scaling ``x * s`` (channels last).

    Args:
        dim: channels.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ConvGLU(nn.Module):
    """Convolutional gated linear unit (channels last).

    ``Linear(c -> hidden)``, split in halves ``a, g``;
    ``GELU(DWConv3x3(a)) * g``; ``Linear(hidden/2 -> out)``.

    Args:
        dim: input channels.
        hidden_dim: width of the first linear layer (``4 * dim`` in DCAE).
        out_dim: output channels (default ``dim``).
    """

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None):
        super().__init__()
        half = hidden_dim // 2
        self.fc1 = nn.Linear(dim, 2 * half)
        self.dwconv = nn.Conv2d(half, half, 3, padding=1, groups=half)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(half, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        # fc1 as two products on weight halves (identical values): both halves
        # come out contiguous, so the depthwise conv gets a dense channels-last
        # tensor and needs no copy
        half = self.dwconv.in_channels
        w, b = self.fc1.weight, self.fc1.bias
        a = F.linear(x, w[:half], None if b is None else b[:half])
        gate = F.linear(x, w[half:], None if b is None else b[half:])
        a = self.dwconv(a.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(a) * gate)


class SwinBlock(nn.Module):
    """Swin block with ResScale residuals and a ConvGLU feed-forward.

    ``x = s1 * x + WMSA(LN(x)); x = s2 * x + ConvGLU(LN(x))``
    (the "ResScaleConvolutionGateBlock" of the official code).

    Shapes: ``(b, H, W, c) -> (b, H, W, c)``.

    Args:
        dim: channels.
        head_dim: channels per attention head.
        window_size: attention window side.
        shifted: shifted windows (SW-MSA).
        mlp_ratio: ConvGLU hidden width as a multiple of ``dim``.
    """

    def __init__(
        self, dim: int, head_dim: int, window_size: int, shifted: bool, mlp_ratio: int = 4
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, head_dim, window_size, shifted)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = ConvGLU(dim, mlp_ratio * dim)
        self.res_scale_1 = ResScale(dim)
        self.res_scale_2 = ResScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        # addcmul: ``s * x + f(x)`` in one pass (same value as ResScale + add)
        x = torch.addcmul(self.attn(self.norm1(x)), x, self.res_scale_1.scale)
        return torch.addcmul(self.ffn(self.norm2(x)), x, self.res_scale_2.scale)


class SwinStage(nn.Module):
    """A stage: ``depth`` Swin blocks (regular/shifted alternating), a 3x3
    convolution, and a residual around the whole stage.

    Shapes: ``(b, c, H, W) -> (b, c, H, W)``, any ``H, W``.

    Args:
        dim: channels.
        head_dim: channels per attention head.
        window_size: attention window side.
        depth: number of Swin blocks (may be 0: conv + residual only).
    """

    def __init__(self, dim: int, head_dim: int, window_size: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, head_dim, window_size, shifted=bool(i % 2)) for i in range(depth)
        )
        self.conv = conv3x3(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            t = block(t)
        return self.conv(t.permute(0, 3, 1, 2)) + x
