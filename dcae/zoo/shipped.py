"""The model shipped inside the package (``dcae/weights``).

``dcae/weights/manifest.json`` names the one shipped model: a variable-rate
model (``"variable_rate": true``) that codes at any real quality in its
``quality_range`` (1 = lowest rate), its file (``{name}.pt.xz``: the weights
packed to int8 per output channel with the CDF tables of ``update()``,
xz-compressed, :mod:`dcae.zoo.packing`) and that file's sha256; the
manifest's ``default_quality`` is the quality used when none is given.
Written by :func:`dcae.zoo.release.package_variable_rate`.

:func:`load_pretrained` returns a fresh instance; :func:`shared_model` is the
one instance :func:`dcae.encode` and :func:`dcae.decode` code with.  That
instance is an explicit cache of this module, built on first use and dropped
by :func:`clear_cache`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import DCAEConfig
from ..errors import DCAEError
from ..models.dcae import DCAEModel
from .checkpoints import model_from_checkpoint, read_checkpoint
from .files import file_sha256

__all__ = [
    "MANIFEST",
    "WEIGHTS_DIR",
    "available_qualities",
    "clear_cache",
    "default_quality",
    "load_pretrained",
    "quality_range",
    "shared_model",
    "weights_file",
]

#: the folder of the shipped weights and their manifest
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: the manifest's file name in :data:`WEIGHTS_DIR`
MANIFEST = "manifest.json"

#: the explicit cache of :func:`shared_model`: the shipped model by
#: ``(file, sha256)`` of its manifest entry; emptied by :func:`clear_cache`
_SHARED: Dict[Tuple[str, str], DCAEModel] = {}


def _entry() -> Optional[Dict[str, Any]]:
    """The manifest's entry of the shipped model; ``None`` if none is shipped.

    Raises:
        DCAEError: the manifest does not describe one variable-rate model.
    """
    path = WEIGHTS_DIR / MANIFEST
    if not path.is_file():
        return None
    models = json.loads(path.read_text()).get("models", [])
    if not models:
        return None
    if len(models) != 1 or not models[0].get("variable_rate"):
        raise DCAEError(f"{path} does not describe one variable-rate model; reinstall dcae")
    return dict(models[0])


def _shipped() -> Dict[str, Any]:
    entry = _entry()
    if entry is None:
        raise DCAEError(
            "this installation of dcae ships no pretrained weights; pass --checkpoint PATH"
        )
    return entry


def weights_file() -> Optional[Tuple[Path, str]]:
    """``(path, sha256)`` of the shipped weights file as the manifest records
    them; ``None`` if none are shipped (the digest names the shipped model
    exactly: the golden files of the tests are keyed by it)."""
    entry = _entry()
    if entry is None:
        return None
    return WEIGHTS_DIR / str(entry["file"]), str(entry.get("sha256", ""))


def available_qualities() -> List[int]:
    """The integer rate points of the shipped model (empty if none is
    shipped); it codes at any real quality in :func:`quality_range`."""
    entry = _entry()
    if entry is None:
        return []
    lo, hi = entry["quality_range"]
    return list(range(int(lo), int(hi) + 1))


def quality_range() -> Tuple[float, float]:
    """``(lowest, highest)`` quality of the shipped model.

    Raises:
        DCAEError: no weights are shipped.
    """
    lo, hi = _shipped()["quality_range"]
    return float(lo), float(hi)


def default_quality() -> float:
    """Quality used when none is given.

    Raises:
        DCAEError: no weights are shipped.
    """
    _shipped()
    return float(json.loads((WEIGHTS_DIR / MANIFEST).read_text())["default_quality"])


def _check_quality(quality: Optional[float]) -> float:
    """``quality`` (default :func:`default_quality`), checked against the range."""
    if quality is not None and (
        isinstance(quality, bool) or not isinstance(quality, (int, float))
    ):
        raise TypeError(f"quality must be a real number, got {type(quality).__name__}")
    q = default_quality() if quality is None else float(quality)
    lo, hi = quality_range()
    if not lo <= q <= hi:  # also NaN
        raise DCAEError(
            f"quality {quality!r} is outside the shipped model's range [{lo:g}, {hi:g}]"
        )
    return q


def shared_model(quality: Optional[float] = None) -> DCAEModel:
    """The process-wide instance of the shipped model that :func:`dcae.encode`
    and :func:`dcae.decode` code with when no model is given (read from its
    file on first use, then kept until :func:`clear_cache`); pass the quality
    to its ``compress``, ``quality`` here is only checked.

    dcae never hands it to a caller: :func:`load_pretrained` and
    :func:`dcae.zoo.resolve.resolve_model` return fresh instances.  Code that calls
    this function must not move, train or edit the model.

    Raises:
        DCAEError: no weights are shipped, they are missing or corrupted, or
            ``quality`` is out of range.
        TypeError: ``quality`` is not a number.
    """
    _check_quality(quality)
    entry = _shipped()
    key = (str(entry["file"]), str(entry.get("sha256", "")))
    model = _SHARED.get(key)
    if model is None:
        path = WEIGHTS_DIR / key[0]
        if not path.is_file():
            raise DCAEError(f"shipped weights {path} are missing; reinstall dcae")
        if key[1] and file_sha256(path) != key[1]:
            raise DCAEError(
                f"shipped weights {path} are corrupted (sha256 mismatch); reinstall dcae"
            )
        model = model_from_checkpoint(read_checkpoint(path), path)
        model.default_quality = default_quality()
        _SHARED.clear()  # at most one: an older manifest's model is not kept
        _SHARED[key] = model
    return model


def clear_cache() -> None:
    """Drop the instance :func:`shared_model` keeps (about 18 MB for the
    shipped ``small-vr`` model); the next use reads the file again."""
    _SHARED.clear()


def load_pretrained(quality: Optional[float] = None) -> DCAEModel:
    """A new instance of the shipped model, in eval mode, that codes at
    ``quality`` (1 = lowest rate) by default.

    The shipped model is a variable-rate model: any real quality in
    :func:`quality_range` works, here and in ``compress(x, quality=q)``;
    ``quality`` only sets the returned instance's
    :attr:`~dcae.DCAEModel.default_quality` (what ``compress(x)`` and
    CompressAI's tools use).

    Each call builds a fresh module from the weights of :func:`shared_model`
    (about 0.2 s for the ``small`` preset on one CPU core), so a caller may
    move, train, put into fast mode or edit the model it gets without
    changing anyone else's (nor the one :func:`dcae.encode` and
    :func:`dcae.decode` use).

    Args:
        quality: default :func:`default_quality`.

    Raises:
        DCAEError: no weights are shipped or ``quality`` is out of range.
        TypeError: ``quality`` is not a number.
    """
    q = _check_quality(quality)
    shared = shared_model()
    model = DCAEModel(DCAEConfig.from_dict(shared.config.to_dict()))
    model.load_state_dict(shared.state_dict())
    model.default_quality = q
    return model.eval()
