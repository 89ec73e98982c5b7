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
from hyperprior_codec import DEFAULT_DATA, load_photos, round_trip, train  # noqa: E402

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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of training photos")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128, help="training crop (multiple of 64)")
    p.add_argument("--lmbda", type=float, default=0.0130)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--N", type=int, default=192)
    p.add_argument("--M", type=int, default=320)
    p.add_argument("--no-checkerboard", action="store_true", help="channel context only")
    p.add_argument("--dict-entries", type=int, default=64, help="dictionary entries")
    p.add_argument("--dict-dim", type=int, default=128, help="dictionary width")
    p.add_argument("--dict-heads", type=int, default=4, help="dictionary attention heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, help="write the trained state dict here")
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
    images = load_photos(args.data)
    losses = train(
        model,
        images,
        args.steps,
        args.batch,
        args.crop,
        args.lmbda,
        args.lr,
        args.seed,
        log_every=max(1, args.steps // 10),
    )
    x = images[0][:, :128, :128].unsqueeze(0)
    result = round_trip(model, x)
    print(
        f"round trip: exact={result['exact']}  {result['bpp']:.3f} bpp  "
        f"{result['psnr']:.2f} dB PSNR"
    )
    if args.save:
        torch.save(model.state_dict(), args.save)
    return {"losses": losses, **result}


if __name__ == "__main__":
    main()
