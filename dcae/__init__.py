"""dcae: Learned Image Compression with Dictionary-based Entropy Model
(Lu et al., CVPR 2025) as CompressAI modules.

Public API::

    from dcae import DictionaryCrossAttention, MSFA, DCAEEntropyModel, DCAEModel

``import dcae`` imports torch and CompressAI and registers DCAE with
CompressAI, whatever the host program and its arguments are (CompressAI's
``examples/train.py -m dcae`` included); it changes no other global state
(warnings filters, ``sys.path``, the attention backend's default).

The package, one folder per layer of the system (lower layers never import
higher ones)::

    layers/          the paper's layers: attention backends, Swin blocks, MSFA,
                     dictionary cross-attention, fast mode
    latent_codecs/   DCAEEntropyModel (Eq. (4)), its slice coders and string checks,
                     the hyperprior codec, the coding modes and float64 arithmetic
    models/          DCAEModel, its transforms and variable-rate gains, checkpoint
                     layouts
    zoo/ format/     CompressAI registry, official and shipped checkpoints, loading;
                     the .dcae container, shape, padding, fingerprint, images
    codec.py         encode/decode (rate_control.py: the target-rate search)
    training/ eval/  dcae train; dcae eval and the metrics
    cli/             the dcae command line

Only the ``dcae`` console script, which starts in :mod:`dcae_cli` and says so
there, defers these imports to the first use of a public name, so that
``dcae --help`` starts without torch.
"""

from __future__ import annotations

import sys
from typing import Any

from .version import __version__  # noqa: F401  (dcae.__version__)

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
    from .codec import decode, encode, find_quality  # noqa: F401
    from .config import PRESETS, DCAEConfig, get_config  # noqa: F401
    from .errors import DCAEError, DecodingError, FormatError, ModelMismatchError  # noqa: F401
    from .latent_codecs.entropy_model import DCAEEntropyModel  # noqa: F401
    from .layers.attention import (  # noqa: F401
        attention_backend,
        get_attention_backend,
        set_attention_backend,
    )
    from .layers.dictionary import DictionaryCrossAttention  # noqa: F401
    from .layers.msfa import MSFA  # noqa: F401
    from .models.dcae import DCAEModel  # noqa: F401
    from .zoo import registry  # noqa: F401  (registers DCAE with CompressAI)

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
