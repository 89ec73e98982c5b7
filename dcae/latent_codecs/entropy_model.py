"""The DCAE entropy model: channel-wise autoregressive Gaussian coding of the
latent ``y`` with dictionary cross-attention features and latent residual
prediction (Sec. 3, Eq. (4) of Lu et al., CVPR 2025), as a CompressAI
:class:`~compressai.latent_codecs.LatentCodec`.

Einops axis legend: ``b`` batch, ``c`` channels, ``H``/``W`` latent sides.
"""

from __future__ import annotations

import collections
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from compressai.entropy_models import GaussianConditional
from compressai.latent_codecs import LatentCodec
from compressai.layers import CheckerboardMaskedConv2d
from compressai.registry import register_module
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..errors import DCAEError
from ..layers.dictionary import DictionaryCrossAttention
from . import host
from .coding_mode import FLOAT32, CodingMode
from .float64 import float64_copy
from .float64_layers import pair_first_layers, run_pair
from .param_nets import ParamNetFactory, default_param_net
from .rounding import QUANTIZERS
from .slice_coders import Decoder, Encoder, Estimator, SliceCoder
from .spatial_context import SPATIAL_CONTEXTS, checkerboard_masks
from .string_checks import check_bytes

__all__ = ["DCAEEntropyModel", "ParamsHook"]

#: a callback of :meth:`DCAEEntropyModel.register_params_hook`: ``hook(i, means, scales)``
ParamsHook = Callable[[int, Tensor, Tensor], None]


class DCAEEntropyModel(LatentCodec):
    """Dictionary-based channel-wise autoregressive entropy model (Eq. (4)).

    ``y`` is split along channels into slices coded in order. For slice ``i``
    the context is ``X_i = [side_params, y_hat_0, ..., y_hat_{k-1}]`` with
    ``k = min(i, max_support_slices)``; a :class:`DictionaryCrossAttention`
    turns it into a dictionary feature ``F_i``, and small conv nets give the
    Gaussian parameters and the latent residual prediction::

        side_params, y_hat_<i --> X_i --DictionaryCrossAttention(D)--> F_i
        [X_i, F_i] --> mean net  --> means_i
        [X_i, F_i] --> scale net --> scales_i
        y_hat_i = round(y_i - means_i) + means_i
        y_hat_i += 0.5 * tanh(LRP([X_i, F_i, y_hat_i]))

    One learned dictionary ``D`` (``dict_entries x dict_dim``) is shared by all
    slices and all samples.  ``forward``, ``compress`` and ``decompress`` share
    one slice loop (:meth:`run_slices`) and one parameter function
    (:meth:`gaussian_params`); they differ only in the slice coder that loop
    drives (:mod:`dcae.latent_codecs.slice_coders`: estimate, encode, decode).

    Each sample gets one string holding all of its slices, and every string
    checks itself: a few check bytes (5 for five slices) carry a running CRC
    of the slices' symbols, so decoding with another model, another shape or
    slice layout, the wrong string, a truncated string or drifted arithmetic
    raises :class:`~dcae.DecodingError` naming the first slice that does not
    verify, through any composition (``HyperpriorLatentCodec``,
    ``ChannelGroupsLatentCodec``) and with no extra argument.

    With ``spatial_context="checkerboard"`` (the "ELIC + ours" variant of the
    paper's appendix B) every slice is coded in two passes, anchors
    (``(h + w)`` even) first, then the other positions, whose parameter nets
    also see a masked 5x5 convolution of the decoded anchors (He et al.,
    CVPR 2021)::

        pass 1: [X_i, F_i, 0]                        --> means, scales (anchors)
        pass 2: [X_i, F_i, ctx_i(y_hat_i[anchors])]  --> means, scales (others)

    ``F_i`` is computed once per slice and reused by both passes.

    ``side_params`` may be spatially larger than ``y`` (a hyper synthesis
    returns ``4 * ceil(H/4)`` for latents of side ``H``); it is cropped to the
    top-left ``H x W``.

    Args:
        latent_channels: channels ``M`` of ``y``.
        num_slices: number of equal slices (ignored if ``slice_sizes`` given).
        slice_sizes: explicit, possibly uneven slice widths summing to ``M``
            (ELIC-style ``16, 16, 32, 64, M - 128``).
        side_channels: channels of ``side_params`` (default ``2 * M``: scales
            and means features from the hyper synthesis); any positive count.
        max_support_slices: number of previous slices in the context
            (``-1``: all of them).
        dict_entries: dictionary entries.
        dict_dim: dictionary width (attention width).
        dict_heads: attention heads.
        dict_out_channels: channels of ``F_i`` (default ``M``).
        msfa_depth: MSFA units ``m``.
        mlp_ratio: ConvGLU expansion in the cross-attention.
        hidden_channels: widths of the hidden layers of the mean, scale and
            LRP nets.
        lrp: use latent residual prediction.
        spatial_context: ``None`` (default, the paper's model) or
            ``"checkerboard"``.
        gaussian_conditional: the entropy model for ``y`` (default: CompressAI's
            ``GaussianConditional(None)``).
        quantizer: how ``y_hat`` is formed in training: ``"ste"`` (the paper:
            ``round(y - means) + means`` with a straight-through gradient) or
            ``"noise"`` (``y + U(-1/2, 1/2)``).  Likelihoods always use noise
            in training; in eval mode ``y_hat`` is always the decoder's.
        mean_net: builds the mean network of each slice,
            ``mean_net(in_channels, out_channels)`` (default: the paper's
            3x3 conv net with ``hidden_channels``).
        scale_net: builds the scale network of each slice (same signature).
        lrp_net: builds the latent residual prediction network of each slice
            (same signature; its input also holds ``y_hat_i``).

    It composes as the ``"y"`` codec of CompressAI's ``HyperpriorLatentCodec``
    and as a group of ``ChannelGroupsLatentCodec`` (with ``side_channels``
    counting the channel-context parameters that codec prepends).  It computes
    its own Gaussian parameters, so it cannot be the ``"y"`` codec of
    ``CheckerboardLatentCodec`` (whose ``entropy_parameters`` output the
    parameters): use ``spatial_context="checkerboard"`` for DCAE with a
    checkerboard context.  It is registered as ``"DCAEEntropyModel"`` in
    ``compressai.registry.MODULES``.

    Raises:
        ValueError: an inconsistent configuration (at construction).
    """

    def __init__(
        self,
        latent_channels: int = 320,
        num_slices: int = 5,
        *,
        slice_sizes: Optional[Sequence[int]] = None,
        side_channels: Optional[int] = None,
        max_support_slices: int = 5,
        dict_entries: int = 128,
        dict_dim: int = 640,
        dict_heads: int = 20,
        dict_out_channels: Optional[int] = None,
        msfa_depth: int = 3,
        mlp_ratio: int = 4,
        hidden_channels: Sequence[int] = (224, 128),
        lrp: bool = True,
        spatial_context: Optional[str] = None,
        gaussian_conditional: Optional[GaussianConditional] = None,
        quantizer: str = "ste",
        mean_net: Optional[ParamNetFactory] = None,
        scale_net: Optional[ParamNetFactory] = None,
        lrp_net: Optional[ParamNetFactory] = None,
    ):
        super().__init__()
        m = _positive_int("latent_channels", latent_channels)
        if slice_sizes is None:
            num_slices = _positive_int("num_slices", num_slices)
            if m % num_slices:
                raise ValueError(
                    f"latent_channels={m} is not divisible into num_slices={num_slices} "
                    "equal slices; pass slice_sizes=[...] for uneven slices"
                )
            slice_sizes = [m // num_slices] * num_slices
        if isinstance(slice_sizes, (str, bytes)) or not isinstance(slice_sizes, Sequence):
            raise ValueError(f"slice_sizes must be a sequence of ints, got {slice_sizes!r}")
        slice_sizes = [_positive_int("slice_sizes entry", s) for s in slice_sizes]
        if not slice_sizes or sum(slice_sizes) != m:
            raise ValueError(
                f"slice_sizes={slice_sizes} must be positive and sum to latent_channels={m}"
            )
        if not isinstance(max_support_slices, int) or max_support_slices < -1:
            raise ValueError(f"max_support_slices must be >= -1, got {max_support_slices}")
        dict_entries = _positive_int("dict_entries", dict_entries)
        dict_dim = _positive_int("dict_dim", dict_dim)
        dict_heads = _positive_int("dict_heads", dict_heads)
        if dict_dim % dict_heads:
            raise ValueError(
                f"dict_dim={dict_dim} must be a positive multiple of dict_heads={dict_heads} "
                f"and dict_entries={dict_entries} positive"
            )
        if isinstance(hidden_channels, int) or not hidden_channels:
            raise ValueError(f"hidden_channels must be positive widths, got {hidden_channels}")
        hidden_channels = tuple(_positive_int("hidden_channels", h) for h in hidden_channels)
        if not isinstance(msfa_depth, int) or msfa_depth < 0:
            raise ValueError(f"msfa_depth must be an int >= 0, got {msfa_depth!r}")
        mlp_ratio = _positive_int("mlp_ratio", mlp_ratio)
        if spatial_context == "none":
            spatial_context = None
        if spatial_context not in SPATIAL_CONTEXTS:
            raise ValueError(
                f"spatial_context must be one of {SPATIAL_CONTEXTS}, got {spatial_context!r}"
            )
        if gaussian_conditional is not None and not isinstance(
            gaussian_conditional, GaussianConditional
        ):
            raise ValueError("gaussian_conditional must be a compressai GaussianConditional")
        if quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
        for name, factory in (
            ("mean_net", mean_net),
            ("scale_net", scale_net),
            ("lrp_net", lrp_net),
        ):
            if factory is not None and not callable(factory):
                raise ValueError(
                    f"{name} must be a callable (in_channels, out_channels) -> nn.Module"
                )
        self.latent_channels = m
        self.slice_sizes = tuple(slice_sizes)
        self.num_slices = len(slice_sizes)
        self.side_channels = (
            2 * m if side_channels is None else _positive_int("side_channels", side_channels)
        )
        self.max_support_slices = max_support_slices
        self.lrp = bool(lrp)
        self.spatial_context = spatial_context
        self.quantizer = quantizer
        out_ch = (
            m
            if dict_out_channels is None
            else _positive_int("dict_out_channels", dict_out_channels)
        )

        self.dictionary = nn.Parameter(torch.randn(dict_entries, dict_dim))
        self.cross_attention = nn.ModuleList()
        self.mean_transforms = nn.ModuleList()
        self.scale_transforms = nn.ModuleList()
        self.lrp_transforms = nn.ModuleList()

        def paper_net(in_channels: int, out_channels: int) -> nn.Module:
            return default_param_net(in_channels, out_channels, hidden_channels)

        def build(factory: Optional[ParamNetFactory], name: str, cin: int, cout: int) -> nn.Module:
            net = (factory or paper_net)(cin, cout)
            if not isinstance(net, nn.Module):
                raise ValueError(
                    f"{name}({cin}, {cout}) returned {type(net).__name__}, not a Module"
                )
            return net

        for i, size in enumerate(self.slice_sizes):
            ctx = self.context_channels(i)
            params_in = ctx + out_ch + self.spatial_context_channels(i)
            self.cross_attention.append(
                DictionaryCrossAttention(
                    ctx, out_ch, dict_dim, dict_heads, msfa_depth=msfa_depth, mlp_ratio=mlp_ratio
                )
            )
            self.mean_transforms.append(build(mean_net, "mean_net", params_in, size))
            self.scale_transforms.append(build(scale_net, "scale_net", params_in, size))
            if self.lrp:
                self.lrp_transforms.append(build(lrp_net, "lrp_net", ctx + out_ch + size, size))
        if self.spatial_context == "checkerboard":
            #: masked 5x5 convolutions on the decoded anchors of each slice
            self.context_prediction = nn.ModuleList(
                CheckerboardMaskedConv2d(
                    size, self.spatial_context_channels(i), kernel_size=5, padding=2
                )
                for i, size in enumerate(self.slice_sizes)
            )
        self.gaussian_conditional = gaussian_conditional or GaussianConditional(None)
        #: the callbacks of :meth:`register_params_hook` (an explicit opt-in)
        self._params_hooks: Dict[int, ParamsHook] = collections.OrderedDict()

    def register_params_hook(self, hook: ParamsHook) -> RemovableHandle:
        """Call ``hook(i, means, scales)`` with the Gaussian parameters of every
        pass of every slice that :meth:`compress` and :meth:`decompress` code
        (slice ``i``; float64 tensors in portable coding), for tests,
        debugging and benchmarks, as PyTorch's forward hooks: an explicit
        opt-in, removed by the returned handle's ``remove()``; not part of the
        model's state."""
        handle = RemovableHandle(self._params_hooks)
        self._params_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ config
    def support_slices(self, i: int) -> int:
        """Number of previous slices in the context of slice ``i``."""
        return i if self.max_support_slices < 0 else min(i, self.max_support_slices)

    def context_channels(self, i: int) -> int:
        """Channels of the context ``X_i`` of slice ``i``."""
        return self.side_channels + sum(self.slice_sizes[: self.support_slices(i)])

    def spatial_context_channels(self, i: int) -> int:
        """Channels of the spatial context of slice ``i`` (0 without one)."""
        return 0 if self.spatial_context is None else 2 * self.slice_sizes[i]

    @property
    def passes_per_slice(self) -> int:
        """Coding passes per slice: 1, or 2 with a checkerboard context."""
        return 1 if self.spatial_context is None else 2

    def coding_passes(
        self, hw: Tuple[int, int], device: Optional[torch.device] = None
    ) -> List[Optional[Tensor]]:
        """Position masks of the passes that code one slice (``[None]``: one
        pass over all positions)."""
        if self.spatial_context is None:
            return [None]
        return checkerboard_masks(hw, device)  # type: ignore[return-value]

    # -------------------------------------------------------------- slice loop
    def slice_support(self, i: int, side_params: Tensor, y_hat_slices: Sequence[Tensor]) -> Tensor:
        """The support ``[X_i, F_i]`` of slice ``i`` (context and dictionary feature)."""
        context = torch.cat([side_params, *y_hat_slices[: self.support_slices(i)]], dim=1)
        features = self.cross_attention[i](context, self.dictionary)
        return torch.cat([context, features], dim=1)

    def gaussian_params(
        self, i: int, support: Tensor, spatial_ctx: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Gaussian ``means``, ``scales`` of slice ``i`` from its support (and,
        with a spatial context, the context features; zeros for anchors)."""
        if self.spatial_context is not None:
            if spatial_ctx is None:
                b, _, hh, ww = support.shape
                spatial_ctx = support.new_zeros(b, self.spatial_context_channels(i), hh, ww)
            support = torch.cat([support, spatial_ctx], dim=1)
        # one call for both nets: paired in a float64 copy (float64_layers.run_pair)
        return run_pair(self.mean_transforms[i], self.scale_transforms[i], support)

    def slice_params(
        self,
        i: int,
        side_params: Tensor,
        y_hat_slices: Sequence[Tensor],
        spatial_ctx: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Gaussian ``means``, ``scales`` of slice ``i`` and its support ``[X_i, F_i]``."""
        support = self.slice_support(i, side_params, y_hat_slices)
        means, scales = self.gaussian_params(i, support, spatial_ctx)
        return means, scales, support

    def residual(
        self, i: int, support: Tensor, y_hat_slice: Tensor, mode: CodingMode = FLOAT32
    ) -> Tensor:
        """Latent residual prediction ``0.5 * tanh(LRP([X_i, F_i, y_hat_i]))``
        added to ``y_hat_i`` (snapped to the grid of a portable ``mode``)."""
        if not self.lrp:
            return y_hat_slice
        lrp = self.lrp_transforms[i](torch.cat([support, y_hat_slice], dim=1))
        return y_hat_slice + mode.snap(0.5 * torch.tanh(lrp))

    def run_slices(
        self,
        side_params: Tensor,
        hw: Tuple[int, int],
        coder: SliceCoder,
        final_residual: bool = True,
        mode: CodingMode = FLOAT32,
    ) -> Tensor:
        """The one slice loop of Eq. (4): for each slice, its support, its
        Gaussian parameters per pass, the ``coder`` (estimate, encode or
        decode, :mod:`dcae.latent_codecs.slice_coders`) and latent residual prediction.

        ``final_residual=False`` skips the latent residual prediction of the
        last slice, which no later slice needs (the result then lacks it).
        A portable ``mode`` snaps the means and the residual predictions to its
        grid (:meth:`~dcae.latent_codecs.coding_mode.CodingMode.snap`).
        """
        self._check_side_params(side_params, hw)
        # contiguous tensors everywhere: convolution kernels are chosen by memory
        # layout, and encoder and decoder must run the very same arithmetic
        side_params = side_params[:, :, : hw[0], : hw[1]].contiguous()
        passes = self.coding_passes(hw, side_params.device)
        y_hat_slices: List[Tensor] = []
        for i in range(self.num_slices):
            support = self.slice_support(i, side_params, y_hat_slices)
            y_hat_slice: Optional[Tensor] = None
            for mask in passes:
                spatial_ctx = None
                if y_hat_slice is not None:
                    spatial_ctx = self.context_prediction[i](y_hat_slice)
                means, scales = self.gaussian_params(i, support, spatial_ctx)
                means = mode.snap(means)
                coded = coder.code(i, means, scales, mask).contiguous()
                y_hat_slice = coded if y_hat_slice is None else y_hat_slice + coded
            coder.end_slice(i)
            assert y_hat_slice is not None
            if final_residual or i < self.num_slices - 1:
                y_hat_slice = self.residual(i, support, y_hat_slice, mode)
            y_hat_slices.append(y_hat_slice)
        return torch.cat(y_hat_slices, dim=1)

    def _check_side_params(self, side_params: Tensor, hw: Tuple[int, int]) -> None:
        if side_params.dim() != 4 or side_params.shape[1] != self.side_channels:
            raise ValueError(
                f"side_params must be (b, {self.side_channels}, H, W), "
                f"got {tuple(side_params.shape)}"
            )
        if side_params.shape[2] < hw[0] or side_params.shape[3] < hw[1]:
            raise ValueError(
                f"side_params {tuple(side_params.shape[2:])} is smaller than the latent {hw}"
            )

    def _check_y(self, y: Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.latent_channels:
            raise ValueError(f"y must be (b, {self.latent_channels}, H, W), got {tuple(y.shape)}")

    # --------------------------------------------------------- LatentCodec API
    def forward(self, y: Tensor, side_params: Tensor) -> Dict[str, Any]:
        """Training/eval pass: ``{"likelihoods": {"y"}, "y_hat"}``."""
        self._check_y(y)
        coder = Estimator(self, y)
        y_hat = self.run_slices(side_params, (y.shape[2], y.shape[3]), coder)
        return {"likelihoods": {"y": torch.cat(coder.likelihoods, dim=1)}, "y_hat": y_hat}

    def update(self, scale_table: Optional[Sequence[float]] = None, force: bool = False) -> bool:
        """Build the CDF tables of the Gaussian conditional (CompressAI's
        default 64-level scale table unless given); returns whether they
        changed.  A ``CompressionModel`` holding this codec does the same in
        its own ``update()``."""
        if scale_table is None:
            from compressai.models.base import get_scale_table

            scale_table = get_scale_table()
        return self.gaussian_conditional.update_scale_table(scale_table, force=force)

    def coding_tables(self) -> Tuple[List[List[int]], List[int], List[int]]:
        """The CDFs, lengths and offsets the rANS coder takes (Python lists).

        Raises:
            DCAEError: the tables were never built.
        """
        gc = self.gaussian_conditional
        if gc.quantized_cdf.numel() == 0 or gc.scale_table.numel() == 0:
            raise DCAEError(
                "DCAEEntropyModel has no CDF tables: call update() on it, or update() on "
                "the CompressionModel that holds it, before compress/decompress"
            )
        # one copy of each table buffer per call (once per compress/decompress)
        return (
            host.to_host(gc.quantized_cdf).tolist(),
            host.to_host(gc.cdf_length).reshape(-1).astype("int32").tolist(),
            host.to_host(gc.offset).reshape(-1).astype("int32").tolist(),
        )

    def build_indexes(self, scales: Tensor) -> Tensor:
        """CDF table index of each scale: the table level nearest in the log
        domain (one ``bucketize`` against the geometric midpoints of the
        64-level scale table).

        ``GaussianConditional.build_indexes`` rounds every scale *up* to the
        next level (a Python loop of 63 comparisons); the coder then uses a
        Gaussian up to 13 % too wide, which cost 0.3-0.9 % of the ``y`` rate
        of the shipped models on Kodak.  The nearest level costs 0.1-0.2 %
        (``benchmarks/rate_overhead.py``).  Encoder and decoder both call this,
        and the midpoints are exactly rounded IEEE operations, so every
        machine picks the same index.
        """
        gc = self.gaussian_conditional
        scales = gc.lower_bound_scale(scales)
        table = gc.scale_table.to(device=scales.device, dtype=scales.dtype)
        midpoints = torch.sqrt(table[:-1] * table[1:])
        return torch.bucketize(scales.contiguous(), midpoints).int()

    @property
    def string_overhead(self) -> int:
        """Check bytes in every string (see :mod:`dcae.latent_codecs.slice_coders`)."""
        return check_bytes(self.num_slices)

    def coding_copy(self, mode: CodingMode) -> DCAEEntropyModel:
        """The model that codes in ``mode``: this one, or for portable coding
        a float64 copy of it (:func:`~dcae.latent_codecs.float64.float64_copy`,
        reused until this model's weights, buffers, submodules or flags
        change; eager: compiled submodules are unwrapped)."""
        if not mode.portable:
            return self
        return float64_copy(self, prepare=_pair_mean_and_scale)  # type: ignore[return-value]

    @torch.no_grad()
    def compress(
        self,
        y: Tensor,
        side_params: Tensor,
        return_y_hat: bool = True,
        *,
        mode: Optional[CodingMode] = None,
        portable: Optional[bool] = None,
        grid_bits: Optional[int] = None,
        associated_data: bytes = b"",
    ) -> Dict[str, Any]:
        """Entropy code ``y``: ``{"strings": [y_strings], "shape": (C, H, W),
        "y_hat"}``, one self-checking string per sample.

        ``mode`` (:class:`~dcae.latent_codecs.coding_mode.CodingMode`,
        default float32; or the keywords ``portable=True`` and ``grid_bits``,
        default :data:`~dcae.latent_codecs.coding_mode.PORTABLE_GRID_BITS`):
        portable coding computes every entropy parameter in float64 with the
        means and residual predictions snapped to a grid of ``2^-grid_bits``,
        so that any backend, thread count, compiler, CPU or GPU decodes the
        strings (decode them in the same mode; see the format guide).  Give it
        ``side_params`` computed in float64 as well (``DCAEModel`` does).

        ``associated_data``: bytes bound into the strings' checks (what else
        decides decoding, e.g. a quality); :meth:`decompress` must be given
        the same, or the strings do not verify.

        ``return_y_hat=False`` leaves ``y_hat`` out and skips the work only it
        needs (the last slice's residual prediction), as an encoder may.
        """
        mode = CodingMode.of(mode, portable, grid_bits)
        self._check_y(y)
        em = self.coding_copy(mode)
        y, side_params = mode.cast(y), mode.cast(side_params)
        coder = Encoder(em, y, mode, associated_data, hooks=list(self._params_hooks.values()))
        y_hat = em.run_slices(side_params, (y.shape[2], y.shape[3]), coder, return_y_hat, mode)
        out: Dict[str, Any] = {"strings": [coder.strings()], "shape": tuple(y.shape[1:])}
        if return_y_hat:
            out["y_hat"] = y_hat.to(self.dictionary.dtype)
        return out

    @torch.no_grad()
    def decompress(
        self,
        strings: List[List[bytes]],
        shape: Sequence[int],
        side_params: Tensor,
        *,
        mode: Optional[CodingMode] = None,
        portable: Optional[bool] = None,
        grid_bits: Optional[int] = None,
        associated_data: bytes = b"",
    ) -> Dict[str, Any]:
        """Decode ``{"y_hat"}`` from ``strings = [y_strings]`` (one string per
        sample, as :meth:`compress` returns them) and the latent ``shape``
        (``(C, H, W)`` or ``(H, W)``); ``mode`` (or ``portable`` and
        ``grid_bits``) and ``associated_data`` as given to :meth:`compress`.

        Raises:
            DecodingError: a string does not verify (wrong model, shape, slice
                layout, coding mode or string; truncation; drifted arithmetic),
                naming the first slice that does not.
            TypeError: ``strings`` is not a list holding one list of bytes.
            ValueError: ``shape`` or ``side_params`` do not fit this model.
        """
        mode = CodingMode.of(mode, portable, grid_bits)
        y_strings = self._check_strings(strings, side_params)
        c, hh, ww = self._check_shape(shape)
        em = self.coding_copy(mode)
        hooks = list(self._params_hooks.values())
        coder = Decoder(em, y_strings, (c, hh, ww), mode, associated_data, hooks=hooks)
        y_hat = em.run_slices(mode.cast(side_params), (hh, ww), coder, mode=mode)
        return {"y_hat": y_hat.to(self.dictionary.dtype)}

    def _check_strings(self, strings: Any, side_params: Tensor) -> List[bytes]:
        if isinstance(strings, (bytes, bytearray)) or not isinstance(strings, (list, tuple)):
            raise TypeError(
                "strings must be [y_strings], a list holding one list of bytes per sample "
                f"(as compress returns it), got {type(strings).__name__}"
            )
        if len(strings) != 1 or isinstance(strings[0], (bytes, bytearray)):
            hint = (
                "a flat list of bytes: wrap it as [y_strings]"
                if strings and all(isinstance(s, (bytes, bytearray)) for s in strings)
                else f"{len(strings)} lists"
            )
            raise TypeError(
                "strings must be [y_strings], a list holding one list of bytes per sample "
                f"(as compress returns it), got {hint}"
            )
        (y_strings,) = strings
        if not isinstance(y_strings, (list, tuple)):
            raise TypeError(f"strings[0] must be a list of bytes, got {type(y_strings).__name__}")
        if not isinstance(side_params, Tensor) or side_params.dim() != 4:
            raise ValueError("side_params must be a (b, C, H, W) tensor")
        if len(y_strings) != side_params.shape[0]:
            raise ValueError(
                f"{len(y_strings)} strings for a batch of {side_params.shape[0]} side_params"
            )
        return list(y_strings)

    def _check_shape(self, shape: Any) -> Tuple[int, int, int]:
        try:
            dims = tuple(operator.index(v) for v in shape)
        except TypeError:
            raise ValueError(f"shape must be (C, H, W) or (H, W) ints, got {shape!r}") from None
        if len(dims) == 2:
            dims = (self.latent_channels, *dims)
        if len(dims) != 3 or min(dims) < 1:
            raise ValueError(f"shape must be (C, H, W) or (H, W) positive ints, got {shape!r}")
        if dims[0] != self.latent_channels:
            raise ValueError(
                f"shape {dims} has {dims[0]} channels; this entropy model codes "
                f"{self.latent_channels}"
            )
        return dims  # type: ignore[return-value]

    def _chunk(self, params: Tensor) -> Tuple[Tensor, Tensor]:
        """Refuse to act as a ``GaussianConditionalLatentCodec``: CompressAI's
        ``CheckerboardLatentCodec`` calls this on its ``"y"`` codec."""
        raise TypeError(
            "DCAEEntropyModel computes its own Gaussian parameters (Eq. (4)) and cannot be "
            "the 'y' codec of CheckerboardLatentCodec, whose entropy_parameters produce "
            "them; use DCAEEntropyModel(..., spatial_context='checkerboard') for DCAE with "
            "a checkerboard context"
        )


register_module("DCAEEntropyModel")(DCAEEntropyModel)


def _pair_mean_and_scale(em: nn.Module) -> None:
    """In a float64 copy: the mean and scale networks of a slice read one
    support, so their first layers compute as one (:func:`pair_first_layers`)."""
    for means, scales in zip(em.mean_transforms, em.scale_transforms):  # type: ignore[arg-type]
        pair_first_layers(means, scales)


def _positive_int(name: str, value: Any) -> int:
    """``value`` as a positive int, or a ValueError naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive int, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
