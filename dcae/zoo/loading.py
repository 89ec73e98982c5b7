"""Any CompressAI model for dcae's tools: naming and loading.

Every tool that takes a model (``dcae.encode``/``decode``, ``dcae compress``,
``decompress``, ``eval``, ``convert`` and ``python -m dcae.eval_model``)
loads it with :func:`load_model` and checks it with
:func:`~dcae.models.readiness.check_ready`::

    --model NAME|module:Class ──► resolve_class ──┐
    --checkpoint PATH ──► read_checkpoint ────────┴─► from_state_dict (or Class()
        (torch.load(weights_only=True),                + load_state_dict)
         {"state_dict": ...}, "module.")             ──► update(force=True) ──► model

Without a model name the checkpoint is a DCAE one, loaded exactly as
:func:`load_checkpoint` does (configuration inferred from the tensor
shapes).  A model is named in a ``.dcae`` file by
:func:`~dcae.format.fingerprint.model_identity`; dcae never imports a module
named in a file: only the names a user passes (``--model``) are resolved.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import torch
from compressai.models import CompressionModel

from ..errors import DCAEError, ModelMismatchError
from ..models.dcae import DCAEModel
from ..models.layouts import unwrap
from .checkpoints import model_from_checkpoint, read_checkpoint
from .registry import register

__all__ = [
    "image_model_names",
    "known_model_name",
    "load_checkpoint",
    "load_model",
    "resolve_class",
    "save_model",
]

#: the checkpoint key :func:`save_model` records the model name under
ARCHITECTURE_KEY = "architecture"


# ----------------------------------------------------------------------------- names
def image_model_names() -> List[str]:
    """CompressAI's image model names (its zoo, DCAE included)."""
    import compressai.zoo

    register()
    return sorted(compressai.zoo.image_models)


def _is_dcae(model_or_class: Any) -> bool:
    if isinstance(model_or_class, type):
        return issubclass(model_or_class, DCAEModel)
    return isinstance(model_or_class, DCAEModel)


def known_model_name(name: str) -> bool:
    """Whether ``name`` is a model name this process resolves (CompressAI's
    registry and zoo, DCAE included) without importing a user's module."""
    from compressai.registry import MODELS
    from compressai.zoo.image import model_architectures

    image_model_names()  # registers DCAE
    return name in MODELS or name in model_architectures


@contextlib.contextmanager
def _searching(folder: str) -> Iterator[None]:
    """``folder`` at the end of ``sys.path`` inside the block only."""
    sys.path.append(folder)
    try:
        yield
    finally:
        for i in reversed(range(len(sys.path))):
            if sys.path[i] == folder:
                del sys.path[i]
                break


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if e.name != top or cwd in sys.path:
            raise DCAEError(f"cannot import {module_name!r} for --model {spec!r}: {e}") from e
    # like uvicorn or celery, look in the current directory too (searched last,
    # and only for this import: sys.path is as it was afterwards)
    try:
        with _searching(cwd):
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


# ----------------------------------------------------------------------------- loading
def _plain_state_dict(obj: Any, path: Path) -> Dict[str, Any]:
    """The tensors of a checkpoint (:func:`~dcae.models.layouts.unwrap`)."""
    try:
        sd = unwrap(obj)
    except ModelMismatchError:
        sd = {}
    if not sd:
        raise ModelMismatchError(f"{path} does not hold a state dict")
    return sd


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
            a DCAE checkpoint (loaded as :func:`load_checkpoint` does), or the
            registry name the file records (:func:`save_model`).
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


def load_checkpoint(path: Union[str, os.PathLike], map_location: str = "cpu") -> DCAEModel:
    """Load a DCAE checkpoint in any supported layout into an eval-mode model:
    :func:`load_model` for DCAE checkpoints.

    Accepts what :func:`~dcae.zoo.checkpoints.read_checkpoint` reads: files
    written by :func:`~dcae.zoo.checkpoints.save_checkpoint` (with a config),
    training checkpoints, the shipped files and the official implementation's
    files (the configuration is then inferred).  CDF tables are built if
    missing.

    Raises:
        ModelMismatchError: the file holds another model than a DCAE one.
    """
    model = load_model(path, map_location=map_location)
    if not isinstance(model, DCAEModel):
        raise ModelMismatchError(
            f"{path} holds a {type(model).__name__} model, not a DCAE one; load it with "
            "dcae.zoo.loading.load_model"
        )
    return model
