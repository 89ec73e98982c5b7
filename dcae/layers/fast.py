"""Fast mode: reduced-precision analysis and synthesis transforms.

``g_a`` and ``g_s`` hold nearly all of the transform FLOPs and sit *outside*
the entropy-coding loop: ``g_a`` only shapes the latent ``y`` that is then
quantised, ``g_s`` only renders the decoded ``y_hat``.  Running them in
bfloat16 (CPU with AVX-512 BF16/AMX, or GPU) or float16 (GPU) therefore
changes the reconstruction slightly but never the decodability of a stream:
the hyperprior and the entropy model (``h_a``, ``h_s``, the dictionary
cross-attention, the mean/scale/LRP nets) keep running in float32 and see
``y`` in float32, so encoder and decoder compute identical entropy
parameters.  A stream written in fast mode decodes in exact mode and vice
versa; only ``x_hat`` differs a little.

Usage::

    import dcae
    from dcae.layers.fast import fast_mode

    model = dcae.DCAEModel("paper").eval()
    fast_mode(model)                 # bfloat16 autocast for g_a / g_s
    out = model.compress(x)
    x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    fast_mode(model, enabled=False)  # back to float32
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

__all__ = ["FAST_DTYPES", "fast_mode", "is_fast_mode", "run_autocast", "tf32"]

#: dtypes fast mode accepts
FAST_DTYPES = (torch.bfloat16, torch.float16)


def fast_mode(model: nn.Module, dtype: torch.dtype = torch.bfloat16, enabled: bool = True):
    """Switch a :class:`~dcae.DCAEModel` to (or back from) fast mode.

    In fast mode ``g_a`` and ``g_s`` run under :func:`torch.autocast` with
    ``dtype`` and return float32; everything that computes entropy parameters
    stays float32, so bitstreams stay decodable across modes.

    Args:
        model: a :class:`~dcae.DCAEModel` (anything with ``g_a``, ``g_s`` and a
            ``transform_dtype`` attribute).
        dtype: ``torch.bfloat16`` (CPU and GPU) or ``torch.float16`` (GPU).
        enabled: ``False`` restores full precision.

    Returns:
        The same model, for chaining.

    Raises:
        ValueError: for an unsupported dtype or a model without transforms.
    """
    if not all(hasattr(model, name) for name in ("g_a", "g_s", "transform_dtype")):
        raise ValueError(
            f"fast_mode needs a DCAEModel (g_a, g_s, transform_dtype), got {type(model).__name__}"
        )
    if enabled and dtype not in FAST_DTYPES:
        raise ValueError(f"fast mode dtype must be one of {FAST_DTYPES}, got {dtype}")
    model.transform_dtype = dtype if enabled else None
    return model


def is_fast_mode(model: nn.Module) -> Optional[torch.dtype]:
    """The fast-mode dtype of ``model``, or ``None`` in full precision."""
    return getattr(model, "transform_dtype", None)


def run_autocast(transform: nn.Module, x: Tensor, dtype: torch.dtype) -> Tensor:
    """``transform(x)`` under autocast with ``dtype``; the result in float32."""
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        out = transform(x)
    return out.float()


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA float32 matmuls and cuDNN convolutions on or off inside
    the block (restored after); no effect on CPU computations."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision"):
        before = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = before
    else:  # torch < 2.9
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
