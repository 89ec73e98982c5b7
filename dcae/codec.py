"""Image <-> ``.dcae`` bytes: :func:`encode` and :func:`decode`, with a
:class:`~dcae.DCAEModel` or any CompressAI ``CompressionModel``.

::

    image ──► to 8-bit RGB tensor ──► pad (policy) ──► model.compress ──► pack ──► bytes
    bytes ──► unpack + checks ──► model match (digest) ──► model.decompress
          ──► crop ──► 8-bit ──► PIL image (L or RGB as recorded)

Padding (:func:`dcae.format.padding.policy_padding`, always by edge replication,
the image centred): DCAE models pad each side to a multiple of 16, at least
32 (``"minimal"``, default: the latent is as small as without padding, and
tiny images code correctly) or as the official scripts (``"official"``, a
multiple of 128); other models get CompressAI's ``eval_model`` padding
(``"multiple"``: a multiple of the model's ``downsampling_factor``).

Image modes: :mod:`dcae.format.pixels`; the target-rate search of
``encode(target_bpp=)`` and :func:`find_quality`: :mod:`dcae.rate_control`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from compressai.models import CompressionModel
from PIL import Image
from torch import Tensor

from .errors import DCAEError, DecodingError, FormatError
from .format.container import Bitstream, pack, unpack
from .format.fingerprint import model_fingerprint, model_identity
from .format.limits import DEFAULT_MAX_PIXELS
from .format.padding import PADDING_POLICIES, coding_padding, downsampling_factor, pad_image
from .format.pixels import ImageInput, image_to_tensor, to_uint8_array
from .format.shape import check_dcae_shape
from .latent_codecs import host
from .latent_codecs.coding_mode import FLOAT32, PORTABLE
from .latent_codecs.rans import guarded_decoders
from .models.dcae import DCAEModel
from .models.readiness import check_ready, eval_mode
from .rate_control import check_target, search_quality
from .zoo.resolve import model_for, resolve

__all__ = ["decode", "decode_stream", "encode", "find_quality", "read_stream"]


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
    net, q = resolve(model, quality, None, None, shared=True)
    dcae = isinstance(net, DCAEModel)
    if portable and not dcae:
        raise ValueError(
            f"portable coding is a DCAE mode; {type(net).__name__} does not support it"
        )
    mode = PORTABLE if (dcae if portable is None else portable) else FLOAT32
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
        mode=mode,
    )
    x = pad_image(x, pad)
    device = next(net.parameters()).device
    kwargs: Dict[str, Any] = {}
    if q is not None:
        kwargs["quality"] = q
    if dcae:  # the coding mode, and the header's decoding fields bound into the checks
        kwargs.update(mode=mode, associated_data=header.associated_data())
    try:
        with eval_mode(net):
            out = net.compress(x.to(device), **kwargs)
    except DCAEError:
        raise
    except (RuntimeError, ValueError, IndexError) as e:  # a codec that cannot code this size
        if dcae:
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
            check_dcae_shape(stream.shape, stream.coded_size)
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
    check_target(target_bpp, tolerance)
    x, _ = image_to_tensor(image, max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))
    pixels = int(x.shape[2]) * int(x.shape[3])
    net, start = resolve(model, None, None, None, shared=model is None)
    if start is None:
        raise ValueError("target_bpp needs a variable-rate model; this one has a single rate")

    def code_at(q: float) -> bytes:
        return encode(image, model=model, quality=q, **options)

    return search_quality(
        code_at,
        target_bpp,
        pixels,
        start,
        net.quality_range,  # type: ignore[union-attr]
        tolerance=tolerance,
        max_encodes=max_encodes,
    )


def decode_stream(stream: Bitstream, model: CompressionModel) -> Tensor:
    """Decode a parsed :class:`Bitstream` with a matching model: ``(1, 3, H, W)``
    in ``[0, 1]``, cropped to the original size, on the CPU.

    Raises:
        DecodingError: a DCAE string does not verify, the model fails on the
            strings, or the reconstruction has the wrong size or is not finite.
    """
    return torch.from_numpy(_decoded_array(stream, model))


def _decoded_array(stream: Bitstream, model: CompressionModel) -> np.ndarray:
    """:func:`decode_stream` as a float32 array: the model's output crosses to
    the host once, and every later step is NumPy."""
    check_ready(model)
    dcae = isinstance(model, DCAEModel)
    if dcae:
        check_dcae_shape(stream.shape, stream.coded_size)
    strings = [[s] for s in stream.strings]
    try:
        kwargs: Dict[str, Any] = {}
        if dcae:  # associated data None for format versions 3 and 4: no header field bound
            kwargs.update(mode=stream.mode, associated_data=stream.associated_data())
        guarded = contextlib.nullcontext() if dcae else guarded_decoders(model)
        with eval_mode(model), guarded:
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
    :func:`dcae.format.container.unpack`."""
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
    net = model_for(stream, model)
    pixels = to_uint8_array(_decoded_array(stream, net))
    img = Image.fromarray(pixels, mode="RGB")
    return img.convert("L") if stream.channels == 1 else img
