"""CompressAI integration: DCAE's registry and zoo entries.

Importing :mod:`dcae` registers :class:`~dcae.DCAEModel`

- in ``compressai.registry`` (``register_model``),
- in ``compressai.zoo.image_models`` and ``compressai.zoo.models`` (the zoo
  factory :func:`dcae`), and
- in ``compressai.zoo.image.model_architectures`` (what
  ``compressai.utils.eval_model checkpoint`` builds models from),

under the name :data:`ZOO_NAME`: ``"dcae"``, or ``"dcae-lu2025"`` when the
installed CompressAI already ships a model called ``"dcae"`` (its development
versions carry their own port), which is never overridden.

:func:`dcae` with ``pretrained=True`` reads the authors' checkpoints from a
local cache (:mod:`dcae.zoo.official`).  Importing this module registers.
"""

from __future__ import annotations

from typing import Any

from ..errors import DCAEError
from ..models.dcae import DCAEModel
from .official import check_metric, check_quality, load_official

__all__ = ["ZOO_NAME", "dcae", "register"]


def _choose_name() -> str:
    import compressai.zoo
    from compressai.registry import MODELS
    from compressai.zoo.image import model_architectures

    for name in ("dcae", "dcae-lu2025"):
        taken = [
            MODELS.get(name),
            compressai.zoo.image_models.get(name),
            compressai.zoo.models.get(name),
            model_architectures.get(name),
        ]
        if all(obj is None or obj is DCAEModel or obj is dcae for obj in taken):
            return name
    raise DCAEError("both 'dcae' and 'dcae-lu2025' are taken in CompressAI's registry")


def register() -> str:
    """Register DCAE with CompressAI (idempotent); returns the name used."""
    import compressai.zoo
    from compressai.registry import register_model
    from compressai.zoo.image import model_architectures

    name = _choose_name()
    register_model(name)(DCAEModel)
    compressai.zoo.image_models[name] = dcae
    compressai.zoo.models[name] = dcae
    model_architectures[name] = DCAEModel
    return name


def dcae(
    quality: int,
    metric: str = "mse",
    pretrained: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> DCAEModel:
    """CompressAI zoo factory: the DCAE model of ``quality`` 1..6.

    Qualities map to the official lambdas
    :data:`~dcae.zoo.official.OFFICIAL_LAMBDAS` (MSE
    0.0018 ... 0.05, MS-SSIM 2.40 ... 60.5).  Without ``pretrained`` a fresh
    model is returned (``kwargs`` go to :class:`~dcae.DCAEModel`: a preset name
    as ``config=`` and config overrides).

    Args:
        quality: rate point, 1 (lowest rate) to 6.
        metric: ``"mse"`` or ``"ms-ssim"``.
        pretrained: load the authors' checkpoint from
            :func:`~dcae.zoo.official.weights_dir`
            (nothing is downloaded: Google Drive needs a browser).
        progress: accepted for CompressAI compatibility (unused).

    Raises:
        ValueError: bad ``quality``/``metric``, or ``kwargs`` with ``pretrained``.
        DCAEError: the checkpoint is missing (the message says which file to
            download from where and where to put it) or invalid.
    """
    del progress
    metric = check_metric(metric)
    quality = check_quality(quality)
    if pretrained:
        if kwargs:
            raise ValueError(f"pretrained models take no architecture arguments: {kwargs}")
        return load_official(quality, metric)
    return DCAEModel(**kwargs)


ZOO_NAME: str = register()
