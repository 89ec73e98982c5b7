"""CompressAI integration: registry and zoo entries and the authors' weights
(the checkpoint layouts are in :mod:`dcae.convert`).

Importing :mod:`dcae` registers :class:`~dcae.DCAEModel`

- in ``compressai.registry`` (``register_model``),
- in ``compressai.zoo.image_models`` and ``compressai.zoo.models`` (the zoo
  factory :func:`dcae`), and
- in ``compressai.zoo.image.model_architectures`` (what
  ``compressai.utils.eval_model checkpoint`` builds models from),

under the name :data:`ZOO_NAME`: ``"dcae"``, or ``"dcae-lu2025"`` when the
installed CompressAI already ships a model called ``"dcae"`` (its development
versions carry their own port), which is never overridden.

The authors' checkpoints live on Google Drive (links in
:data:`OFFICIAL_URLS`); :func:`dcae` with ``pretrained=True`` reads them from
the local cache :func:`weights_dir` (``$DCAE_WEIGHTS_DIR``, default
``~/.cache/dcae``) and converts their layout on the fly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from .config import PRESETS
from .errors import DCAEError, ModelMismatchError
from .nn.model import DCAEModel
from .pretrained import _sha256

__all__ = [
    "KNOWN_SHA256",
    "METRICS",
    "OFFICIAL_LAMBDAS",
    "OFFICIAL_URLS",
    "ZOO_NAME",
    "checkpoint_candidates",
    "dcae",
    "lambda_for",
    "load_model",
    "register",
    "weights_dir",
]

#: metrics the authors trained for (CompressAI's names)
METRICS = ("mse", "ms-ssim")

#: rate-distortion trade-offs of the official checkpoints, quality 1..6
#: (``--lambda`` of the official ``train.py``; LabShuHangGU/DCAE README)
OFFICIAL_LAMBDAS: Dict[str, Tuple[float, ...]] = {
    "mse": (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.05),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.5),
}

_DRIVE = "https://drive.google.com/file/d/{}/view"
#: Google Drive file ids of the official checkpoints, quality 1..6 per metric
_DRIVE_IDS: Dict[str, Tuple[str, ...]] = {
    "mse": (
        "1JzVuERiZe8cStgLnE5TJii_ssppgY1p-",
        "1JE0SO876a-btXzOQLTilj7D0vJdePlB4",
        "1LdycatKcGXHvFjoR-NE-GWnPlL9-BRWX",
        "1kXfvxsljdN3EfXDGqzknFc2Ecsgf8qgS",
        "1-6ZZ-bScGYj448h1sqMTX4w2Q75MQQ1q",
        "1jCsRJq7Ttx22-yWQbEQAHJWbdIDtc30k",
    ),
    "ms-ssim": (
        "1BIgupje5UcEwzOch3QG1pooCxRxE6Rtt",
        "1br6rf4WtwLY9NPvRCY3GyVP_lvrXRi9y",
        "1U-1f24E6IrKjdHvzObnMslYBLA2YAKXe",
        "1hzgbNPGxfXrwQN-OmTIujGBXCIXYsnW1",
        "1208tRiJw37ruKON1JVPj2YLp23l2O42U",
        "1S81POfELTNyWmy2mMRlL70vuKjGC5QC_",
    ),
}
#: Google Drive pages of the official checkpoints, by ``(metric, quality)``
OFFICIAL_URLS: Dict[Tuple[str, int], str] = {
    (metric, q): _DRIVE.format(file_id)
    for metric, ids in _DRIVE_IDS.items()
    for q, file_id in enumerate(ids, 1)
}

#: sha256 of the official files by ``(metric, quality)``, where known; files
#: without an entry are verified by loading them and inferring their config
KNOWN_SHA256: Dict[Tuple[str, int], str] = {}

_ENV = "DCAE_WEIGHTS_DIR"


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


# ------------------------------------------------------------------ weights
def weights_dir() -> Path:
    """Local cache of the authors' checkpoints: ``$DCAE_WEIGHTS_DIR`` or
    ``~/.cache/dcae``."""
    env = os.environ.get(_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dcae"


def lambda_for(quality: int, metric: str = "mse") -> float:
    """The official lambda of ``quality`` (1 = lowest rate) for ``metric``."""
    metric = _check_metric(metric)
    q = _check_quality(quality)
    return OFFICIAL_LAMBDAS[metric][q - 1]


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 6:
        raise ValueError(f"quality must be an int in 1..6, got {quality!r}")
    return quality


def checkpoint_candidates(quality: int, metric: str = "mse") -> List[Path]:
    """Paths searched for the official checkpoint, first match wins.

    ``dcae-{metric}-q{quality}.pth.tar`` (the documented name) and the names
    the official ``train.py`` writes (``{lambda}checkpoint_best.pth.tar``),
    directly in :func:`weights_dir` or in its ``{metric}/`` subfolder.
    """
    lmbda = lambda_for(quality, metric)
    names = [f"dcae-{metric}-q{quality}.pth.tar"]
    for spelled in dict.fromkeys([str(lmbda), f"{lmbda:.2f}", f"{lmbda:g}"]):
        names.append(f"{spelled}checkpoint_best.pth.tar")
    root = weights_dir()
    return [d / n for d in (root, root / metric) for n in names]


def _missing_message(quality: int, metric: str) -> str:
    target = checkpoint_candidates(quality, metric)[0]
    return (
        f"the authors' DCAE checkpoint for quality {quality} ({metric}, lambda "
        f"{lambda_for(quality, metric)}) is not in {weights_dir()}. Download it from "
        f"{OFFICIAL_URLS[(metric, quality)]} (LabShuHangGU/DCAE README, 'Pretrained Model') "
        f"and save it as {target} (or set {_ENV} to the folder that holds it; the "
        f"official name {lambda_for(quality, metric)}checkpoint_best.pth.tar is accepted too)"
    )


def _pretrained(quality: int, metric: str) -> DCAEModel:
    path = next((p for p in checkpoint_candidates(quality, metric) if p.is_file()), None)
    if path is None:
        raise DCAEError(_missing_message(quality, metric))
    known = KNOWN_SHA256.get((metric, quality))
    if known is not None and _sha256(path) != known:
        raise DCAEError(f"{path} is corrupted or not the official file (sha256 mismatch)")
    model = load_model(path)
    paper = PRESETS["paper"]
    if model.config != paper:
        raise ModelMismatchError(
            f"{path} holds a DCAE model of another architecture than the authors' "
            f"checkpoints ({model.config}); {_missing_message(quality, metric)}"
        )
    return model


def dcae(
    quality: int,
    metric: str = "mse",
    pretrained: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> DCAEModel:
    """CompressAI zoo factory: the DCAE model of ``quality`` 1..6.

    Qualities map to the official lambdas :data:`OFFICIAL_LAMBDAS` (MSE
    0.0018 ... 0.05, MS-SSIM 2.40 ... 60.5).  Without ``pretrained`` a fresh
    model is returned (``kwargs`` go to :class:`~dcae.DCAEModel`: a preset name
    as ``config=`` and config overrides).

    Args:
        quality: rate point, 1 (lowest rate) to 6.
        metric: ``"mse"`` or ``"ms-ssim"``.
        pretrained: load the authors' checkpoint from :func:`weights_dir`
            (nothing is downloaded: Google Drive needs a browser).
        progress: accepted for CompressAI compatibility (unused).

    Raises:
        ValueError: bad ``quality``/``metric``, or ``kwargs`` with ``pretrained``.
        DCAEError: the checkpoint is missing (the message says which file to
            download from where and where to put it) or invalid.
    """
    del progress
    metric = _check_metric(metric)
    quality = _check_quality(quality)
    if pretrained:
        if kwargs:
            raise ValueError(f"pretrained models take no architecture arguments: {kwargs}")
        return _pretrained(quality, metric).eval()
    return DCAEModel(**kwargs)


def load_model(path: Union[str, Path], map_location: str = "cpu") -> DCAEModel:
    """An eval-mode DCAE model from a checkpoint in any layout (dcae, official,
    CompressAI port): :func:`dcae.loading.load_model` (``weights_only=True``;
    CDF tables built when the file has none), kept under this name."""
    from .loading import load_model as _load

    path = Path(path)
    if not path.is_file():
        raise DCAEError(f"checkpoint {path} does not exist")
    return _load(path, map_location=map_location)  # type: ignore[return-value]


ZOO_NAME: str = register()
