"""The residual-bottleneck down/up-sampling stacks of the DCAE transforms
(a strided convolution and three ``ResidualBottleneckBlock`` of CompressAI).

Shapes are ``(b, c, H, W)`` like every convolution.
"""

from __future__ import annotations

from compressai.models.sensetime import ResidualBottleneckBlock
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

__all__ = ["DownsampleStack", "UpsampleStack"]


class DownsampleStack(nn.Module):
    """Stride-2 5x5 convolution followed by three residual bottleneck blocks.

    Shapes: ``(b, in_ch, H, W) -> (b, out_ch, ceil(H/2), ceil(W/2))``.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = conv(in_ch, out_ch, kernel_size=5, stride=2)
        self.res1 = ResidualBottleneckBlock(out_ch, out_ch)
        self.res2 = ResidualBottleneckBlock(out_ch, out_ch)
        self.res3 = ResidualBottleneckBlock(out_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.res3(self.res2(self.res1(self.conv(x))))


class UpsampleStack(nn.Module):
    """Three residual bottleneck blocks followed by a stride-2 5x5 transposed
    convolution.

    Shapes: ``(b, in_ch, H, W) -> (b, out_ch, 2H, 2W)``.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.res1 = ResidualBottleneckBlock(in_ch, in_ch)
        self.res2 = ResidualBottleneckBlock(in_ch, in_ch)
        self.res3 = ResidualBottleneckBlock(in_ch, in_ch)
        self.conv = deconv(in_ch, out_ch, kernel_size=5, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.res3(self.res2(self.res1(x))))
