"""Which model codes or decodes: the one given, a checkpoint's, or the
shipped model (:func:`resolve_model`, for :func:`dcae.encode` and the command
line), and the one whose weights wrote a ``.dcae`` file (:func:`model_for`,
matched by digest; dcae never imports a module named in a file)."""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

from compressai.models import CompressionModel

from ..errors import DCAEError, ModelMismatchError
from ..format.container import Bitstream
from ..format.fingerprint import model_fingerprint, model_identity
from ..models.dcae import DCAEModel
from ..models.readiness import check_ready
from . import shipped
from .loading import known_model_name, load_model

__all__ = ["model_argument", "model_for", "resolve", "resolve_model"]


def resolve_model(
    model: Optional[CompressionModel] = None,
    quality: Optional[float] = None,
    checkpoint: Union[str, os.PathLike, None] = None,
    name: Optional[str] = None,
) -> Tuple[CompressionModel, Optional[float]]:
    """``(model, quality)``: the given model, a checkpoint, or the shipped
    one (a fresh instance, :func:`dcae.zoo.shipped.load_pretrained`), and the
    quality to code at (``None`` for single-rate models).

    Args:
        model: a model (checked with :func:`dcae.models.readiness.check_ready`).
        quality: quality of a variable-rate model (the shipped one, or
            ``model``/``checkpoint`` if variable-rate); checked, never rounded.
        checkpoint: a checkpoint, loaded with :func:`dcae.zoo.loading.load_model`.
        name: the checkpoint's model, ``module:Class`` or a CompressAI
            registry name (``--model``); default: DCAE.

    Raises:
        ValueError: ``quality`` is out of the model's range or given for a
            single-rate model; both ``model`` and ``checkpoint`` given.
    """
    return resolve(model, quality, checkpoint, name, shared=False)


def _model_quality(model: CompressionModel, quality: Optional[float]) -> Optional[float]:
    """The quality ``model`` codes at: ``quality`` checked against a
    variable-rate DCAE model (its default if ``None``); ``None`` otherwise."""
    if isinstance(model, DCAEModel):
        return model.check_quality(quality)
    if quality is not None:
        raise ValueError(
            f"quality={quality!r} applies to variable-rate DCAE models; "
            f"{type(model).__name__} has its rate in its weights"
        )
    return None


def resolve(
    model: Optional[CompressionModel],
    quality: Optional[float],
    checkpoint: Union[str, os.PathLike, None],
    name: Optional[str],
    *,
    shared: bool,
) -> Tuple[CompressionModel, Optional[float]]:
    """:func:`resolve_model`; with ``shared``, the shipped model is the
    process-wide instance (:func:`dcae.zoo.shipped.shared_model`), for
    :func:`dcae.encode` only: it is never returned to a caller."""
    if model is not None and checkpoint is not None:
        raise ValueError("give at most one of model and checkpoint")
    if name is not None and checkpoint is None:
        raise DCAEError(
            f"--model {name} needs --checkpoint PATH (the weights of the model); in Python, "
            "pass model= a ready model"
        )
    if model is not None:
        check_ready(model)
        return model, _model_quality(model, quality)
    if checkpoint is not None:
        try:
            m = load_model(checkpoint, name)
        except DCAEError as e:  # torch's messages span lines: keep errors to one
            raise type(e)(" ".join(str(e).split())) from e
        check_ready(m)
        return m, _model_quality(m, quality)
    if not shipped.available_qualities():
        raise DCAEError(
            "no model given and this installation of dcae ships no pretrained weights; "
            "pass model= (Python) or --checkpoint PATH (command line)"
        )
    m = shipped.shared_model(quality) if shared else shipped.load_pretrained(quality)
    check_ready(m)
    return m, m.check_quality(quality)


def model_argument(stream: Bitstream) -> str:
    """The ``--model`` a file of another codec than DCAE needs, as advice:
    the recorded ``module:Class`` or CompressAI name, or for a name that no
    registry of this process knows (a user's class registered under a name
    of theirs, by an earlier dcae) ``module:Class`` of that class."""
    if stream.model_kind == "compressai" and not known_model_name(stream.model_name):
        return (
            f"module:Class (the file names {stream.model_name!r}, a name registered in "
            "CompressAI's registry by code this process has not imported: pass the class "
            "itself, e.g. --model my_codecs:MyCodec)"
        )
    return stream.model_name


def _how_to_pass(stream: Bitstream) -> str:
    if stream.model_kind == "dcae":
        return "pass model= (Python) or --checkpoint PATH (command line)"
    return (
        f"pass the model: dcae.decode(data, model=...) in Python, or dcae decompress "
        f"--model {model_argument(stream)} --checkpoint WEIGHTS (dcae never imports a "
        "module named in a file)"
    )


def model_for(stream: Bitstream, model: Optional[CompressionModel] = None) -> CompressionModel:
    """The model that decodes ``stream``: ``model`` if its digest is the
    file's, else the shipped model if it is (a DCAE file given no model).

    Raises:
        ModelMismatchError: the file was written by another model (the
            message names it and says how to pass it).
    """
    if model is not None:
        check_ready(model)
        if model_fingerprint(model) != stream.model_digest:
            kind, name = model_identity(model)
            raise ModelMismatchError(
                f"the file was written by model {stream.describe_model()}, not by the "
                f"given model {name!r} (weights sha256 "
                f"{model_fingerprint(model).hex()[:16]}...)"
            )
        return model
    if stream.model_kind != "dcae":
        raise ModelMismatchError(
            f"the file was written by {stream.describe_model()}, not by a DCAE model "
            f"shipped with dcae; {_how_to_pass(stream)}"
        )
    if not shipped.available_qualities():
        raise ModelMismatchError(
            f"the file needs model {stream.describe_model()}, and this installation of dcae "
            f"ships no pretrained weights; {_how_to_pass(stream)}"
        )
    m = shipped.shared_model()
    if model_fingerprint(m) == stream.model_digest:
        check_ready(m)
        return m
    raise ModelMismatchError(
        f"the file was written by model {stream.describe_model()}, which is not the model "
        f"shipped with this dcae (an earlier dcae's shipped model, or your own: "
        f"{_how_to_pass(stream)})"
    )
