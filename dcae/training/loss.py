"""The rate-distortion loss of training (Lu et al., CVPR 2025, following
Ballé et al.)::

    mse:     L = lambda * 255^2 * MSE(x, x_hat) + bpp
    ms-ssim: L = lambda * (1 - MS-SSIM(x, x_hat)) + bpp

and its value over whole validation images (:func:`evaluate_loss`).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..eval.metrics import ms_ssim_per_sample
from ..format.pixels import from_8bit
from ..models.dcae import DCAEModel

__all__ = ["RateDistortionLoss", "evaluate_loss"]


class RateDistortionLoss(nn.Module):
    """``lambda * D + bpp`` with ``D = 255^2 * MSE`` or ``1 - MS-SSIM``.

    Args:
        lmbda: the rate-distortion trade-off ``lambda``.
        metric: ``"mse"`` or ``"ms-ssim"``.

    ``forward(output, target, lmbda=None)`` takes an optional tensor of one
    lambda per sample (variable-rate training); the loss is then the mean over
    the samples of each sample's own ``lambda * D + bpp``.
    """

    def __init__(self, lmbda: float, metric: str = "mse"):
        super().__init__()
        if metric not in ("mse", "ms-ssim"):
            raise ValueError(f"metric must be 'mse' or 'ms-ssim', got {metric!r}")
        self.lmbda = float(lmbda)
        self.metric = metric

    def forward(
        self, output: Dict[str, Any], target: Tensor, lmbda: Optional[Tensor] = None
    ) -> Dict[str, Tensor]:
        n, _, h, w = target.shape
        if lmbda is None:  # one lambda: the mean of per-sample terms is the batch's term
            lmbda = torch.full((n,), self.lmbda, device=target.device)
        lmbda = lmbda.to(target.device, torch.float32).reshape(n)
        bpp_each = sum(
            torch.log(lik).flatten(1).sum(1) / (-math.log(2) * h * w)
            for lik in output["likelihoods"].values()
        )
        mse_each = (output["x_hat"] - target).pow(2).flatten(1).mean(1)
        out = {"bpp": bpp_each.mean(), "mse": mse_each.mean()}
        if self.metric == "mse":
            out["loss"] = (lmbda * 255**2 * mse_each + bpp_each).mean()
        else:
            ssim_each = ms_ssim_per_sample(output["x_hat"].clamp(0, 1), target)
            out["ms_ssim"] = ssim_each.mean()
            out["loss"] = (lmbda * (1 - ssim_each) + bpp_each).mean()
        return out


@torch.no_grad()
def evaluate_loss(
    model: DCAEModel,
    images: Sequence[Tensor],
    criterion: RateDistortionLoss,
    device: torch.device,
    quality: Optional[float] = None,
) -> Dict[str, float]:
    """Mean loss, bpp (estimated) and PSNR over full images (eval mode), at
    ``quality`` for a variable-rate model."""
    was_training = model.training
    model.eval()
    sums = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0}
    for img in images:
        x = from_8bit(img[None]).to(device)
        out = model(x) if quality is None else model(x, quality)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        terms = criterion(out, x)
        for k in ("loss", "bpp", "mse"):
            sums[k] += float(terms[k])
        sums["psnr"] += float(-10 * torch.log10(terms["mse"].clamp_min(1e-10)))
    model.train(was_training)
    return {k: v / max(1, len(images)) for k, v in sums.items()}
