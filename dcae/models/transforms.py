"""The transforms of DCAE (Sec. 3.1 of Lu et al., CVPR 2025): analysis
``g_a``, synthesis ``g_s``, hyper analysis ``h_a`` and the two-branch hyper
synthesis ``h_s``, all built from one :class:`~dcae.DCAEConfig`.

::

    x ──g_a──► y ──h_a──► z            z_hat ──h_s──► [scales, means] (side_params)
    y_hat ──g_s──► x_hat

Strides: ``g_a`` 16 (four stride-2 stages), ``h_a`` 4.
"""

from __future__ import annotations

import torch
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from ..config import DCAEConfig
from ..layers.bottleneck import DownsampleStack, UpsampleStack
from ..layers.swin import SwinStage

__all__ = ["HyperSynthesis", "analysis", "hyper_analysis", "synthesis"]


class HyperSynthesis(nn.Module):
    """Two hyper synthesis branches; returns ``cat([scales, means])``.

    Each branch: transposed conv 3x3 stride 2, a Swin stage, three residual
    bottlenecks and a transposed conv 5x5 stride 2 to ``M`` channels.
    Shapes: ``(b, z, h, w) -> (b, 2M, 4h, 4w)``.
    """

    def __init__(self, cfg: DCAEConfig):
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                deconv(cfg.z_channels, cfg.N, kernel_size=3, stride=2),
                SwinStage(cfg.N, cfg.hyper_head_dim, cfg.hyper_window_size, cfg.hyper_depth),
                UpsampleStack(cfg.N, cfg.M),
            )

        self.scales = branch()
        self.means = branch()

    def forward(self, z_hat: Tensor) -> Tensor:
        return torch.cat([self.scales(z_hat), self.means(z_hat)], dim=1)


def analysis(cfg: DCAEConfig) -> nn.Sequential:
    """``g_a``: three down-sampling stacks and Swin stages, then a stride-2 5x5
    convolution to ``M`` channels: ``(b, 3, H, W) -> (b, M, ceil(H/16), ceil(W/16))``."""
    f, d, hd, w = cfg.feature_dims, cfg.depths, cfg.head_dims, cfg.window_size
    return nn.Sequential(
        DownsampleStack(cfg.image_channels, f[0]),
        SwinStage(f[0], hd[0], w, d[0]),
        DownsampleStack(f[0], f[1]),
        SwinStage(f[1], hd[1], w, d[1]),
        DownsampleStack(f[1], f[2]),
        SwinStage(f[2], hd[2], w, d[2]),
        conv(f[2], cfg.M, kernel_size=5, stride=2),
    )


def synthesis(cfg: DCAEConfig) -> nn.Sequential:
    """``g_s``, mirroring :func:`analysis`: ``(b, M, h, w) -> (b, 3, 16h, 16w)``."""
    f, d, hd, w = cfg.feature_dims, cfg.depths, cfg.synth_head_dims, cfg.window_size
    return nn.Sequential(
        deconv(cfg.M, f[2], kernel_size=5, stride=2),
        SwinStage(f[2], hd[0], w, d[2]),
        UpsampleStack(f[2], f[1]),
        SwinStage(f[1], hd[1], w, d[1]),
        UpsampleStack(f[1], f[0]),
        SwinStage(f[0], hd[2], w, d[0]),
        UpsampleStack(f[0], cfg.image_channels),
    )


def hyper_analysis(cfg: DCAEConfig) -> nn.Sequential:
    """``h_a``: down to ``N`` channels, a Swin stage, a stride-2 3x3
    convolution to ``z``: ``(b, M, H, W) -> (b, z, ceil(H/4), ceil(W/4))``."""
    return nn.Sequential(
        DownsampleStack(cfg.M, cfg.N),
        SwinStage(cfg.N, cfg.hyper_head_dim, cfg.hyper_window_size, cfg.hyper_depth),
        conv(cfg.N, cfg.z_channels, kernel_size=3, stride=2),
    )
