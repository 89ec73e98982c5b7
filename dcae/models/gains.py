"""Variable-rate gains (Cui et al., "Asymmetric Gained Deep Image
Compression With Continuous Rate Adaptation", CVPR 2021), as DCAE's
variable-rate presets use them::

    y ──► y * gain(q) ──► latent codec ──► y_hat * inverse gain(q) ──► g_s

Rate point ``k`` (1-based) is trained at ``config.rate_lambdas[k-1]``; any
real quality between 1 and the number of rate points interpolates the
learned gain vectors in the log domain.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from ..config import DCAEConfig

__all__ = ["Quality", "VariableRate", "interpolate"]

#: a quality: a real number, or one per sample (training)
Quality = Union[float, Tensor]


def interpolate(table: Tensor, q: Tensor) -> Tensor:
    """Rows of ``table`` (``R x C``) at real 1-based positions ``q`` (any
    shape), linearly between neighbours: ``q.shape + (C,)``."""
    pos = (q.to(table.dtype) - 1).clamp(0, table.shape[0] - 1)
    i = pos.floor().long().clamp(max=table.shape[0] - 2)
    t = (pos - i.to(pos.dtype)).unsqueeze(-1)
    return table[i] * (1 - t) + table[i + 1] * t


class VariableRate:
    """The rate of a DCAE model (mixed into :class:`~dcae.DCAEModel`): its
    quality range and default, and the gain vectors ``log_gain`` and
    ``log_inv_gain`` (``rate points x M`` parameters of the model) that a
    variable-rate model (``config.rate_lambdas`` set) applies to ``y``."""

    config: DCAEConfig
    log_gain: Tensor
    log_inv_gain: Tensor

    @property
    def variable_rate(self) -> bool:
        """Whether this model codes at any quality in :attr:`quality_range`."""
        return self.config.rate_lambdas is not None

    @property
    def quality_range(self) -> Tuple[float, float]:
        """``(1.0, number of rate points)`` for a variable-rate model.

        Raises:
            ValueError: the model has a single rate.
        """
        if self.config.rate_lambdas is None:
            raise ValueError("this DCAE model has a single rate (config.rate_lambdas is None)")
        return 1.0, float(len(self.config.rate_lambdas))

    @property
    def default_quality(self) -> Optional[float]:
        """The quality ``forward``/``compress`` use when none is given
        (``None`` for a single-rate model): the middle of the range unless set
        on this instance (e.g. by :func:`dcae.zoo.shipped.load_pretrained`, so
        that CompressAI's tools, which call ``compress(x)``, code at it).  It
        is not part of the weights or the model's digest."""
        if self.config.rate_lambdas is None:
            return None
        if self._default_quality is not None:
            return self._default_quality
        lo, hi = self.quality_range
        return (lo + hi) / 2

    @default_quality.setter
    def default_quality(self, quality: Optional[float]) -> None:
        # check_quality refuses any quality for a single-rate model
        self._default_quality = None if quality is None else self.check_quality(quality)

    _default_quality: Optional[float] = None

    def check_quality(self, quality: Optional[float]) -> Optional[float]:
        """``quality`` as a float after checking it against this model
        (``None``: :attr:`default_quality`); ``None`` for a single-rate model.

        Raises:
            TypeError: not a real number.
            ValueError: outside :attr:`quality_range`, or given to a
                single-rate model.
        """
        if self.config.rate_lambdas is None:
            if quality is not None:
                raise ValueError(
                    f"quality={quality!r} given, but this DCAE model has a single rate "
                    "(no rate_lambdas); load a variable-rate model or leave quality out"
                )
            return None
        if quality is None:
            return self.default_quality
        if isinstance(quality, bool) or not isinstance(quality, (int, float)):
            if isinstance(quality, Tensor) and quality.numel() == 1:
                quality = float(quality)
            else:
                raise TypeError(f"quality must be a real number, got {type(quality).__name__}")
        q = float(quality)
        lo, hi = self.quality_range
        if not lo <= q <= hi:  # also NaN
            raise ValueError(f"quality {quality!r} is outside this model's range [{lo:g}, {hi:g}]")
        return q

    def lambda_for(self, quality: Quality) -> Quality:
        """The rate-distortion lambda of a (real) quality: the rate points'
        lambdas interpolated geometrically, as the gains are."""
        self.quality_range  # noqa: B018 (raises for a single-rate model)
        device = quality.device if isinstance(quality, Tensor) else None
        lam = torch.tensor(self.config.rate_lambdas, dtype=torch.float64, device=device)
        q = torch.as_tensor(quality, dtype=torch.float64, device=device)
        out = interpolate(lam.log()[:, None], q).squeeze(-1).exp()
        return out if isinstance(quality, Tensor) else float(out)

    def gains(self, quality: Quality, batch: int = 1) -> Tuple[Tensor, Tensor]:
        """``(gain, inverse gain)``, each ``(batch, M, 1, 1)``, at ``quality``
        (a float, or a tensor with one quality per sample).

        Gain vectors of neighbouring rate points are interpolated in the log
        domain (the "exponential interpolation" of Cui et al., CVPR 2021):
        ``y`` is multiplied by the gain before coding and ``y_hat`` by the
        inverse gain before ``g_s``."""
        if isinstance(quality, Tensor):  # stays on its device: no host read
            lo, hi = self.quality_range
            if quality.numel() == 1:
                quality = quality.reshape(1).expand(batch)
            if quality.dim() != 1 or quality.shape[0] != batch:
                raise ValueError(
                    f"expected one quality per sample ({batch}), got shape {tuple(quality.shape)}"
                )
            if quality.device.type == "cpu":  # checked on the host: free
                if not bool(((quality >= lo) & (quality <= hi)).all()):
                    raise ValueError(f"qualities outside this model's range [{lo:g}, {hi:g}]")
            else:  # on an accelerator: an asynchronous device-side assert, no host sync
                torch._assert_async(
                    ((quality >= lo) & (quality <= hi)).all(),
                    f"qualities outside this model's range [{lo:g}, {hi:g}]",
                )
            q = quality.to(self.log_gain.device, self.log_gain.dtype)
        else:
            value = self.check_quality(quality)  # type: ignore[arg-type]
            q = self.log_gain.new_full((batch,), value)  # type: ignore[arg-type]
        both = interpolate(torch.cat([self.log_gain, self.log_inv_gain], 1), q).exp()
        g, ig = both[:, :, None, None].chunk(2, dim=1)
        return g, ig

    def first_rate_points(self, count: int) -> Any:
        """A copy of this variable-rate model that keeps only its first
        ``count`` rate points (qualities ``1..count``): the same weights, the
        lambdas and gains of those points, CDF tables included.  Qualities up
        to ``count`` code exactly as here (the copy's strings verify only with
        the copy, whose configuration differs).

        Raises:
            ValueError: a single-rate model, or ``count`` not in
                ``2..number of rate points``.
        """
        lam = self.config.rate_lambdas
        if lam is None:
            raise ValueError("this DCAE model has a single rate")
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= len(lam):
            raise ValueError(f"count must be an int in 2..{len(lam)}, got {count!r}")
        net = type(self)(self.config.replace(rate_lambdas=tuple(lam[:count])))
        state = dict(self.state_dict())
        state["log_gain"] = state["log_gain"][:count]
        state["log_inv_gain"] = state["log_inv_gain"][:count]
        net.load_state_dict(state)
        net.to(self.log_gain.device)
        if self._default_quality is not None and self._default_quality <= count:
            net.default_quality = self._default_quality
        return net

    @torch.no_grad()
    def reset_gains(self, reference_lambda: float) -> None:
        """Set every rate point's gains to the uniform step the MSE optimum
        predicts from a model trained at ``reference_lambda``: gain
        ``sqrt(lambda_k / reference_lambda)`` and its inverse (a warm start
        from a single-rate model of that lambda)."""
        if self.config.rate_lambdas is None:
            raise ValueError("this DCAE model has a single rate")
        lam = torch.tensor(self.config.rate_lambdas, dtype=torch.float64)
        log_g = (0.5 * (lam / float(reference_lambda)).log()).to(self.log_gain.dtype)
        self.log_gain.copy_(log_g[:, None].expand_as(self.log_gain))
        self.log_inv_gain.copy_(-log_g[:, None].expand_as(self.log_inv_gain))
