"""A researcher's own codec, as a module that tests name as ``user_codec:TinyCodec``.

Deliberately unlike CompressAI's models: no ``from_state_dict`` (built with
``TinyCodec()`` + ``load_state_dict``), no ``downsampling_factor`` (dcae pads
to 64), and a ``shape`` that is a dict holding a ``torch.Size``.
"""

from __future__ import annotations

import os

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import nn


class TinyCodec(CompressionModel):
    """Two stride-2 convolutions, a factorized prior, two transposed convolutions."""

    def __init__(self, N: int = 8):
        super().__init__()
        self.g_a = nn.Sequential(conv(3, N, 3, 2), nn.ReLU(), conv(N, N, 3, 2))
        self.g_s = nn.Sequential(deconv(N, N, 3, 2), nn.ReLU(), deconv(N, 3, 3, 2))
        self.entropy_bottleneck = EntropyBottleneck(N)

    def forward(self, x):
        y_hat, y_likelihoods = self.entropy_bottleneck(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_likelihoods}}

    def compress(self, x):
        y = self.g_a(x)
        return {"strings": [self.entropy_bottleneck.compress(y)], "shape": {"y": y.shape[-2:]}}

    def decompress(self, strings, shape):
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape["y"])
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}


def tiny_codec(seed: int = 0) -> TinyCodec:
    """A :class:`TinyCodec` with random weights, eval mode, CDF tables built."""
    torch.manual_seed(seed)
    model = TinyCodec().eval()
    model.update(force=True)
    return model


class NeedsArgs(TinyCodec):
    """A codec that cannot be built without arguments and has no ``from_state_dict``."""

    def __init__(self, N: int):
        super().__init__(N)


def mark_unpickled() -> None:
    os.environ["DCAE_TEST_UNPICKLED"] = "1"


class Payload:
    """Unpickling this runs code: checkpoints must be loaded with ``weights_only``."""

    def __reduce__(self):
        return (mark_unpickled, ())
