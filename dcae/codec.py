"""Image <-> ``.dcae`` bytes: :func:`encode` and :func:`decode`, with a
:class:`~dcae.DCAEModel` or any CompressAI ``CompressionModel``.

::

    image ──► to 8-bit RGB tensor ──► pad (policy) ──► model.compress ──► pack ──► bytes
    bytes ──► unpack + checks ──► model match (digest) ──► model.decompress
          ──► crop ──► 8-bit ──► PIL image (L or RGB as recorded)

Padding (:func:`dcae.bitstream.policy_padding`, always by edge replication,
the image centred): DCAE models pad each side to a multiple of 16, at least
32 (``"minimal"``, default: the latent is as small as without padding, and
tiny images code correctly) or as the official scripts (``"official"``, a
multiple of 128); other models get CompressAI's ``eval_model`` padding
(``"multiple"``: a multiple of the model's ``downsampling_factor``).

Image modes:

* ``RGB``: coded directly.
* ``L`` and ``1`` (grayscale, bilevel): replicated to RGB, the header records
  one channel, and :func:`decode` returns an ``L`` image (ITU-R 601 luma of
  the decoded RGB, PIL's ``convert("L")``).  Bilevel images decode as 8-bit
  grayscale.
* ``P`` (palette) without transparency and ``YCbCr``: converted to RGB and
  decoded as ``RGB`` (the palette is not restored).
* anything with alpha (``RGBA``, ``LA``, ``PA``, palette with transparency),
  16/32-bit (``I;16*``, ``I``, ``F``) and other colour spaces (``CMYK``,
  ``LAB``, ``HSV``): refused with :class:`UnsupportedImageError`, whose
  message says how to convert the image explicitly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyModel
from compressai.models import CompressionModel
from PIL import Image
from torch import Tensor

from . import pretrained
from .bitstream import (
    DEFAULT_MAX_PIXELS,
    LATENT_STRIDE,
    MAX_SIDE,
    PADDING_POLICIES,
    Bitstream,
    latent_shapes,
    model_fingerprint,
    pack,
    policy_multiple,
    policy_padding,
    unpack,
)
from .errors import DCAEError, DecodingError, FormatError, ModelMismatchError
from .images import UnsupportedImageError, check_pixels, open_image
from .loading import check_ready, downsampling_factor, eval_mode, load_model, model_identity
from .nn import host
from .nn.model import DCAEModel
from .nn.slice_coders import PORTABLE_GRID_BITS

__all__ = [
    "ImageInput",
    "UnsupportedImageError",
    "decode",
    "decode_stream",
    "encode",
    "find_quality",
    "image_to_tensor",
    "model_argument",
    "coding_padding",
    "pad_image",
    "open_image",
    "read_stream",
    "resolve_model",
    "tensor_to_uint8",
]

ImageInput = Union[str, os.PathLike, Image.Image, Tensor]

_RGB_MODES = {"RGB"}
_GRAY_MODES = {"L", "1"}
_CONVERTED_MODES = {"P", "YCbCr"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _pil_to_rgb(img: Image.Image) -> Tuple[Image.Image, int]:
    """``(RGB image, recorded channels)`` or :class:`UnsupportedImageError`."""
    mode = img.mode
    if mode == "P" and "transparency" in img.info:
        mode = "PA"
    if mode in _RGB_MODES:
        return img, 3
    if mode in _GRAY_MODES:
        return img.convert("L").convert("RGB"), 1
    if mode in _CONVERTED_MODES:
        return img.convert("RGB"), 3
    if mode in _ALPHA_MODES:
        raise UnsupportedImageError(
            f"image mode {img.mode!r} has an alpha channel (or a transparent palette "
            "entry), which dcae does not code; flatten it first, e.g. "
            "img.convert('RGB') to drop the alpha"
        )
    if mode.startswith("I") or mode == "F":
        raise UnsupportedImageError(
            f"image mode {mode!r} has more than 8 bits per sample; dcae codes 8-bit "
            "images only: scale it to 8 bits explicitly (e.g. to mode 'L') first"
        )
    raise UnsupportedImageError(
        f"image mode {mode!r} is not supported (supported: RGB, L, 1, P, YCbCr); "
        "convert it to RGB explicitly first"
    )


def _check_size(h: int, w: int, max_pixels: Optional[int]) -> None:
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise UnsupportedImageError(f"image size {w}x{h} is not in 1..{MAX_SIDE} per side")
    check_pixels(w, h, max_pixels)


def image_to_tensor(
    image: ImageInput, *, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
) -> Tuple[Tensor, int]:
    """``(x, channels)``: ``x`` is ``(1, 3, H, W)`` float32 on 8-bit levels
    (``k/255``), ``channels`` the count to record (1 grayscale, 3 RGB).

    Tensors must be float ``(3, H, W)``, ``(1, 3, H, W)`` (RGB) or ``(1, H, W)``,
    ``(1, 1, H, W)`` (grayscale) with values in ``[0, 1]``; they are rounded
    to 8-bit levels, so encoding a tensor and its 8-bit PIL image give the
    same file.  Images of more than ``max_pixels`` pixels (``None``: no bound)
    are refused; files before their pixels are decoded
    (:func:`dcae.images.open_image`).
    """
    if isinstance(image, Tensor):
        x = image.detach()
        if not x.is_floating_point():
            hint = " (8-bit levels: pass x.float() / 255)" if x.dtype == torch.uint8 else ""
            raise UnsupportedImageError(
                f"expected a float tensor with values in [0, 1], got a {x.dtype} tensor{hint}"
            )
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            hint = ""
            if x.dim() == 4 and x.shape[0] == 1 and x.shape[-1] in (1, 3):
                hint = " (channels last? use x.permute(2, 0, 1) for an (H, W, C) image)"
            raise UnsupportedImageError(
                f"expected a tensor (3, H, W), (1, 3, H, W), (1, H, W) or (1, 1, H, W), "
                f"got {tuple(image.shape)}{hint}"
            )
        _check_size(int(x.shape[2]), int(x.shape[3]), max_pixels)
        x = x.float().cpu()
        if not bool(torch.isfinite(x).all()):
            raise UnsupportedImageError("tensor values must be finite and in [0, 1] (got NaN/inf)")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            hint = " (8-bit levels 0..255? divide by 255 first)" if lo >= 0 and hi <= 255 else ""
            raise UnsupportedImageError(
                f"tensor values must be in [0, 1], got values in [{lo:g}, {hi:g}]{hint}"
            )
        channels = int(x.shape[1])
        x = torch.round(x * 255) / 255
        return x.expand(1, 3, -1, -1).contiguous(), channels
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image, max_pixels=max_pixels)
    if not isinstance(image, Image.Image):
        hint = " (use PIL.Image.fromarray(array))" if type(image).__name__ == "ndarray" else ""
        raise TypeError(
            f"expected a path, a PIL image or a tensor, got {type(image).__name__}{hint}"
        )
    _check_size(image.height, image.width, max_pixels)
    rgb, channels = _pil_to_rgb(image)
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    x = data.view(rgb.height, rgb.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255
    return x.contiguous(), channels


def tensor_to_uint8(x_hat: Tensor) -> Tensor:
    """``(H, W, 3)`` uint8 from ``(1, 3, H, W)`` in ``[0, 1]``: ``round(255 x)``,
    half to even, after clamping (the one 8-bit quantisation of dcae)."""
    return (x_hat[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


# ----------------------------------------------------------------------------- models
def resolve_model(
    model: Optional[CompressionModel] = None,
    quality: Optional[float] = None,
    checkpoint: Union[str, os.PathLike, None] = None,
    name: Optional[str] = None,
) -> Tuple[CompressionModel, Optional[float]]:
    """``(model, quality)``: the given model, a checkpoint, or the shipped
    one (a fresh instance, :func:`dcae.pretrained.load_pretrained`), and the
    quality to code at (``None`` for single-rate models).

    Args:
        model: a model (checked with :func:`dcae.loading.check_ready`).
        quality: quality of a variable-rate model (the shipped one, or
            ``model``/``checkpoint`` if variable-rate); checked, never rounded.
        checkpoint: a checkpoint, loaded with :func:`dcae.loading.load_model`.
        name: the checkpoint's model, ``module:Class`` or a CompressAI
            registry name (``--model``); default: DCAE.

    Raises:
        ValueError: ``quality`` is out of the model's range or given for a
            single-rate model; both ``model`` and ``checkpoint`` given.
    """
    return _resolve(model, quality, checkpoint, name, shared=False)


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


def _resolve(
    model: Optional[CompressionModel],
    quality: Optional[float],
    checkpoint: Union[str, os.PathLike, None],
    name: Optional[str],
    *,
    shared: bool,
) -> Tuple[CompressionModel, Optional[float]]:
    """:func:`resolve_model`; with ``shared``, the shipped model is the
    process-wide instance (:func:`dcae.pretrained.shared_model`), for
    :func:`encode` only: it is never returned to a caller."""
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
    if not pretrained.available_qualities():
        raise DCAEError(
            "no model given and this installation of dcae ships no pretrained weights; "
            "pass model= (Python) or --checkpoint PATH (command line)"
        )
    m = pretrained.shared_model(quality) if shared else pretrained.load_pretrained(quality)
    check_ready(m)
    if isinstance(m, DCAEModel) and m.variable_rate:
        return m, m.check_quality(quality)
    return m, None  # earlier dcae shipped single-rate models: quality picked the model


def model_argument(stream: Bitstream) -> str:
    """The ``--model`` a file of another codec than DCAE needs, as advice:
    the recorded ``module:Class`` or CompressAI name, or for a name that no
    registry of this process knows (a user's class registered under a name
    of theirs, by an earlier dcae) ``module:Class`` of that class."""
    from .loading import known_model_name

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


def _model_for(stream: Bitstream, model: Optional[CompressionModel]) -> CompressionModel:
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
    qualities = pretrained.available_qualities()
    if not qualities:
        raise ModelMismatchError(
            f"the file needs model {stream.describe_model()}, and this installation of dcae "
            f"ships no pretrained weights; {_how_to_pass(stream)}"
        )
    # one variable-rate model, or (earlier dcae) one single-rate model per quality
    variable_rate = pretrained._variable_rate_entry() is not None
    candidates: List[Optional[int]] = [None] if variable_rate else list(qualities)
    for q in candidates:
        m = pretrained.shared_model(q)
        if model_fingerprint(m) == stream.model_digest:
            check_ready(m)
            return m
    raise ModelMismatchError(
        f"the file was written by model {stream.describe_model()}, which is not the model "
        f"shipped with this dcae (an earlier dcae's shipped model, or your own: "
        f"{_how_to_pass(stream)})"
    )


class _GuardedCoder:
    """An entropy coder whose ``decode_with_indexes`` hands CompressAI's rANS
    decoder its string followed by zeros (8 bytes per symbol, plus 1 KiB):
    that decoder does not check the end of its buffer, so a crafted or
    truncated string then reads zeros instead of memory past the buffer
    (well-formed strings never read them)."""

    def __init__(self, coder: Any):
        self._coder = coder

    def decode_with_indexes(self, string: bytes, indexes: Any, *args: Any, **kwargs: Any) -> Any:
        guarded = bytes(string) + bytes(8 * len(indexes) + 1024)
        return self._coder.decode_with_indexes(guarded, indexes, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coder, name)


@contextlib.contextmanager
def _guarded_decoders(model: torch.nn.Module) -> Iterator[None]:
    """Guard the CompressAI entropy models of a non-DCAE model while decoding
    (DCAE's strings guard themselves).  Models that drive ``RansDecoder``
    directly (autoregressive context models) are not covered."""
    saved = []
    if not isinstance(model, DCAEModel):
        for m in model.modules():
            coder = getattr(m, "entropy_coder", None)
            if isinstance(m, EntropyModel) and coder is not None:
                saved.append((m, coder))
                m.entropy_coder = _GuardedCoder(coder)
    try:
        yield
    finally:
        for m, coder in saved:
            m.entropy_coder = coder


def _default_policy(model: torch.nn.Module) -> str:
    return "minimal" if isinstance(model, DCAEModel) else "multiple"


def coding_padding(
    model: torch.nn.Module, height: int, width: int, policy: Optional[str] = None
) -> Tuple[str, int, Tuple[int, int, int, int]]:
    """``(policy, multiple, (left, right, top, bottom))`` for coding an image
    of ``height x width`` with ``model``.

    ``policy`` defaults to ``"minimal"`` for DCAE and ``"multiple"`` (a
    multiple of the model's ``downsampling_factor``, 64 if it has none, as
    CompressAI's ``eval_model``) for any other model.  ``"minimal"`` pads to a
    multiple of 16 for DCAE (its latent stride: the hyper-latent pads
    itself) and of the ``downsampling_factor`` for other models, each side
    at least :data:`~dcae.bitstream.MIN_CODED_SIDE`.
    """
    policy = _default_policy(model) if policy is None else policy
    if policy not in PADDING_POLICIES:
        raise ValueError(f"unknown padding policy {policy!r}; choose one of {PADDING_POLICIES}")
    factor = None
    if policy == "minimal":
        factor = LATENT_STRIDE if isinstance(model, DCAEModel) else downsampling_factor(model)
    elif policy == "multiple":
        factor = downsampling_factor(model)
    multiple = policy_multiple(policy, factor)
    return policy, multiple, policy_padding(policy, height, width, multiple)


def pad_image(x: Tensor, padding: Tuple[int, int, int, int]) -> Tensor:
    """``x`` padded by ``(left, right, top, bottom)`` pixels replicating its
    edges (what :func:`encode` and ``dcae eval`` code): the decoder only
    crops, and the transforms reconstruct an image's content better next to
    more of it than next to zeros (format guide, "Padding policies")."""
    if not any(padding):
        return x
    return F.pad(x, padding, mode="replicate")


def _flat_strings(strings: Any) -> Tuple[bytes, ...]:
    """``compress``'s strings (a list of one-string lists) as a tuple of bytes."""
    if not isinstance(strings, (list, tuple)) or not strings:
        raise DCAEError(f"model.compress returned strings of type {type(strings).__name__}")
    out = []
    for i, per_sample in enumerate(strings):
        if (
            not isinstance(per_sample, (list, tuple))
            or len(per_sample) != 1
            or not isinstance(per_sample[0], (bytes, bytearray))
        ):
            raise DCAEError(
                f"model.compress returned strings[{i}] of {type(per_sample).__name__}; a "
                ".dcae file stores a list of lists holding one byte string each (batch 1)"
            )
        out.append(bytes(per_sample[0]))
    if len(out) > 255:
        raise DCAEError(f"model.compress returned {len(out)} string lists (a file holds 255)")
    return tuple(out)


def _check_dcae_shape(stream: Bitstream) -> None:
    """A DCAE model's shape follows from the coded size: check it before decoding."""
    ch, cw = stream.coded_size
    (yh, yw), z = latent_shapes(ch, cw)
    shape = stream.shape
    ok = isinstance(shape, dict) and {"y", "hyper"} <= set(shape)
    if ok:
        y, hyper, image = shape["y"], shape["hyper"], shape.get("image", (ch, cw))
        ok = (
            isinstance(y, (tuple, list))
            and len(y) >= 2
            and tuple(y[-2:]) == (yh, yw)
            and isinstance(hyper, (tuple, list))
            and tuple(hyper) == z
            and isinstance(image, (tuple, list))
            and tuple(image) == (ch, cw)
        )
    if not ok:
        raise FormatError(
            f"shape {shape!r:.120} does not fit a DCAE model coding a {cw}x{ch} image "
            f"(latent {yh}x{yw}, hyper-latent {z[0]}x{z[1]})"
        )


# ----------------------------------------------------------------------------- API
def encode(
    image: ImageInput,
    *,
    model: Optional[CompressionModel] = None,
    quality: Optional[float] = None,
    target_bpp: Optional[float] = None,
    padding: Optional[str] = None,
    portable: Optional[bool] = None,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> bytes:
    """Compress an image to the bytes of a ``.dcae`` file.

    Args:
        image: a path, a PIL image or a float tensor in ``[0, 1]`` (see
            :func:`image_to_tensor` and the module docstring for modes).
        model: the model to use: a :class:`~dcae.DCAEModel` or any CompressAI
            ``CompressionModel`` whose ``compress`` returns a list of
            one-string lists (eval mode is used; CDF tables must exist:
            ``model.update(force=True)``); default: the shipped model of
            ``quality``.
        quality: the quality of a variable-rate model (the shipped one, or
            ``model``): any real number in its range (1 = lowest rate),
            used exactly as given and recorded in the file; default: the
            model's default quality.  Single-rate models refuse it.
        target_bpp: instead of ``quality``: the rate wanted, in bits per
            pixel of the whole file; the quality is found by a few encodes
            (:func:`find_quality`, within 3 %).
        padding: how the image is padded before coding, always centred and
            by edge replication (the decoder crops it off): ``"minimal"``
            (DCAE's default: each side to a multiple of 16, at least 32; the
            latent is ``ceil(H/16) x ceil(W/16)`` as without padding, for
            images of 32 pixels or more per side; other models: a multiple
            of their ``downsampling_factor``), ``"official"`` (a multiple of
            128, as the official scripts) or ``"multiple"`` (the default of
            other models: a multiple of the model's ``downsampling_factor``,
            as CompressAI's ``eval_model``).
        portable: code the entropy parameters in DCAE's portable mode (float64,
            means on a 2^-6 grid), so that the file decodes under any attention
            backend, thread count, compiler or device; recorded in the header.
            Default: on for DCAE models (it costs about 1.3x the coding time
            on a CPU and no measurable rate; format guide, "Portable
            coding"), off for other models, which do not have it.
            ``portable=False`` writes a file that may only decode on the same
            backend and device.
        max_pixels: refuse images with more pixels (``None``: no bound), as
            :func:`decode` refuses files; a file's size is read from its header
            before any pixel is decoded.  Coding needs about 250 bytes per
            pixel with the ``small`` preset.

    Raises:
        UnsupportedImageError: the image cannot be coded (mode, size, values,
            animated, more than ``max_pixels`` pixels).
        DCAEError: no model is available, or it has no CDF tables;
            ``target_bpp`` is out of reach for this image.
        TypeError: ``model`` is not a ``CompressionModel``.
        ValueError: ``quality`` out of range or given to a single-rate model.
    """
    if padding is not None and padding not in PADDING_POLICIES:
        raise ValueError(f"unknown padding policy {padding!r}; choose one of {PADDING_POLICIES}")
    if target_bpp is not None:
        if quality is not None:
            raise ValueError("give quality or target_bpp, not both")
        options = {"padding": padding, "portable": portable, "max_pixels": max_pixels}
        return find_quality(image, target_bpp, model=model, **options)[1]  # type: ignore[arg-type]
    x, channels = image_to_tensor(image, max_pixels=max_pixels)
    net, q = _resolve(model, quality, None, None, shared=True)
    if portable is None:
        portable = isinstance(net, DCAEModel)
    if portable and not isinstance(net, DCAEModel):
        raise ValueError(
            f"portable coding is a DCAE mode; {type(net).__name__} does not support it"
        )
    height, width = int(x.shape[2]), int(x.shape[3])
    policy, multiple, pad = coding_padding(net, height, width, padding)
    kind, name = model_identity(net)
    header = Bitstream(
        model_kind=kind,
        model_name=name,
        model_digest=model_fingerprint(net),
        quality=q,
        width=width,
        height=height,
        channels=channels,
        bit_depth=8,
        padding_policy=policy,
        pad_multiple=multiple,
        padding=pad,
        shape=None,
        strings=(),
        portable=portable,
        grid_bits=PORTABLE_GRID_BITS if portable else None,
    )
    x = pad_image(x, pad)
    device = next(net.parameters()).device
    kwargs: Dict[str, Any] = {}
    if q is not None:
        kwargs["quality"] = q
    if portable:
        kwargs["portable"] = True
        kwargs["grid_bits"] = PORTABLE_GRID_BITS
    if isinstance(net, DCAEModel):  # the header's decoding fields, bound into the checks
        kwargs["associated_data"] = header.associated_data()
    try:
        with eval_mode(net):
            out = net.compress(x.to(device), **kwargs)
    except DCAEError:
        raise
    except (RuntimeError, ValueError, IndexError) as e:  # a codec that cannot code this size
        if isinstance(net, DCAEModel):
            raise
        coded = f"{width + pad[0] + pad[1]}x{height + pad[2] + pad[3]}"
        message = " ".join(str(e).split())[:200]
        raise DCAEError(
            f"{type(net).__name__}.compress failed on the {coded} image (padding "
            f"{policy!r}, to a multiple of {multiple}): {type(e).__name__}: {message}; does "
            "the model need another multiple? give it a downsampling_factor attribute"
        ) from e
    try:
        stream = dataclasses.replace(
            header, shape=out["shape"], strings=_flat_strings(out["strings"])
        )
        if kind == "dcae":
            _check_dcae_shape(stream)
        return pack(stream)
    except FormatError as e:  # what the model returned does not fit a .dcae file
        raise DCAEError(f"cannot store what {name}.compress returned: {e}") from e


def find_quality(
    image: ImageInput,
    target_bpp: float,
    *,
    model: Optional[CompressionModel] = None,
    tolerance: float = 0.03,
    max_encodes: int = 12,
    **options: Any,
) -> Tuple[float, bytes]:
    """``(quality, file bytes)``: the quality of a variable-rate model whose
    file codes ``image`` at ``target_bpp`` bits per pixel (of the whole
    ``.dcae`` file) within ``tolerance`` (relative), found by a few encodes.

    The rate grows with the quality, about 1.4x per unit for the shipped
    model: the search starts at the model's default quality, steps by the
    slope it measures until it brackets the target, then narrows the bracket
    (regula falsi with the Illinois rule on the log rate): 1 to 3 encodes for
    Kodak images and targets of 0.2 to 0.7 bpp.  ``options`` are
    :func:`encode`'s (``padding``, ``portable``, ``max_pixels``).

    Raises:
        DCAEError: the target is below the lowest or above the highest rate
            the model reaches on this image (the message gives that range),
            or ``max_encodes`` encodes did not reach the tolerance.
        ValueError: ``target_bpp`` or ``tolerance`` is not positive, or the
            model has a single rate.
    """
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, (int, float)):
        raise TypeError(f"target_bpp must be a number, got {type(target_bpp).__name__}")
    if not 0 < target_bpp < math.inf:
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp!r}")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    x, _ = image_to_tensor(image, max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))
    pixels = int(x.shape[2]) * int(x.shape[3])
    net, start = _resolve(model, None, None, None, shared=model is None)
    if start is None:
        raise ValueError("target_bpp needs a variable-rate model; this one has a single rate")
    lo, hi = net.quality_range  # type: ignore[union-attr]
    coded: Dict[float, bytes] = {}

    def log_error(q: float) -> float:
        if len(coded) >= max_encodes:
            raise DCAEError(
                f"no quality within {tolerance:.0%} of {target_bpp} bpp after {max_encodes} "
                f"encodes (closest: {_closest(coded, pixels, target_bpp)})"
            )
        coded[q] = encode(image, model=model, quality=q, **options)
        return math.log(8 * len(coded[q]) / pixels / target_bpp)

    def done(e: float) -> bool:
        return abs(math.exp(e) - 1) <= tolerance

    q, e = start, log_error(start)
    if done(e):
        return q, coded[q]
    slope = math.log(1.4)  # log rate per unit of quality, refined below
    a, ea = q, e  # walk towards the target until it is bracketed
    while True:
        edge = hi if ea < 0 else lo
        b = min(hi, max(lo, a - ea / slope))
        if b == a:
            bpp = 8 * len(coded[a]) / pixels
            raise DCAEError(
                f"{target_bpp} bpp is out of reach for this image: quality {edge:g} gives "
                f"{bpp:.4f} bpp"
            )
        eb = log_error(b)
        if done(eb):
            return b, coded[b]
        if (ea < 0) != (eb < 0):
            break
        if eb != ea:
            slope = max(0.05, (eb - ea) / (b - a))
        a, ea = b, eb
    side = 0  # Illinois: halve the kept end's error when it is kept twice
    while True:
        c = b - eb * (b - a) / (eb - ea)
        ec = log_error(c)
        if done(ec):
            return c, coded[c]
        if (ec < 0) == (eb < 0):
            b, eb = c, ec
            if side == -1:
                ea /= 2
            side = -1
        else:
            a, ea = c, ec
            if side == 1:
                eb /= 2
            side = 1


def _closest(coded: Mapping[float, bytes], pixels: int, target: float) -> str:
    q = min(coded, key=lambda k: abs(8 * len(coded[k]) / pixels - target))
    return f"quality {q:.4f} at {8 * len(coded[q]) / pixels:.4f} bpp"


def decode_stream(stream: Bitstream, model: CompressionModel) -> Tensor:
    """Decode a parsed :class:`Bitstream` with a matching model: ``(1, 3, H, W)``
    in ``[0, 1]``, cropped to the original size, on the CPU.

    Raises:
        DecodingError: a DCAE string does not verify, the model fails on the
            strings, or the reconstruction has the wrong size or is not finite.
    """
    return torch.from_numpy(_decoded_array(stream, model))


def _uint8_array(x_hat: np.ndarray) -> np.ndarray:
    """:func:`tensor_to_uint8` of a ``(1, 3, H, W)`` float32 array, in NumPy
    (the same float32 arithmetic, half to even)."""
    scaled = np.clip(x_hat[0], 0, 1) * np.float32(255)
    return np.ascontiguousarray(np.round(scaled).astype(np.uint8).transpose(1, 2, 0))


def _decoded_array(stream: Bitstream, model: CompressionModel) -> np.ndarray:
    """:func:`decode_stream` as a float32 array: the model's output crosses to
    the host once, and every later step is NumPy."""
    check_ready(model)
    dcae = isinstance(model, DCAEModel)
    if dcae:
        _check_dcae_shape(stream)
    strings = [[s] for s in stream.strings]
    try:
        kwargs: Dict[str, Any] = {}
        if stream.portable:
            kwargs.update(portable=True, grid_bits=stream.grid_bits)
        if dcae:  # None for format versions 3 and 4: their checks bind no header field
            kwargs["associated_data"] = stream.associated_data()
        with eval_mode(model), _guarded_decoders(model):
            x_hat = model.decompress(strings, stream.shape, **kwargs)["x_hat"]
    except DCAEError:
        raise
    except (
        AssertionError, AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError
    ) as e:  # fmt: skip
        message = " ".join(str(e).split()) or "the model's decompress refused the strings or shape"
        raise DecodingError(f"decoding failed: {type(e).__name__}: {message}") from e
    coded_h, coded_w = stream.coded_size
    if not isinstance(x_hat, Tensor) or x_hat.dim() != 4 or tuple(x_hat.shape[:2]) != (1, 3):
        got = tuple(x_hat.shape) if isinstance(x_hat, Tensor) else type(x_hat).__name__
        raise DecodingError(f"the model decoded {got}, not one RGB image")
    h, w = int(x_hat.shape[2]), int(x_hat.shape[3])
    slack = 1 if dcae else max(stream.pad_multiple, downsampling_factor(model))
    if not (coded_h <= h < coded_h + slack and coded_w <= w < coded_w + slack):
        raise DecodingError(
            f"the model decoded a {w}x{h} image for a coded size of {coded_w}x{coded_h} "
            "(corrupted shape or strings)"
        )
    left, _, top, _ = stream.padding
    # the image's one copy to the host
    x_hat = host.to_host(
        x_hat[:, :, top : top + stream.height, left : left + stream.width].float()
    )
    if not np.isfinite(x_hat).all():
        raise DecodingError("the decoded image is not finite (corrupted stream)")
    return x_hat


def read_stream(
    data: Union[bytes, bytearray, memoryview, str, os.PathLike],
    *,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> Bitstream:
    """Parse ``.dcae`` bytes (or the file at a path) with every check of
    :func:`dcae.bitstream.unpack`."""
    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    return unpack(data, max_pixels=max_pixels)


def decode(
    data: Union[bytes, bytearray, memoryview, str, os.PathLike],
    *,
    model: Optional[CompressionModel] = None,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decompress ``.dcae`` bytes (or the file at a path) to a PIL image.

    The image has the recorded size and mode ``L`` (grayscale originals) or
    ``RGB``.  Decoding is bit-exact: the result equals the 8-bit quantised
    eval-mode ``forward`` reconstruction (see the format guide for what holds
    across machines).

    Args:
        data: the file content or its path.
        model: the model that wrote the file; default: the shipped model whose
            weights digest matches the file's.  A file written by another
            codec needs its model (dcae never imports a module named in a file).
        max_pixels: refuse files recording more pixels (``None``: no bound).

    Raises:
        FormatError: malformed file (magic, version, lengths, CRC, sizes, shape).
        ModelMismatchError: the file was written by another model, or by a
            codec that is not shipped and no model was given (the message
            names it and says how to pass it).
        DecodingError: a DCAE string does not verify, or decoding failed.
    """
    stream = read_stream(data, max_pixels=max_pixels)
    net = _model_for(stream, model)
    pixels = _uint8_array(_decoded_array(stream, net))
    img = Image.fromarray(pixels, mode="RGB")
    return img.convert("L") if stream.channels == 1 else img
