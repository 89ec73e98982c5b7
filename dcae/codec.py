"""Image <-> ``.dcae`` bytes: :func:`encode` and :func:`decode`.

::

    image ──► to 8-bit RGB tensor ──► pad (policy) ──► DCAEModel.compress ──► pack ──► bytes
    bytes ──► unpack + checks ──► model match ──► DCAEModel.decompress
          ──► crop ──► 8-bit ──► PIL image (L or RGB as recorded)

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
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import pretrained
from .bitstream import (
    DEFAULT_MAX_PIXELS,
    MAX_SIDE,
    PADDING_POLICIES,
    Bitstream,
    latent_shapes,
    model_fingerprint,
    pack,
    policy_padding,
    unpack,
)
from .errors import DCAEError, DecodingError, FormatError, ModelMismatchError
from .model import DCAEModel

__all__ = [
    "ImageInput",
    "UnsupportedImageError",
    "decode",
    "decode_stream",
    "encode",
    "image_to_tensor",
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


class UnsupportedImageError(DCAEError, ValueError):
    """An input image has a mode, size or value range dcae does not code."""


# ----------------------------------------------------------------------------- images
def open_image(path: Union[str, os.PathLike]) -> Image.Image:
    """Open and load an image file; unreadable files raise :class:`UnsupportedImageError`."""
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except FileNotFoundError:
        raise
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise UnsupportedImageError(f"cannot read image {os.fspath(path)!r}: {e}") from e


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


def _check_size(h: int, w: int) -> None:
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise UnsupportedImageError(f"image size {w}x{h} is not in 1..{MAX_SIDE} per side")


def image_to_tensor(image: ImageInput) -> Tuple[Tensor, int]:
    """``(x, channels)``: ``x`` is ``(1, 3, H, W)`` float32 on 8-bit levels
    (``k/255``), ``channels`` the count to record (1 grayscale, 3 RGB).

    Tensors must be float ``(3, H, W)``, ``(1, 3, H, W)`` (RGB) or ``(1, H, W)``,
    ``(1, 1, H, W)`` (grayscale) with values in ``[0, 1]``; they are rounded
    to 8-bit levels, so encoding a tensor and its 8-bit PIL image give the
    same file.
    """
    if isinstance(image, Tensor):
        x = image.detach()
        if not x.is_floating_point():
            raise UnsupportedImageError(f"expected a float tensor in [0, 1], got {x.dtype}")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
            raise UnsupportedImageError(
                f"expected a tensor (3, H, W), (1, 3, H, W), (1, H, W) or (1, 1, H, W), "
                f"got {tuple(image.shape)}"
            )
        _check_size(int(x.shape[2]), int(x.shape[3]))
        x = x.float().cpu()
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise UnsupportedImageError("tensor values must be finite and in [0, 1]")
        channels = int(x.shape[1])
        x = torch.round(x * 255) / 255
        return x.expand(1, 3, -1, -1).contiguous(), channels
    if isinstance(image, (str, os.PathLike)):
        image = open_image(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a path, a PIL image or a tensor, got {type(image).__name__}")
    _check_size(image.height, image.width)
    rgb, channels = _pil_to_rgb(image)
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    x = data.view(rgb.height, rgb.width, 3).permute(2, 0, 1).unsqueeze(0).float() / 255
    return x.contiguous(), channels


def tensor_to_uint8(x_hat: Tensor) -> Tensor:
    """``(H, W, 3)`` uint8 from ``(1, 3, H, W)`` in ``[0, 1]``: ``round(255 x)``,
    half to even, after clamping (the one 8-bit quantisation of dcae)."""
    return (x_hat[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


# ----------------------------------------------------------------------------- models
def _check_ready(model: DCAEModel) -> None:
    if not isinstance(model, DCAEModel):
        raise TypeError(f"model must be a DCAEModel, got {type(model).__name__}")
    gc = model.entropy_model.gaussian_conditional
    eb = model.latent_codec.hyper.entropy_bottleneck
    if gc.quantized_cdf.numel() == 0 or eb._quantized_cdf.numel() == 0:
        raise DCAEError("the model has no CDF tables: call model.update(force=True) first")


def resolve_model(
    model: Optional[DCAEModel] = None,
    quality: Optional[int] = None,
    checkpoint: Union[str, os.PathLike, None] = None,
) -> Tuple[DCAEModel, int]:
    """``(model, quality hint)``: the given model, a checkpoint, or the shipped one.

    The quality hint is the shipped model's quality (0 for any other model).
    """
    given = sum(v is not None for v in (model, quality, checkpoint))
    if given > 1:
        raise ValueError("give at most one of model, quality and checkpoint")
    if model is not None:
        _check_ready(model)
        return model, 0
    if checkpoint is not None:
        try:
            m = pretrained.load_checkpoint(checkpoint)
        except DCAEError as e:  # torch's messages span lines: keep errors to one
            raise type(e)(" ".join(str(e).split())) from e
        _check_ready(m)
        return m, 0
    if not pretrained.available_qualities():
        raise DCAEError(
            "no model given and this installation of dcae ships no pretrained weights; "
            "pass model= (Python) or --checkpoint PATH (command line)"
        )
    q = pretrained.default_quality() if quality is None else int(quality)
    m = pretrained.load_pretrained(q)
    _check_ready(m)
    return m, q


def _model_for(stream: Bitstream, model: Optional[DCAEModel]) -> DCAEModel:
    if model is not None:
        _check_ready(model)
        if model_fingerprint(model) != stream.model_digest:
            raise ModelMismatchError(
                f"the file was written by model {stream.describe_model()}, not by the "
                f"given model {model.config.name!r} (weights sha256 "
                f"{model_fingerprint(model).hex()[:16]}...)"
            )
        return model
    qualities = pretrained.available_qualities()
    if not qualities:
        raise ModelMismatchError(
            f"the file needs model {stream.describe_model()}, and this installation of dcae "
            "ships no pretrained weights; pass model= or --checkpoint PATH"
        )
    order = sorted(qualities, key=lambda q: (q != stream.quality, q))
    for q in order:
        m = pretrained.load_pretrained(q)
        if model_fingerprint(m) == stream.model_digest:
            _check_ready(m)
            return m
    raise ModelMismatchError(
        f"the file was written by model {stream.describe_model()}, which is none of the "
        f"shipped models (qualities {qualities}); pass model= or --checkpoint PATH"
    )


@contextlib.contextmanager
def _eval_mode(model: DCAEModel) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- API
def encode(
    image: ImageInput,
    *,
    model: Optional[DCAEModel] = None,
    quality: Optional[int] = None,
    padding: str = "minimal",
) -> bytes:
    """Compress an image to the bytes of a ``.dcae`` file.

    Args:
        image: a path, a PIL image or a float tensor in ``[0, 1]`` (see
            :func:`image_to_tensor` and the module docstring for modes).
        model: the model to use (eval mode is used, CDF tables must exist);
            default: the shipped model of ``quality``.
        quality: quality of the shipped model (1 = lowest rate).
        padding: ``"minimal"`` (no padding; the latent is ``ceil(H/16) x
            ceil(W/16)``) or ``"official"`` (centred zero padding to a multiple
            of 128, as the official scripts).

    Raises:
        UnsupportedImageError: the image cannot be coded (mode, size, values).
        DCAEError: no model is available.
    """
    if padding not in PADDING_POLICIES:
        raise ValueError(f"unknown padding policy {padding!r}; choose one of {PADDING_POLICIES}")
    x, channels = image_to_tensor(image)
    net, quality_hint = resolve_model(model, quality)
    height, width = int(x.shape[2]), int(x.shape[3])
    pad = policy_padding(padding, height, width)
    if any(pad):
        x = F.pad(x, pad, mode="constant", value=0.0)
    device = next(net.parameters()).device
    with _eval_mode(net):
        out = net.compress(x.to(device))
    y_shape = tuple(int(v) for v in out["shape"]["y"])
    hyper_shape = tuple(int(v) for v in out["shape"]["hyper"])
    expected = latent_shapes(int(x.shape[2]), int(x.shape[3]))
    if (y_shape, hyper_shape) != expected:  # pragma: no cover - architecture invariant
        raise DCAEError(f"unexpected latent shapes {y_shape}, {hyper_shape}; wanted {expected}")
    (y_string,), (z_string,) = out["strings"]
    stream = Bitstream(
        model_name="".join(c for c in net.config.name if 32 <= ord(c) < 127)[:64],
        model_digest=model_fingerprint(net),
        quality=quality_hint,
        width=width,
        height=height,
        channels=channels,
        bit_depth=8,
        padding_policy=padding,
        padding=pad,
        y_shape=y_shape,  # type: ignore[arg-type]
        hyper_shape=hyper_shape,  # type: ignore[arg-type]
        checksums=tuple(int(c) for c in out["checksums"][0]),
        strings=(y_string, z_string),
    )
    return pack(stream)


def _guard(s: bytes, symbols: int) -> bytes:
    """Zero bytes appended to a string handed to CompressAI's rANS decoder,
    which does not check the end of its buffer: a crafted string then reads
    zeros instead of memory past the buffer (well-formed strings never read
    them)."""
    return s + bytes(8 * symbols + 1024)


def decode_stream(stream: Bitstream, model: DCAEModel) -> Tensor:
    """Decode a parsed :class:`Bitstream` with a matching model: ``(1, 3, H, W)``
    in ``[0, 1]``, cropped to the original size.

    Raises:
        DecodingError: a slice's symbols do not match the encoder's checksums,
            or the reconstruction is not finite.
    """
    _check_ready(model)
    if len(stream.checksums) != model.entropy_model.num_slices:
        raise ModelMismatchError(
            f"the file has {len(stream.checksums)} slices, the model "
            f"{model.entropy_model.num_slices}"
        )
    (yh, yw), (zh, zw) = stream.y_shape, stream.hyper_shape
    y_string = _guard(stream.strings[0], yh * yw * model.config.M)
    z_string = _guard(stream.strings[1], zh * zw * model.config.z_channels)
    coded_h, coded_w = stream.coded_size
    shape = {"y": (yh, yw), "hyper": (zh, zw), "image": (coded_h, coded_w)}
    try:
        with _eval_mode(model):
            x_hat = model.decompress(
                [[y_string], [z_string]], shape, checksums=[list(stream.checksums)]
            )["x_hat"]
    except RuntimeError as e:
        raise DecodingError(f"decoding failed: {e}") from e
    left, _, top, _ = stream.padding
    x_hat = x_hat[:, :, top : top + stream.height, left : left + stream.width].float().cpu()
    if tuple(x_hat.shape) != (1, 3, stream.height, stream.width):  # pragma: no cover
        raise DecodingError(f"decoded shape {tuple(x_hat.shape)} != recorded size")
    if not bool(torch.isfinite(x_hat).all()):
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
    model: Optional[DCAEModel] = None,
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
            weights digest matches the file's.
        max_pixels: refuse files recording more pixels (``None``: no bound).

    Raises:
        FormatError: malformed file (magic, version, lengths, CRC, sizes).
        ModelMismatchError: the file was written by another model.
        DecodingError: decoded symbols differ from the encoder's (checksums).
    """
    stream = read_stream(data, max_pixels=max_pixels)
    net = _model_for(stream, model)
    pixels = tensor_to_uint8(decode_stream(stream, net)).numpy()
    img = Image.fromarray(pixels, mode="RGB") if pixels.shape[2] == 3 else None
    if img is None:  # pragma: no cover - decode_stream returns 3 channels
        raise FormatError("unexpected channel count")
    return img.convert("L") if stream.channels == 1 else img
