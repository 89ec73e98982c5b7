"""Multi-scale feature aggregation, MSFA (Sec. 3.3, Eq. (5)-(6) of Lu et al.,
"Learned Image Compression with Dictionary-based Entropy Model", CVPR 2025).

Einops axis legend: ``b`` batch, ``c`` channels, ``H``/``W`` latent sides.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MSFA", "EfficientConvUnit", "SpatialAttention"]


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
