"""``--device`` of the command line and the Python tools: which device runs a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .errors import DCAEError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "auto (default: CUDA when available, else the CPU), cpu, cuda or cuda:N"


def resolve_device(spec: Optional[str] = "auto", local_rank: Optional[int] = None) -> torch.device:
    """The device of ``spec``: ``"auto"`` (or ``None``) is CUDA when available
    and the CPU otherwise; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as named.
    ``local_rank`` (``torchrun``) picks ``cuda:LOCAL_RANK`` for ``auto`` and
    ``cuda``.

    Raises:
        DCAEError: ``spec`` is not a device name, or names a CUDA device this
            machine does not have (one line, no traceback in the CLI).
    """
    import torch

    spec = "auto" if spec is None else str(spec).strip().lower()
    cuda = torch.cuda.is_available()
    if spec == "auto":
        spec = "cuda" if cuda else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DCAEError(f"unknown device {spec!r}; use {DEVICE_HELP}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DCAEError(f"unsupported device {spec!r}; use {DEVICE_HELP}")
    if not cuda:
        raise DCAEError(
            f"--device {spec}: this machine has no CUDA GPU (torch {torch.__version__}, "
            f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu"
        )
    index = device.index if device.index is not None else (local_rank or 0)
    if index >= torch.cuda.device_count():
        raise DCAEError(
            f"--device {spec}: CUDA device {index} does not exist "
            f"({torch.cuda.device_count()} visible)"
        )
    return torch.device("cuda", index)
