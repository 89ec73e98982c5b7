"""dcae: Learned Image Compression with Dictionary-based Entropy Model
(Lu et al., CVPR 2025) as CompressAI modules.

Public API::

    from dcae import DictionaryCrossAttention, MSFA, DCAEEntropyModel, DCAEModel

``import dcae`` imports torch and CompressAI and registers DCAE with
CompressAI, whatever the host program and its arguments are (CompressAI's
``examples/train.py -m dcae`` included).  Only the ``dcae`` console script,
which starts in :mod:`dcae_cli` and says so there, defers these imports to
the first use of a public name, so that ``dcae --help`` starts without torch.
"""

from __future__ import annotations

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


def _lazy() -> bool:
    """Whether the ``dcae`` console script imports this package
    (:data:`dcae_cli.lazy_import`, set by its ``main`` only)."""
    launcher = sys.modules.get("dcae_cli")
    return bool(getattr(launcher, "lazy_import", False))


def __getattr__(name: str) -> Any:
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module 'dcae' has no attribute {name!r}")


if not _lazy():
    _load()
