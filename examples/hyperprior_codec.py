"""DCAEEntropyModel inside a Balle-style mean-scale hyperprior codec.

The codec is CompressAI's mean-scale hyperprior (Minnen et al. 2018, without
the spatial context): GDN analysis/synthesis transforms and a hyperprior whose
synthesis gives ``2 * M`` channels of side parameters.  The only change is the
entropy model of ``y``: :class:`dcae.DCAEEntropyModel` codes it in channel
slices with dictionary cross-attention instead of one Gaussian conditional.

Train for a few steps on a folder of photos, then compress and decompress an
image exactly::

    python examples/hyperprior_codec.py --data /path/to/photos --steps 200
    python examples/hyperprior_codec.py --steps 20 --N 32 --M 64 --crop 64

The tutorial ``docs/guides/tutorial.rst`` walks through this file.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import HyperLatentCodec, HyperpriorLatentCodec
from compressai.layers import GDN
from compressai.models import SimpleVAECompressionModel
from compressai.models.utils import conv, deconv
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms.functional import to_tensor

from dcae import DCAEEntropyModel

DEFAULT_DATA = Path("/work/shared/datasets/train-photos")


class HyperpriorDCAE(SimpleVAECompressionModel):
    """Mean-scale hyperprior codec whose ``y`` is coded by DCAEEntropyModel.

    ::

        x -> g_a -> y ------------------------------> DCAEEntropyModel -> y_hat -> g_s -> x_hat
                    |                                       ^ side_params (2M channels)
                    +-> h_a -> z -> EntropyBottleneck -> h_s
    """

    def __init__(
        self,
        N: int = 128,
        M: int = 192,
        num_slices: int = 4,
        dict_entries: int = 64,
        dict_dim: int = 128,
        dict_heads: int = 4,
        spatial_context: Optional[str] = None,
    ):
        super().__init__()
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
        )
        self.g_s = nn.Sequential(
            deconv(M, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, 3),
        )
        h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(N, N, stride=2, kernel_size=5),
            nn.LeakyReLU(inplace=True),
            conv(N, N, stride=2, kernel_size=5),
        )
        h_s = nn.Sequential(
            deconv(N, M, stride=2, kernel_size=5),
            nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2, stride=2, kernel_size=5),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": DCAEEntropyModel(
                    M,
                    num_slices,
                    side_channels=2 * M,  # what h_s produces
                    max_support_slices=-1,
                    dict_entries=dict_entries,
                    dict_dim=dict_dim,
                    dict_heads=dict_heads,
                    msfa_depth=2,
                    mlp_ratio=2,
                    hidden_channels=(M, M // 2),
                    spatial_context=spatial_context,
                ),
                "hyper": HyperLatentCodec(EntropyBottleneck(N), h_a, h_s, quantizer="ste"),
            }
        )

    @property
    def downsampling_factor(self) -> int:
        """Images must be multiples of 64 (16 for ``g_a`` times 4 for ``h_a``)."""
        return 64


# ------------------------------------------------------------ training helpers
def load_photos(folder: Path, limit: int = 16) -> List[Tensor]:
    """Up to ``limit`` images of ``folder`` as ``(3, H, W)`` tensors in [0, 1]."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not files:
        raise SystemExit(f"no .png/.jpg images in {folder}")
    return [to_tensor(Image.open(p).convert("RGB")) for p in files[:limit]]


def random_crops(images: Sequence[Tensor], batch: int, size: int, rng: random.Random) -> Tensor:
    """A batch of random ``size x size`` crops."""
    crops = []
    for _ in range(batch):
        img = images[rng.randrange(len(images))]
        top = rng.randrange(img.shape[1] - size + 1)
        left = rng.randrange(img.shape[2] - size + 1)
        crops.append(img[:, top : top + size, left : left + size])
    return torch.stack(crops)


def rd_loss(out: Dict[str, Any], x: Tensor, lmbda: float) -> Dict[str, Tensor]:
    """``lambda * 255^2 * MSE + bpp`` (the loss of CompressAI and DCAE)."""
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(lik.log2().sum() for lik in out["likelihoods"].values()) / -num_pixels
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return {"loss": lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}


def train(
    model: nn.Module,
    images: Sequence[Tensor],
    steps: int,
    batch: int = 4,
    crop: int = 64,
    lmbda: float = 0.0130,
    lr: float = 1e-3,
    seed: int = 0,
    log_every: int = 0,
) -> List[float]:
    """Train with Adam (and CompressAI's auxiliary loss); returns the losses."""
    rng = random.Random(seed)
    params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam(params, lr=lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3)
    losses = []
    model.train()
    for step in range(steps):
        x = random_crops(images, batch, crop, rng)
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out = rd_loss(model(x), x, lmbda)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        model.aux_loss().backward()
        aux_optimizer.step()
        losses.append(out["loss"].item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"step {step:4d}  loss {losses[-1]:.4f}  bpp {out['bpp'].item():.4f}  "
                f"psnr {-10 * math.log10(max(out['mse'].item(), 1e-10)):.2f}"
            )
    return losses


@torch.no_grad()
def round_trip(model: SimpleVAECompressionModel, x: Tensor) -> Dict[str, Any]:
    """Compress and decompress ``x`` (sides multiples of 64); checks exactness."""
    model.eval()
    model.update(force=True)
    enc = model.compress(x)
    dec = model.decompress(enc["strings"], enc["shape"])
    ref = model(x)["x_hat"].clamp(0, 1)
    num_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
    mse = torch.mean((dec["x_hat"] - x) ** 2).item()
    return {
        "exact": bool(torch.equal(dec["x_hat"], ref)),
        "bpp": num_bytes * 8 / (x.shape[0] * x.shape[2] * x.shape[3]),
        "psnr": -10 * math.log10(max(mse, 1e-10)),
    }


def example_parser(description: str, N: int, M: int) -> argparse.ArgumentParser:
    """Options shared by the example codecs (data, schedule, widths, dictionary)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of training photos")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128, help="training crop (multiple of 64)")
    p.add_argument("--lmbda", type=float, default=0.0130)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--N", type=int, default=N)
    p.add_argument("--M", type=int, default=M)
    p.add_argument("--dict-entries", type=int, default=64, help="dictionary entries")
    p.add_argument("--dict-dim", type=int, default=128, help="dictionary width")
    p.add_argument("--dict-heads", type=int, default=4, help="dictionary attention heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, help="write the trained state dict here")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = example_parser(__doc__.splitlines()[0], N=128, M=192)
    p.add_argument("--num-slices", type=int, default=4)
    p.add_argument("--checkerboard", action="store_true", help="spatial context in each slice")
    return p.parse_args(argv)


def train_and_report(model: nn.Module, args: argparse.Namespace) -> Dict[str, Any]:
    """Train ``model`` on ``args.data``, round-trip a 128x128 crop, print and
    return the losses and round-trip figures; save the weights if asked."""
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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Train, then round-trip a 128x128 crop; returns losses and round-trip figures."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = HyperpriorDCAE(
        args.N,
        args.M,
        args.num_slices,
        dict_entries=args.dict_entries,
        dict_dim=args.dict_dim,
        dict_heads=args.dict_heads,
        spatial_context="checkerboard" if args.checkerboard else None,
    )
    return train_and_report(model, args)


if __name__ == "__main__":
    main()
