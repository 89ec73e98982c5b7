"""dcae: Learned Image Compression with Dictionary-based Entropy Model
(Lu et al., CVPR 2025) as CompressAI modules.

Public API::

    from dcae import DictionaryCrossAttention, MSFA, DCAEEntropyModel, DCAEModel
"""

from __future__ import annotations

import warnings

# compressai 1.2.x scripts a helper at import time, which torch >= 2.10 flags
# as deprecated; the warning is about CompressAI, not about user code
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

from . import zoo as _zoo  # noqa: F401  (registers DCAE with CompressAI)
from .attention import attention_backend, get_attention_backend, set_attention_backend
from .codec import decode, encode
from .config import PRESETS, DCAEConfig, get_config
from .dictionary import MSFA, DictionaryCrossAttention
from .entropy_model import DCAEEntropyModel
from .errors import DCAEError, DecodingError, FormatError, ModelMismatchError
from .model import DCAEModel

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
    "get_attention_backend",
    "get_config",
    "set_attention_backend",
]
