"""How fine a grid portable coding needs: flip risk against rate and PSNR cost.

Portable coding snaps the means and the latent residual predictions (LRP) to
multiples of ``2^-g`` in float64.  Two conforming float64 implementations
(another attention kernel, BLAS or device) drift by some ``eps`` before the
snap; a value within ``eps`` of a grid midpoint can then snap differently and
the stream is lost.  Per image the expected number of such flips is about
``sum over snapped values of 2 eps / 2^-g``: a coarser grid is safer, but moves
the means and ``y_hat`` further from the model's values.

For each image this script

* measures ``eps``: the largest difference of any pre-snap mean or LRP value
  between decoders under the three attention backends (same stream);
* encodes with portable coding at each grid and reports the bytes against the
  default (float32, unsnapped) coding, the PSNR change of the decoded image, and
  the expected flips per image ``N x 2 eps / 2^-g`` (``N`` snapped values, ``eps``
  the largest drift seen on that image, so an overestimate).

Usage::

    python benchmarks/portable_grid.py [--limit 6] [--grids 16,10,8,6,4] [--quality 4]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

from dcae import attention_backend
from dcae.eval.metrics import psnr
from dcae.format.pixels import image_to_tensor
from dcae.latent_codecs.coding_mode import CodingMode
from dcae.zoo import shipped

__all__ = ["main"]

KODAK = Path(os.environ.get("DCAE_KODAK", "kodak"))  # the Kodak PNG images


class _Recorder:
    """Records every tensor :meth:`CodingMode.snap` snaps (means and residual
    predictions of portable coding)."""

    def __init__(self) -> None:
        self.values: List[torch.Tensor] = []
        self._snap = CodingMode.snap

    def __enter__(self) -> _Recorder:
        original = self._snap

        def snap(mode: CodingMode, t: torch.Tensor) -> torch.Tensor:
            if mode.portable:
                self.values.append(t.detach().clone())
            return original(mode, t)

        CodingMode.snap = snap  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        CodingMode.snap = self._snap  # type: ignore[method-assign]


def _drift(model, x: torch.Tensor, quality) -> tuple:
    """(largest pre-snap drift between backends, number of snapped values),
    decoding one stream under each attention backend (the encoder's ``y``
    itself depends on the backend of ``g_a``, so decoders are compared)."""
    with torch.inference_mode():
        out = model.compress(x, quality, portable=True)
    runs = []
    for backend in ("reference", "fused", "sdpa"):
        with attention_backend(backend, model), _Recorder() as rec, torch.inference_mode():
            model.decompress(out["strings"], out["shape"], portable=True)
        runs.append(rec.values)
    eps = max(float((a - b).abs().max()) for other in runs[1:] for a, b in zip(runs[0], other))
    return eps, sum(v.numel() for v in runs[0])


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--grids", default="16,10,8,6,4")
    parser.add_argument("--quality", type=float, default=None)
    args = parser.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",")]
    model = shipped.load_pretrained(args.quality).eval()
    quality = args.quality if args.quality is not None else model.default_quality
    files = sorted(args.images.glob("*.png"))[: args.limit]
    rows: Dict[int, Dict[str, List[float]]] = {
        g: {"bytes": [], "psnr": [], "flips": []} for g in grids
    }
    eps_all = []
    for f in files:
        x = image_to_tensor(f)[0]
        eps, n = _drift(model, x, quality)
        eps_all.append(eps)
        with torch.inference_mode():
            ref = model.compress(x, quality)
            ref_bytes = sum(len(s[0]) for s in ref["strings"])
            ref_psnr = psnr(x, model.decompress(ref["strings"], ref["shape"])["x_hat"])
        for g in grids:
            with torch.inference_mode():
                out = model.compress(x, quality, portable=True, grid_bits=g)
                x_hat = model.decompress(out["strings"], out["shape"], portable=True, grid_bits=g)[
                    "x_hat"
                ]
            size = sum(len(s[0]) for s in out["strings"])
            rows[g]["bytes"].append(100.0 * (size - ref_bytes) / ref_bytes)
            rows[g]["psnr"].append(psnr(x, x_hat) - ref_psnr)
            rows[g]["flips"].append(n * 2 * eps / 2.0**-g)
        print(f"{f.name}: drift {eps:.1e}, {n} snapped values", file=sys.stderr)
    print(
        f"# portable grid, {datetime.date.today()}, {platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, shipped model q{quality:g}, "
        f"{len(files)} images of {args.images}; largest drift {max(eps_all):.1e}"
    )
    print("| grid | bytes vs default | PSNR vs default | expected flips per image |")
    print("|---|---:|---:|---:|")
    for g in grids:
        size, quality_db, flips = (statistics.mean(rows[g][k]) for k in ("bytes", "psnr", "flips"))
        print(f"| 2^-{g} | {size:+.3f} % | {quality_db:+.4f} dB | {flips:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
