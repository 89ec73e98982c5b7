"""DCAE: the full codec of Lu et al., CVPR 2025, as a CompressAI model.

::

           ┌───┐  y  ┌─────────────────────────────────────────┐ y_hat ┌───┐
    x ──►──┤g_a├──►──┤ HyperpriorLatentCodec                   ├───►───┤g_s├──►── x_hat
           └───┘     │   hyper: h_a -> z -> EB (STE) -> h_s    │       └───┘
                     │   y:     DCAEEntropyModel(side_params)  │
                     └─────────────────────────────────────────┘
"""

from __future__ import annotations

import math
import struct
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import HyperpriorLatentCodec
from compressai.models import SimpleVAECompressionModel
from torch import Tensor, nn

from ..config import DCAEConfig, get_config
from ..latent_codecs import host
from ..latent_codecs.coding_mode import FLOAT32, CodingMode
from ..latent_codecs.entropy_model import DCAEEntropyModel
from ..latent_codecs.hyper_codec import ExactHyperLatentCodec
from ..layers.fast import run_autocast
from .gains import Quality, VariableRate
from .infer_config import infer_config
from .layouts import to_layout, to_official_layout
from .transforms import HyperSynthesis, analysis, hyper_analysis, synthesis

__all__ = ["DCAEModel"]

#: values this far outside [0, 1] are still accepted by ``compress`` (rounding)
_RANGE_SLACK = 1e-3


def _bound_data(quality: Optional[float], image: Any, associated_data: Optional[bytes]) -> bytes:
    """What the ``y`` strings' checks bind besides the latent shape and mode:
    the quality (NaN for none), the image size and the caller's bytes; empty
    for ``associated_data=None`` (the checks of ``.dcae`` versions 3 and 4)."""
    if associated_data is None:
        return b""
    try:
        height, width = (int(v) for v in image)
    except (TypeError, ValueError):
        raise ValueError(f'shape["image"] must be (H, W) ints, got {image!r:.40}') from None
    if not (0 <= height < 2**32 and 0 <= width < 2**32):
        raise ValueError(f'shape["image"] {image!r:.40} is out of range')
    q = math.nan if quality is None else float(quality)
    return b"dcae-y" + struct.pack(">dII", q, height, width) + bytes(associated_data)


class DCAEModel(VariableRate, SimpleVAECompressionModel):
    """The DCAE codec (Lu et al., "Learned Image Compression with
    Dictionary-based Entropy Model", CVPR 2025).

    ``g_a`` and ``g_s`` are residual-bottleneck/Swin transforms with stride 16;
    the latent is coded by a :class:`~compressai.latent_codecs.HyperpriorLatentCodec`
    whose ``hyper`` part is CompressAI's ``HyperLatentCodec`` (entropy
    bottleneck, median-centred STE) and whose ``y`` part is
    :class:`~dcae.DCAEEntropyModel`.

    Any image size works: the latent is ``ceil(H/16) x ceil(W/16)``, windows
    that do not divide a feature map are padded and masked inside the
    attention, and ``x_hat`` is cropped back to ``H x W``.

    Args:
        config: a :class:`~dcae.config.DCAEConfig` or preset name
            (``"paper"``, ``"ablation"``, ``"small"``).
        **overrides: fields of the config to change.
    """

    def __init__(self, config: DCAEConfig | str = "paper", **overrides: Any):
        super().__init__()
        cfg = get_config(config, **overrides)
        self.config = cfg
        self.g_a = analysis(cfg)
        self.g_s = synthesis(cfg)
        h_a = hyper_analysis(cfg)  # built before the entropy model: the seeded init order
        entropy_model = DCAEEntropyModel(
            cfg.M,
            cfg.num_slices,
            slice_sizes=cfg.slice_sizes,
            side_channels=2 * cfg.M,
            max_support_slices=cfg.max_support_slices,
            dict_entries=cfg.dict_entries,
            dict_dim=cfg.dict_dim,
            dict_heads=cfg.dict_heads,
            msfa_depth=cfg.msfa_depth,
            mlp_ratio=cfg.mlp_ratio,
            hidden_channels=cfg.entropy_hidden,
            lrp=cfg.lrp,
            spatial_context=cfg.spatial_context,
        )
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": entropy_model,
                "hyper": ExactHyperLatentCodec(
                    EntropyBottleneck(cfg.z_channels),
                    h_a,
                    HyperSynthesis(cfg),
                    quantizer="ste",
                ),
            }
        )
        if cfg.rate_lambdas is not None:
            lam = torch.tensor(cfg.rate_lambdas, dtype=torch.float64)
            self.log_gain = nn.Parameter(torch.zeros(len(lam), cfg.M))
            self.log_inv_gain = nn.Parameter(torch.zeros(len(lam), cfg.M))
            self.reset_gains(float(lam.log().mean().exp()))

    #: reduced-precision dtype of ``g_a``/``g_s`` (fast mode, see
    #: :func:`dcae.layers.fast.fast_mode`); ``None``: full precision
    transform_dtype: Optional[torch.dtype] = None

    def _transform(self, transform: nn.Module, x: Tensor) -> Tensor:
        """Run ``g_a`` or ``g_s``, under autocast in fast mode; returns fp32."""
        if self.transform_dtype is None:
            return transform(x)
        return run_autocast(transform, x, self.transform_dtype)

    # --------------------------------------------------------------- modules
    @property
    def entropy_model(self) -> DCAEEntropyModel:
        """The :class:`DCAEEntropyModel` coding ``y``."""
        return self.latent_codec.y  # type: ignore[return-value]

    @property
    def downsampling_factor(self) -> int:
        """Spatial stride of ``g_a`` (16) times that of the hyperprior (4)."""
        return 64

    def _check_image(self, x: Tensor, coding: bool = False) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected an image tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.config.image_channels:
            raise ValueError(
                f"expected images (b, {self.config.image_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"empty image {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"expected float images with values in [0, 1], got {x.dtype} (divide 8-bit "
                "images by 255 first)"
            )
        if coding:  # one host read per image (both extremes in one copy)
            lo, hi = (float(v) for v in host.to_host(torch.stack(torch.aminmax(x.detach()))))
            if not (lo >= -_RANGE_SLACK and hi <= 1 + _RANGE_SLACK):  # also catches NaN
                raise ValueError(
                    f"expected images with values in [0, 1], got values in [{lo:g}, {hi:g}]"
                    + (" (divide 8-bit images by 255 first)" if hi > 2 else "")
                )

    def forward(self, x: Tensor, quality: Optional[Quality] = None) -> Dict[str, Any]:
        """``{"x_hat", "likelihoods": {"y", "z"}}``; ``x_hat`` has the size of ``x``
        and is not clamped.

        ``quality`` (variable-rate models only): a real number in
        :attr:`quality_range`, or a tensor with one per sample (training);
        default :attr:`default_quality`."""
        self._check_image(x)
        y = self._transform(self.g_a, x)
        if self.variable_rate:
            gain, inv_gain = self.gains(
                self.default_quality if quality is None else quality, x.shape[0]
            )
            y_out = self.latent_codec(y * gain)
            y_hat = y_out["y_hat"] * inv_gain
        else:
            self.check_quality(quality)
            y_out = self.latent_codec(y)
            y_hat = y_out["y_hat"]
        x_hat = self._transform(self.g_s, y_hat)[:, :, : x.shape[2], : x.shape[3]]
        return {"x_hat": x_hat, "likelihoods": y_out["likelihoods"]}

    @torch.no_grad()
    def compress(
        self,
        x: Tensor,
        quality: Optional[float] = None,
        *,
        mode: Optional[CodingMode] = None,
        portable: Optional[bool] = None,
        grid_bits: Optional[int] = None,
        associated_data: Optional[bytes] = b"",
    ) -> Dict[str, Any]:
        """``{"strings": [y_strings, z_strings], "shape"}``, one string per
        sample in each list; ``shape`` holds the ``y`` latent shape ``(M, H, W)``,
        the ``hyper`` latent shape ``(h, w)`` and the image size.  The ``y``
        strings check themselves (:class:`~dcae.DCAEEntropyModel`).

        ``quality`` (variable-rate models only) is any real number in
        :attr:`quality_range` (default :attr:`default_quality`), used exactly
        as given and recorded as ``shape["quality"]``, so :meth:`decompress`
        needs nothing else.

        ``mode`` (a :class:`~dcae.latent_codecs.coding_mode.CodingMode`,
        default float32), or the keywords ``portable=True`` and ``grid_bits``
        (default :data:`~dcae.latent_codecs.coding_mode.PORTABLE_GRID_BITS`):
        portable coding computes the entropy parameters (``h_s`` and the
        entropy model) in float64 with the means and residual predictions
        snapped to a grid of ``2^-grid_bits``, so that the strings decode on
        any backend, thread count, compiler or device; decode them in the same
        mode (the ``.dcae`` header records it).

        The ``y`` strings' checks cover the quality and the image size (a
        :meth:`decompress` given a rewritten ``shape["quality"]`` or
        ``shape["image"]`` raises :class:`~dcae.DecodingError`) and
        ``associated_data``, bytes of the caller's that decide decoding too
        (:func:`dcae.encode` gives the ``.dcae`` header); :meth:`decompress`
        needs the same.  ``None`` binds nothing but the latent shape and
        coding mode (the strings of ``.dcae`` format versions 3 and 4).

        Raises:
            TypeError, ValueError: ``x`` is not a float ``(b, 3, H, W)`` tensor
                with values in ``[0, 1]``; ``quality`` is not a real number in
                range, or is given to a single-rate model; ``grid_bits``
                without ``portable`` or out of range.
        """
        mode = CodingMode.of(mode, portable, grid_bits)
        self._check_image(x, coding=True)
        q = self.check_quality(quality)
        y = self._transform(self.g_a, x)
        if q is not None:
            y = y * self.gains(q, x.shape[0])[0]
        image = (int(x.shape[2]), int(x.shape[3]))
        # the hyperprior's composite, with the mode (and the y strings' bound data)
        hyper_out = self.latent_codec.hyper.compress(y, mode=mode)
        # no y_hat: the encoder skips the last slice's residual prediction
        y_out = self.entropy_model.compress(
            y,
            hyper_out["params"],
            return_y_hat=False,
            mode=mode,
            associated_data=_bound_data(q, image, associated_data),
        )
        shape: Dict[str, Any] = {
            "y": tuple(int(v) for v in y_out["shape"]),
            "hyper": tuple(int(v) for v in hyper_out["shape"]),
            "image": image,
        }
        if q is not None:
            shape["quality"] = q
        return {"strings": [*y_out["strings"], *hyper_out["strings"]], "shape": shape}

    @torch.no_grad()
    def decompress_latent(
        self,
        strings: List[List[bytes]],
        shape: Mapping[str, Any],
        mode: CodingMode = FLOAT32,
        associated_data: Optional[bytes] = b"",
    ) -> Dict[str, Tensor]:
        """``{"y_hat"}``: the decoded latent (for a variable-rate model, in the
        gained domain, before the inverse gain), what :meth:`decompress` hands
        ``g_s``; arguments as for :meth:`decompress` (the coding mode as one
        :class:`~dcae.latent_codecs.coding_mode.CodingMode`)."""
        y_strings, z_strings, hyper = _check_strings(strings, shape)
        quality = self._recorded_quality(shape)
        image = shape.get("image")
        if associated_data is not None and image is None:
            raise ValueError('shape has no "image": pass the shape compress returned')
        params = self.latent_codec.hyper.decompress([z_strings], hyper, mode=mode)["params"]
        return self.entropy_model.decompress(
            [y_strings],
            shape["y"],
            params,
            mode=mode,
            associated_data=_bound_data(quality, image, associated_data),
        )

    @torch.no_grad()
    def decompress(
        self,
        strings: List[List[bytes]],
        shape: Mapping[str, Any],
        *,
        mode: Optional[CodingMode] = None,
        portable: Optional[bool] = None,
        grid_bits: Optional[int] = None,
        associated_data: Optional[bytes] = b"",
    ) -> Dict[str, Tensor]:
        """``{"x_hat"}`` in ``[0, 1]``, cropped to ``shape["image"]`` when present;
        ``mode`` (or ``portable`` and ``grid_bits``) and ``associated_data`` as
        given to :meth:`compress`.

        Raises:
            DecodingError: a ``y`` string does not verify (other weights, a
                corrupted or truncated string, strings swapped, drifted
                numerics, another quality, image size or associated data).
            ValueError, TypeError: ``strings`` or ``shape`` are malformed.
        """
        mode = CodingMode.of(mode, portable, grid_bits)
        y_hat = self.decompress_latent(strings, shape, mode, associated_data)["y_hat"]
        quality = self._recorded_quality(shape)
        if quality is not None:
            y_hat = y_hat * self.gains(quality, y_hat.shape[0])[1]
        x_hat = self._transform(self.g_s, y_hat).clamp_(0, 1)
        image = shape.get("image")
        if image is not None:
            x_hat = x_hat[:, :, : int(image[0]), : int(image[1])]
        return {"x_hat": x_hat}

    def _recorded_quality(self, shape: Mapping[str, Any]) -> Optional[float]:
        """The quality ``shape`` records: a real number for a variable-rate
        model, ``None`` for a single-rate one (which refuses a quality)."""
        if not self.variable_rate:
            if shape.get("quality") is not None:
                raise ValueError(
                    "shape records a quality: the strings were made by a variable-rate model, "
                    "and this model has a single rate"
                )
            return None
        if "quality" not in shape:
            raise ValueError(
                "shape has no 'quality': the strings were not made by a variable-rate "
                "model (decode them with the single-rate model that made them)"
            )
        q = shape["quality"]
        if isinstance(q, bool) or not isinstance(q, (int, float)):
            raise TypeError(f"shape['quality'] must be a real number, got {q!r:.40}")
        return float(q)

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], config: Optional[DCAEConfig] = None
    ) -> DCAEModel:
        """A model from a state dict in the dcae or the official layout.

        Accepts ``{"state_dict": ...}`` wrappers and ``module.`` prefixes; the
        configuration is inferred from the tensor shapes unless given.
        """
        sd = to_layout(state_dict, "dcae")
        cfg = config if config is not None else infer_config(sd)
        net = cls(cfg)
        net.load_state_dict(sd)
        return net

    def to_official_state_dict(self) -> Dict[str, Tensor]:
        """This model's weights in the official implementation's layout."""
        return to_official_layout(self.state_dict())


def _check_strings(strings: Any, shape: Any) -> Tuple[List[bytes], List[bytes], Tuple[int, int]]:
    """``(y_strings, z_strings, hyper-latent size)`` of what ``compress``
    returned, or TypeError/ValueError saying what is malformed."""
    if not isinstance(strings, (list, tuple)) or len(strings) != 2:
        raise TypeError(
            "strings must be [y_strings, z_strings] as compress returns it, got "
            f"{type(strings).__name__}"
            + (f" of {len(strings)}" if isinstance(strings, (list, tuple)) else "")
        )
    y_strings, z_strings = strings
    if not isinstance(z_strings, (list, tuple)) or not isinstance(y_strings, (list, tuple)):
        raise TypeError("strings must be [y_strings, z_strings], each a list of bytes")
    if len(y_strings) != len(z_strings):
        raise ValueError("y and z strings have different batch sizes")
    if not isinstance(shape, Mapping) or "y" not in shape or "hyper" not in shape:
        raise TypeError('shape must be the dict compress returns ({"y", "hyper", ...})')
    hyper = tuple(int(v) for v in shape["hyper"])
    if len(hyper) != 2 or min(hyper) < 1:
        raise ValueError(f"shape['hyper'] must be (h, w) positive ints, got {hyper}")
    if any(not isinstance(s, (bytes, bytearray)) for s in z_strings):
        raise TypeError("z strings must be bytes")
    return list(y_strings), [bytes(s) for s in z_strings], hyper  # type: ignore[return-value]
