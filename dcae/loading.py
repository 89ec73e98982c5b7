"""Any CompressAI model for dcae's tools: naming, loading and readiness.

Every tool that takes a model (``dcae.encode``/``decode``, ``dcae compress``,
``decompress``, ``eval``, ``convert`` and ``python -m dcae.eval_model``)
loads it with :func:`load_model` and checks it with :func:`check_ready`::

    --model NAME|module:Class ──► resolve_class ──┐
    --checkpoint PATH ──► read_checkpoint ────────┴─► from_state_dict (or Class()
        (torch.load(weights_only=True),                + load_state_dict)
         {"state_dict": ...}, "module.")             ──► update(force=True) ──► model

Without a model name the checkpoint is a DCAE one, loaded exactly as
:func:`dcae.pretrained.load_checkpoint` does (configuration inferred from the
tensor shapes).  A model is named in a ``.dcae`` file by
:func:`model_identity`; dcae never imports a module named in a file: only the
names a user passes (``--model``) are resolved.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from compressai.entropy_models import EntropyModel
from compressai.models import CompressionModel

from .bitstream import MAX_MULTIPLE, MAX_NAME
from .errors import DCAEError, ModelMismatchError

__all__ = [
    "DEFAULT_DOWNSAMPLING_FACTOR",
    "check_ready",
    "downsampling_factor",
    "eval_mode",
    "image_model_names",
    "known_model_name",
    "load_model",
    "missing_tables",
    "model_identity",
    "resolve_class",
    "save_model",
]

DEFAULT_DOWNSAMPLING_FACTOR = 64
"""Padding multiple of a model without ``downsampling_factor`` (CompressAI's
``eval_model`` pads every image to a multiple of 64)."""

#: the checkpoint key :func:`save_model` records the model name under
ARCHITECTURE_KEY = "architecture"


# ----------------------------------------------------------------------------- names
def image_model_names() -> List[str]:
    """CompressAI's image model names (its zoo, DCAE included)."""
    import compressai.zoo

    from . import zoo

    zoo.register()
    return sorted(compressai.zoo.image_models)


def _is_dcae(model_or_class: Any) -> bool:
    from .nn.model import DCAEModel

    if isinstance(model_or_class, type):
        return issubclass(model_or_class, DCAEModel)
    return isinstance(model_or_class, DCAEModel)


def model_identity(model: torch.nn.Module) -> Tuple[str, str]:
    """``(kind, name)`` recorded in a ``.dcae`` file for ``model``.

    ``("dcae", preset name)`` for a :class:`~dcae.DCAEModel`;
    ``("compressai", registry name)`` for one of CompressAI's own models
    (registered in ``compressai.registry`` by CompressAI); else
    ``("class", "module:Class")``, also for a user's class registered under a
    name of theirs: that name means nothing to a fresh process, where the
    user's module is not imported, while ``--model module:Class`` works there.
    """
    if _is_dcae(model):
        name = "".join(c for c in model.config.name if 32 <= ord(c) < 127)  # type: ignore[union-attr]
        return "dcae", (name or "dcae")[:MAX_NAME]
    from compressai.registry import MODELS

    cls = type(model)
    if cls.__module__.split(".")[0] == "compressai":
        for name, registered in MODELS.items():
            if registered is cls:
                return "compressai", name[:MAX_NAME]
    spec = f"{cls.__module__}:{cls.__qualname__}"
    return "class", "".join(c for c in spec if 32 <= ord(c) < 127)[:MAX_NAME]


def known_model_name(name: str) -> bool:
    """Whether ``name`` is a model name this process resolves (CompressAI's
    registry and zoo, DCAE included) without importing a user's module."""
    from compressai.registry import MODELS
    from compressai.zoo.image import model_architectures

    image_model_names()  # registers DCAE
    return name in MODELS or name in model_architectures


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if e.name != top or cwd in sys.path:
            raise DCAEError(f"cannot import {module_name!r} for --model {spec!r}: {e}") from e
    # like uvicorn or celery, look in the current directory too (searched last)
    sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise DCAEError(
            f"cannot import {module_name!r} for --model {spec!r}: {e} (install it, add its "
            "folder to PYTHONPATH or run from that folder)"
        ) from e


def resolve_class(spec: str) -> type:
    """The model class named by ``spec``: ``"module:Class"`` (``Class`` may be
    dotted, ``Outer.Inner``) or a CompressAI registry name such as
    ``"bmshj2018-factorized"`` (``"dcae"`` is :class:`~dcae.DCAEModel`).

    Only call it with a name a user gave: it imports ``module``.

    Raises:
        DCAEError: the module cannot be imported, the name is unknown, or it
            is not a ``compressai.models.CompressionModel`` subclass.
    """
    if not isinstance(spec, str) or not spec:
        raise DCAEError(f"a model name must be a non-empty string, got {spec!r}")
    if ":" in spec:
        module_name, _, qualname = spec.partition(":")
        if not module_name or not qualname:
            raise DCAEError(f"--model {spec!r}: expected module:Class, e.g. my_codecs:MyCodec")
        obj: Any = _import(module_name, spec)
        for part in qualname.split("."):
            if not hasattr(obj, part):
                raise DCAEError(f"--model {spec!r}: module {module_name!r} has no {qualname!r}")
            obj = getattr(obj, part)
    else:
        from compressai.registry import MODELS
        from compressai.zoo.image import model_architectures

        names = image_model_names()
        obj = MODELS.get(spec) or model_architectures.get(spec)
        if obj is None:
            raise DCAEError(
                f"unknown model {spec!r}: give module:Class (your own CompressionModel; a "
                "name your code registers in CompressAI's registry is unknown here, where "
                "your module is not imported) or a CompressAI image model name "
                f"({', '.join(names)})"
            )
    if not (isinstance(obj, type) and issubclass(obj, CompressionModel)):
        raise DCAEError(f"--model {spec!r} is not a compressai.models.CompressionModel subclass")
    return obj


# ----------------------------------------------------------------------------- readiness
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


def downsampling_factor(model: torch.nn.Module) -> int:
    """``model.downsampling_factor`` (CompressAI's name for the multiple the
    input sides must have), :data:`DEFAULT_DOWNSAMPLING_FACTOR` if absent."""
    factor = getattr(model, "downsampling_factor", None)
    if factor is None:
        return DEFAULT_DOWNSAMPLING_FACTOR
    if isinstance(factor, bool) or not isinstance(factor, int) or not 1 <= factor <= MAX_MULTIPLE:
        raise DCAEError(
            f"{type(model).__name__}.downsampling_factor must be an int in 1..{MAX_MULTIPLE}, "
            f"got {factor!r}"
        )
    return factor


# ----------------------------------------------------------------------------- loading
_WRAPPERS = ("state_dict", "model_state_dict", "network", "model")


def _plain_state_dict(obj: Any, path: Path) -> Dict[str, Any]:
    """The tensors of a checkpoint: wrappers removed, ``module.`` stripped."""
    sd = obj
    for _ in range(2):  # {"state_dict": {"network": ...}} and the like
        for key in _WRAPPERS:
            if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
                sd = sd[key]
                break
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(k, str) for k in sd):
        raise ModelMismatchError(f"{path} does not hold a state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def _build(cls: type, sd: Dict[str, Any], spec: str, path: Path) -> CompressionModel:
    factory = getattr(cls, "from_state_dict", None)
    try:
        if callable(factory):
            model = factory(sd)
        else:
            try:
                model = cls()
            except TypeError as e:
                raise ModelMismatchError(
                    f"cannot build {spec}() without arguments ({e}); give "
                    f"{cls.__name__} a from_state_dict(state_dict) classmethod or default "
                    "arguments"
                ) from e
            model.load_state_dict(sd)
    except ModelMismatchError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise ModelMismatchError(f"{path} does not fit {spec}: {' '.join(str(e).split())}") from e
    if not isinstance(model, CompressionModel):
        raise ModelMismatchError(f"{spec}.from_state_dict returned {type(model).__name__}")
    return model


def load_model(
    checkpoint: Union[str, os.PathLike],
    model: Optional[str] = None,
    *,
    update: bool = True,
    map_location: str = "cpu",
) -> CompressionModel:
    """Load a checkpoint into an eval-mode model ready to code.

    Args:
        checkpoint: a checkpoint file, read with ``torch.load(weights_only=True)``
            (plain or xz-compressed; ``{"state_dict": ...}`` and similar
            wrappers and ``module.`` prefixes are accepted).
        model: ``"module:Class"``, a CompressAI registry name, or ``None``:
            a DCAE checkpoint (loaded as :func:`dcae.pretrained.load_checkpoint`
            does), or the registry name the file records (:func:`save_model`).
            The model is built with ``Class.from_state_dict(state_dict)`` when
            the class has it, else ``Class()`` and ``load_state_dict``.
        update: rebuild the CDF tables with ``update(force=True)`` (DCAE
            models: only when the file has none, as always).
        map_location: device to load tensors to.

    Raises:
        FileNotFoundError: no such file.
        DCAEError: the model name cannot be resolved.
        ModelMismatchError: the file is unreadable or does not fit the model.
    """
    from .pretrained import model_from_checkpoint, read_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    obj = read_checkpoint(path, map_location)
    recorded = obj.get(ARCHITECTURE_KEY)
    if isinstance(recorded, str) and recorded:
        if model is None and ":" in recorded:
            raise ModelMismatchError(
                f"{path} holds a {recorded} model; pass --model {recorded} (Python: "
                f"model={recorded!r}); dcae does not import modules named in files"
            )
        if model is not None and model != recorded:
            same = ":" not in model + recorded and resolve_class(model) is resolve_class(recorded)
            if not same:
                raise ModelMismatchError(f"{path} holds a {recorded!r} model, not {model!r}")
        model = model or recorded
    cls = resolve_class(model) if model is not None else None
    if cls is None or _is_dcae(cls):
        return model_from_checkpoint(obj, path, cls)
    net = _build(cls, _plain_state_dict(obj["state_dict"], path), model, path)  # type: ignore[arg-type]
    net.eval()
    if update:
        net.update(force=True)
    return net


def save_model(model: CompressionModel, path: Union[str, os.PathLike], name: str) -> None:
    """Save a non-DCAE model for :func:`load_model`: ``{"architecture": name,
    "state_dict": ...}`` (CDF tables included; ``name`` as ``--model`` takes it).
    A ``module:Class`` name still has to be passed to ``--model`` when loading."""
    torch.save({ARCHITECTURE_KEY: name, "state_dict": model.state_dict()}, path)
