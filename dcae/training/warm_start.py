"""The model a training run starts from: a new model of a preset, or the
weights of a checkpoint (``--init``), a single-rate model becoming a
variable-rate one (:func:`variable_rate_from`)."""

from __future__ import annotations

from typing import Sequence

from ..config import TrainConfig, get_config
from ..errors import DCAEError
from ..models.dcae import DCAEModel
from ..zoo.loading import load_model

__all__ = ["initial_model", "variable_rate_from"]


def initial_model(cfg: TrainConfig) -> DCAEModel:
    """A new model of ``cfg.preset``, or the one of ``cfg.init`` (any checkpoint
    :func:`dcae.zoo.loading.load_model` reads: a model or a training checkpoint.pt)."""
    preset = get_config(cfg.preset)
    if not cfg.init:
        return DCAEModel(preset)
    model = load_model(cfg.init)
    if not isinstance(model, DCAEModel):
        raise DCAEError(f"--init {cfg.init} holds a {type(model).__name__}, not a DCAE model")
    if preset.variable_rate and not model.variable_rate:
        net = variable_rate_from(model, preset.rate_lambdas, cfg.lmbda)  # type: ignore[arg-type]
        net.config = net.config.replace(name=preset.name)
        return net
    return model


def variable_rate_from(
    model: DCAEModel, rate_lambdas: Sequence[float], reference_lambda: float
) -> DCAEModel:
    """A variable-rate model with the weights of a single-rate ``model``
    trained at ``reference_lambda``: the same architecture plus gain vectors
    for ``rate_lambdas``, initialised by
    :meth:`~dcae.DCAEModel.reset_gains` (so the rate point of
    ``reference_lambda``, if it is one, codes exactly as ``model``)."""
    cfg = model.config.replace(rate_lambdas=tuple(rate_lambdas))
    net = DCAEModel(cfg)
    missing, unexpected = net.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) - {"log_gain", "log_inv_gain"}:
        raise DCAEError(f"cannot warm-start: missing {missing}, unexpected {unexpected}")
    net.reset_gains(reference_lambda)
    return net
