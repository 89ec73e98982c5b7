"""DCAEEntropyModel with ELIC transforms and uneven slices ("ELIC + ours").

Appendix B of the DCAE paper puts the dictionary-based entropy model into
other codecs.  This script takes the analysis/synthesis transforms and the
hyperprior of CompressAI's ``Elic2022Official`` (He et al., CVPR 2022) and
replaces ELIC's space-channel context model by :class:`dcae.DCAEEntropyModel`
with ELIC's uneven channel groups ``16, 16, 32, 64, M - 128`` and a
checkerboard spatial context inside every slice.  ELIC's hyper synthesis
gives ``2 * N`` side-parameter channels (not ``2 * M``), which the entropy
model takes as ``side_channels``.

::

    python examples/elic_codec.py --data /path/to/photos --steps 200
    python examples/elic_codec.py --steps 20 --N 32 --M 160 --crop 64
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from compressai.latent_codecs import HyperpriorLatentCodec
from compressai.models import SimpleVAECompressionModel
from compressai.models.sensetime import Elic2022Official

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hyperprior_codec import example_parser, train_and_report  # noqa: E402

from dcae import DCAEEntropyModel  # noqa: E402


def elic_groups(M: int) -> list:
    """ELIC's uneven channel groups ``16, 16, 32, 64, M - 128``."""
    if M <= 128:
        raise SystemExit(f"ELIC groups need M > 128, got M={M}")
    return [16, 16, 32, 64, M - 128]


class ElicDCAE(SimpleVAECompressionModel):
    """ELIC transforms and hyperprior, DCAE entropy model with checkerboard context.

    ::

        x -> g_a (ELIC) -> y ------------> DCAEEntropyModel(slices 16,16,32,64,M-128,
                           |                  checkerboard) -> y_hat -> g_s (ELIC) -> x_hat
                           +-> ELIC hyperprior -> side_params (2N channels) --^
    """

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        dict_entries: int = 64,
        dict_dim: int = 128,
        dict_heads: int = 4,
        spatial_context: Optional[str] = "checkerboard",
    ):
        super().__init__()
        groups = elic_groups(M)
        elic = Elic2022Official(N=N, M=M, groups=groups)
        self.g_a = elic.g_a
        self.g_s = elic.g_s
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": DCAEEntropyModel(
                    M,
                    slice_sizes=groups,
                    side_channels=2 * N,  # ELIC's h_s output
                    max_support_slices=-1,
                    dict_entries=dict_entries,
                    dict_dim=dict_dim,
                    dict_heads=dict_heads,
                    msfa_depth=2,
                    mlp_ratio=2,
                    hidden_channels=(N, N // 2),
                    spatial_context=spatial_context,
                ),
                "hyper": elic.latent_codec["hyper"],
            }
        )

    @property
    def downsampling_factor(self) -> int:
        """Images must be multiples of 64 (16 for ``g_a`` times 4 for ``h_a``)."""
        return 64


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = example_parser(__doc__.splitlines()[0], N=192, M=320)
    p.add_argument("--no-checkerboard", action="store_true", help="channel context only")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Train, then round-trip a 128x128 crop; returns losses and round-trip figures."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = ElicDCAE(
        args.N,
        args.M,
        dict_entries=args.dict_entries,
        dict_dim=args.dict_dim,
        dict_heads=args.dict_heads,
        spatial_context=None if args.no_checkerboard else "checkerboard",
    )
    return train_and_report(model, args)


if __name__ == "__main__":
    main()
