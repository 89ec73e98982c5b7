"""dcae: Learned Image Compression with Dictionary-based Entropy Model
(Lu et al., CVPR 2025) as CompressAI modules.

Public API::

    from dcae import DictionaryCrossAttention, MSFA, DCAEEntropyModel, DCAEModel

``import dcae`` imports torch and CompressAI and registers DCAE with
CompressAI, except in the ``dcae`` command line (``dcae ...``,
``python -m dcae ...``): there the public names are imported on first use,
so that ``dcae --help`` starts without torch.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "DCAEConfig",
    "DCAEEntropyModel",
    "DCAEError",
    "DCAEModel",
    "DecodingError",
    "DictionaryCrossAttention",
    "FormatError",
    "MSFA",
    "ModelMismatchError",
    "PRESETS",
    "attention_backend",
    "decode",
    "encode",
    "find_quality",
    "get_attention_backend",
    "get_config",
    "set_attention_backend",
]


def _load() -> None:
    """Import the public API (and register DCAE with CompressAI)."""
    # compressai 1.2.x scripts a helper at import time, which torch >= 2.10 flags
    # as deprecated; the warning is about CompressAI, not about user code
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

    from . import zoo  # noqa: F401  (registers DCAE with CompressAI)
    from .codec import decode, encode, find_quality  # noqa: F401
    from .config import PRESETS, DCAEConfig, get_config  # noqa: F401
    from .errors import DCAEError, DecodingError, FormatError, ModelMismatchError  # noqa: F401
    from .nn.attention import attention_backend, get_attention_backend, set_attention_backend  # noqa: F401
    from .nn.dictionary import MSFA, DictionaryCrossAttention  # noqa: F401
    from .nn.entropy_model import DCAEEntropyModel  # noqa: F401
    from .nn.model import DCAEModel  # noqa: F401

    globals().update({k: v for k, v in locals().items() if k in __all__})


def _command_line() -> bool:
    """Whether this process runs the ``dcae`` command line."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("dcae", "dcae.exe", "dcae-script.py"):
        return True
    argv = getattr(sys, "orig_argv", None)  # Python >= 3.10
    if argv is None:
        return bool(sys.argv) and sys.argv[0] == "-m"  # importing the package of -m
    return any(a == "-m" and b == "dcae" for a, b in zip(argv, argv[1:]))


def __getattr__(name: str) -> Any:
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module 'dcae' has no attribute {name!r}")


if not _command_line():
    _load()
