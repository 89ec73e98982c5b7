"""Architecture configuration of a DCAE model and its named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["DCAEConfig", "PRESETS", "VARIABLE_RATE_LAMBDAS", "TrainConfig", "get_config"]


@dataclass(frozen=True)
class DCAEConfig:
    """Every width and depth of a DCAE model; all modules derive from it.

    The defaults are the paper configuration (the official implementation's
    ``DCAE()``), 119.4M parameters.

    Args:
        image_channels: channels of the input image.
        feature_dims: channels of the three analysis/synthesis stages.
        depths: Swin blocks per stage (analysis order; synthesis mirrors it).
        head_dims: attention head width per analysis stage.
        synthesis_head_dims: head widths of the synthesis stages in synthesis
            order (default: ``head_dims`` reversed).
        window_size: attention window of the transforms.
        N: channels of the hyperprior transforms.
        M: channels of the latent ``y``.
        z_channels: channels of the hyper-latent ``z``.
        hyper_depth: Swin blocks in each hyperprior stage.
        hyper_head_dim: attention head width in the hyperprior.
        hyper_window_size: attention window in the hyperprior.
        num_slices: equal channel slices of ``y`` (ignored with ``slice_sizes``).
        slice_sizes: explicit slice widths.
        max_support_slices: previous slices in each slice's context (-1 all).
        dict_entries: dictionary entries.
        dict_heads: dictionary attention heads.
        dict_dim: dictionary width.
        msfa_depth: MSFA units ``m``.
        mlp_ratio: ConvGLU expansion.
        entropy_hidden: hidden widths of the mean/scale/LRP nets.
        lrp: latent residual prediction.
        spatial_context: ``None`` (the paper) or ``"checkerboard"`` (a two-pass
            checkerboard context inside each slice, the paper's appendix B).
        rate_lambdas: ``None`` for a fixed-rate model, or the increasing
            lambdas of a variable-rate model's rate points: quality ``k``
            (1-based) is trained at ``rate_lambdas[k-1]`` and any real quality
            between 1 and ``len(rate_lambdas)`` interpolates the learned gain
            vectors (Cui et al., CVPR 2021; see :class:`~dcae.DCAEModel`).
        name: preset name (informational).
    """

    image_channels: int = 3
    feature_dims: Tuple[int, int, int] = (96, 144, 256)
    depths: Tuple[int, int, int] = (1, 2, 12)
    head_dims: Tuple[int, int, int] = (8, 16, 32)
    synthesis_head_dims: Optional[Tuple[int, int, int]] = None
    window_size: int = 8
    N: int = 192
    M: int = 320
    z_channels: int = 192
    hyper_depth: int = 1
    hyper_head_dim: int = 32
    hyper_window_size: int = 4
    num_slices: int = 5
    slice_sizes: Optional[Tuple[int, ...]] = None
    max_support_slices: int = 5
    dict_entries: int = 128
    dict_heads: int = 20
    dict_dim: int = 640
    msfa_depth: int = 3
    mlp_ratio: int = 4
    entropy_hidden: Tuple[int, ...] = (224, 128)
    lrp: bool = True
    spatial_context: Optional[str] = None
    rate_lambdas: Optional[Tuple[float, ...]] = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for name in ("feature_dims", "depths", "head_dims"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} needs 3 values, got {getattr(self, name)}")
        analysis = zip(self.feature_dims, self.head_dims)
        synthesis = zip(reversed(self.feature_dims), self.synth_head_dims)
        for dim, hd in (*analysis, *synthesis):
            if dim % hd:
                raise ValueError(f"feature dim {dim} is not a multiple of head dim {hd}")
        if self.N % self.hyper_head_dim:
            raise ValueError(f"N={self.N} is not a multiple of hyper_head_dim")
        if self.window_size < 1 or self.hyper_window_size < 1:
            raise ValueError("window sizes must be positive")
        if self.rate_lambdas is not None:
            lam = tuple(float(v) for v in self.rate_lambdas)
            if (
                len(lam) < 2
                or any(not 0 < v < float("inf") for v in lam)
                or any(b <= a for a, b in zip(lam, lam[1:]))
            ):
                raise ValueError(
                    f"rate_lambdas must be at least 2 increasing positive numbers, got {lam}"
                )
            object.__setattr__(self, "rate_lambdas", lam)

    @property
    def variable_rate(self) -> bool:
        """Whether the model has rate points (``rate_lambdas``)."""
        return self.rate_lambdas is not None

    @property
    def synth_head_dims(self) -> Tuple[int, int, int]:
        """Head widths of the synthesis stages, in synthesis order."""
        if self.synthesis_head_dims is not None:
            return tuple(self.synthesis_head_dims)  # type: ignore[return-value]
        return tuple(reversed(self.head_dims))  # type: ignore[return-value]

    def replace(self, **changes: Any) -> DCAEConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> DCAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown DCAEConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS: Dict[str, DCAEConfig] = {
    "paper": DCAEConfig(name="paper"),
    "ablation": DCAEConfig(depths=(0, 0, 4), name="ablation"),
    "small": DCAEConfig(
        feature_dims=(32, 48, 64),
        depths=(0, 1, 2),
        head_dims=(8, 16, 16),
        N=64,
        M=96,
        z_channels=64,
        hyper_head_dim=16,
        num_slices=3,
        max_support_slices=3,
        dict_entries=32,
        dict_heads=4,
        dict_dim=64,
        msfa_depth=2,
        mlp_ratio=2,
        entropy_hidden=(64, 48),
        name="small",
    ),
}
#: lambdas of the variable-rate presets: CompressAI's eight MSE rate points
#: shifted down by one (0.0009 added, 0.18 dropped), 1 = lowest rate
VARIABLE_RATE_LAMBDAS: Tuple[float, ...] = (
    0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932
)  # fmt: skip
PRESETS["small-vr"] = PRESETS["small"].replace(rate_lambdas=VARIABLE_RATE_LAMBDAS, name="small-vr")


def get_config(preset: str | DCAEConfig = "paper", **overrides: Any) -> DCAEConfig:
    """Return a preset by name (``paper``, ``ablation``, ``small``, ``small-vr``)
    with overrides."""
    if isinstance(preset, DCAEConfig):
        cfg = preset
    else:
        try:
            cfg = PRESETS[preset]
        except KeyError:
            raise ValueError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
            ) from None
    return cfg.replace(**overrides) if overrides else cfg


@dataclass
class TrainConfig:
    """Options of :func:`dcae.training.loop.train` (the ``dcae train`` arguments)."""

    data: str
    output: str
    preset: str = "small"
    lmbda: float = 0.0067
    metric: str = "mse"
    steps: int = 10000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    clip: float = 1.0
    val: Optional[str] = None
    val_split: int = 4
    val_every: int = 500
    save_every: int = 500
    log_every: int = 50
    seed: int = 0
    resume: Optional[str] = None
    init: Optional[str] = None
    amp: bool = False
    threads: int = 0
    export: Optional[str] = None
    quality: Optional[int] = None
    bf16: bool = False
    val_crop: int = 0
    keep_best: bool = False
    quality_power: float = 1.0
    device: str = "auto"
