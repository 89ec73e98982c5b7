"""Whether a CompressAI model can code: its CDF tables (:func:`check_ready`),
and the eval mode dcae codes in (:func:`eval_mode`)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List

import torch
from compressai.entropy_models import EntropyModel
from compressai.models import CompressionModel

from ..errors import DCAEError

__all__ = ["check_ready", "eval_mode", "missing_tables"]


def missing_tables(model: torch.nn.Module) -> List[str]:
    """Names of the entropy models (``EntropyBottleneck``, ``GaussianConditional``,
    any CompressAI ``EntropyModel``) of ``model`` that have no CDF tables."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, EntropyModel) and m._quantized_cdf.numel() == 0
    ]


def check_ready(model: Any) -> None:
    """Check that ``model`` can code: a CompressAI ``CompressionModel`` whose
    entropy models all have CDF tables.

    Raises:
        TypeError: not a ``CompressionModel``.
        DCAEError: tables missing (``call model.update(force=True) first``).
    """
    if not isinstance(model, CompressionModel):
        raise TypeError(
            "model must be a compressai.models.CompressionModel (a dcae.DCAEModel or "
            f"your own codec), got {type(model).__name__}"
        )
    missing = missing_tables(model)
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DCAEError(
            f"the model has no CDF tables (entropy models {shown}): call "
            "model.update(force=True) first"
        )


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode under ``torch.inference_mode()``, then restore
    its training flag (the one change dcae's coding makes to a given model)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
