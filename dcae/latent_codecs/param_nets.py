"""The parameter networks of the DCAE entropy model: the means, scales and
latent residual prediction of each slice come from small conv nets on the
slice's support (Eq. (4) of Lu et al., CVPR 2025); a user may give factories
of their own (``DCAEEntropyModel(mean_net=...)``).
"""

from __future__ import annotations

from typing import Callable, List, Sequence

from compressai.models.utils import conv
from torch import nn

__all__ = ["ParamNetFactory", "default_param_net"]

#: builds one parameter network: ``factory(in_channels, out_channels) -> nn.Module``
#: mapping ``(b, in_channels, H, W)`` to ``(b, out_channels, H, W)``
ParamNetFactory = Callable[[int, int], nn.Module]


def default_param_net(
    in_channels: int, out_channels: int, hidden: Sequence[int] = (224, 128)
) -> nn.Sequential:
    """The paper's parameter network: 3x3 convs ``in -> hidden... -> out``
    with GELU between layers."""
    layers: List[nn.Module] = []
    widths = [in_channels, *hidden]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [conv(a, b, kernel_size=3, stride=1), nn.GELU()]
    layers.append(conv(widths[-1], out_channels, kernel_size=3, stride=1))
    return nn.Sequential(*layers)
