"""Padding: how an image is padded before coding (always centred, by edge
replication) under the three policies a ``.dcae`` file records.

No torch at import: the command line's parsers read the policy names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

from ..errors import DCAEError
from .limits import MAX_MULTIPLE, MAX_SIDE
from .shape import LATENT_STRIDE

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor, nn

__all__ = [
    "DEFAULT_DOWNSAMPLING_FACTOR",
    "MIN_CODED_SIDE",
    "OFFICIAL_MULTIPLE",
    "PADDING_POLICIES",
    "coding_padding",
    "downsampling_factor",
    "pad_image",
    "policy_multiple",
    "policy_padding",
]

OFFICIAL_MULTIPLE = 128
"""The official scripts pad images to a multiple of this (centred)."""
MIN_CODED_SIDE = 32
"""The ``minimal`` policy codes every side on at least this many pixels
(edge-replicated, the image centred): the transforms reconstruct the pixels
near an edge of the coded image poorly, so a 1-4 pixel image coded as it is
came back as garbage (format guide, "Padding policies")."""
DEFAULT_DOWNSAMPLING_FACTOR = 64
"""Padding multiple of a model without ``downsampling_factor`` (CompressAI's
``eval_model`` pads every image to a multiple of 64)."""
PADDING_POLICIES = ("minimal", "official", "multiple")
"""Padding policies by their code in the file (index = code)."""


def _centred(
    height: int, width: int, multiple: int, least: int = 1, most: Optional[int] = None
) -> Tuple[int, int, int, int]:
    def side(n: int) -> int:
        padded = (max(n, least) + multiple - 1) // multiple * multiple
        return padded if most is None else max(n, min(padded, most))

    new_h, new_w = side(height), side(width)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return (left, new_w - width - left, top, new_h - height - top)


def _check_multiple(policy: str, multiple: Any) -> int:
    if isinstance(multiple, bool) or not isinstance(multiple, int):
        raise ValueError(f"the {policy!r} policy needs an int multiple, got {multiple!r}")
    if not 1 <= multiple <= MAX_MULTIPLE:
        raise ValueError(f"padding multiple {multiple} is not in 1..{MAX_MULTIPLE}")
    return multiple


def policy_padding(
    policy: str, height: int, width: int, multiple: Optional[int] = None
) -> Tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding a policy applies to an image,
    always with the image centred (the odd column/row goes right/bottom).

    ``"minimal"`` pads to a multiple of ``multiple`` (the model's stride:
    default :data:`LATENT_STRIDE`, 16, for DCAE, whose latent is then
    ``ceil(H/16) x ceil(W/16)`` as without padding), each side at least
    :data:`MIN_CODED_SIDE` and at most :data:`MAX_SIDE` (a side of more than
    65520 pixels is padded to 65535 only: DCAE pads the rest inside its
    layers); ``"official"`` pads to a multiple of 128, as the
    official ``eval.py`` does; ``"multiple"`` pads to a multiple of
    ``multiple`` (a model's ``downsampling_factor``, as CompressAI's
    ``eval_model`` pads).  :func:`dcae.encode` fills the padding by edge
    replication.
    """
    if policy == "minimal":
        m = LATENT_STRIDE if multiple is None else _check_multiple(policy, multiple)
        return _centred(height, width, m, MIN_CODED_SIDE, MAX_SIDE)
    if policy == "official":
        return _centred(height, width, OFFICIAL_MULTIPLE)
    if policy == "multiple":
        return _centred(height, width, _check_multiple(policy, multiple))
    raise ValueError(f"unknown padding policy {policy!r}; choose one of {PADDING_POLICIES}")


def policy_multiple(policy: str, multiple: Optional[int] = None) -> int:
    """The multiple a policy pads to (``minimal``: ``multiple``, default 16;
    ``official``: 128; ``multiple``: ``multiple``)."""
    if policy == "minimal" and multiple is None:
        return LATENT_STRIDE
    if policy == "official":
        return OFFICIAL_MULTIPLE
    policy_padding(policy, 1, 1, multiple)  # checks policy and multiple
    return int(multiple)  # type: ignore[arg-type]


def downsampling_factor(model: nn.Module) -> int:
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


def coding_padding(
    model: nn.Module, height: int, width: int, policy: Optional[str] = None
) -> Tuple[str, int, Tuple[int, int, int, int]]:
    """``(policy, multiple, (left, right, top, bottom))`` for coding an image
    of ``height x width`` with ``model``.

    ``policy`` defaults to ``"minimal"`` for DCAE and ``"multiple"`` (a
    multiple of the model's ``downsampling_factor``, 64 if it has none, as
    CompressAI's ``eval_model``) for any other model.  ``"minimal"`` pads to a
    multiple of 16 for DCAE (its latent stride: the hyper-latent pads
    itself) and of the ``downsampling_factor`` for other models, each side
    at least :data:`MIN_CODED_SIDE`.
    """
    from ..models.dcae import DCAEModel

    dcae = isinstance(model, DCAEModel)
    policy = ("minimal" if dcae else "multiple") if policy is None else policy
    if policy not in PADDING_POLICIES:
        raise ValueError(f"unknown padding policy {policy!r}; choose one of {PADDING_POLICIES}")
    factor = None
    if policy == "minimal":
        factor = LATENT_STRIDE if dcae else downsampling_factor(model)
    elif policy == "multiple":
        factor = downsampling_factor(model)
    multiple = policy_multiple(policy, factor)
    return policy, multiple, policy_padding(policy, height, width, multiple)


def pad_image(x: Tensor, padding: Tuple[int, int, int, int]) -> Tensor:
    """``x`` padded by ``(left, right, top, bottom)`` pixels replicating its
    edges (what :func:`dcae.encode` and ``dcae eval`` code): the decoder only
    crops, and the transforms reconstruct an image's content better next to
    more of it than next to zeros (format guide, "Padding policies")."""
    if not any(padding):
        return x
    import torch.nn.functional as F

    return F.pad(x, padding, mode="replicate")
