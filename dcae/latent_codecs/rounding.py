"""The rounding of DCAE's latents around their means: ``round(y - means) +
means``, exactly as the decoder computes it, with the paper's
straight-through gradient (``quantizer="ste"``).
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor

__all__ = ["QUANTIZERS", "round_around_means"]

#: values of ``DCAEEntropyModel(quantizer=...)``: how ``y_hat`` is formed in training
QUANTIZERS = ("ste", "noise")


class _RoundAroundMeans(torch.autograd.Function):
    """``round(y - means) + means`` with a straight-through gradient.

    ``compressai.ops.quantize_ste`` computes ``(round(v) - v).detach() + v``,
    which differs from ``round(v)`` by an ulp now and then; ``forward`` would
    then disagree with ``compress``/``decompress`` (which add the integer
    symbols to the means) by ~1e-7.  This returns exactly the decoder's value
    while passing the gradient to ``y`` unchanged and none to ``means``.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, means: Tensor) -> Tensor:
        return torch.round(y - means) + means

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        return grad, None


def round_around_means(y: Tensor, means: Tensor) -> Tensor:
    """``round(y - means) + means`` as the decoder computes it, with the
    straight-through gradient of the paper (``d/dy = 1``, ``d/dmeans = 0``)."""
    return _RoundAroundMeans.apply(y, means)
