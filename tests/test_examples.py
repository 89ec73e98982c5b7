"""The scripts in examples/: a few training steps (the loss goes down) and an
exact compress/decompress round trip."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTOS = Path("/work/shared/datasets/train-photos")
KODAK = Path("/work/shared/datasets/kodak")

needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="needs the training photos")


def load(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean(values) -> float:
    return sum(values) / len(values)


TINY = ["--crop", "64", "--batch", "4", "--dict-entries", "16", "--dict-dim", "32"]
TINY += ["--dict-heads", "2", "--lr", "2e-3", "--data", str(PHOTOS)]


@needs_photos
def test_hyperprior_codec_trains_and_round_trips(tmp_path: Path) -> None:
    ex = load("hyperprior_codec")
    out = ex.main(["--steps", "10", "--N", "24", "--M", "48", "--num-slices", "3", *TINY])
    losses = out["losses"]
    assert len(losses) == 10 and all(map(torch.isfinite, torch.tensor(losses)))
    assert mean(losses[-3:]) < mean(losses[:3])
    assert out["exact"] and out["bpp"] > 0


@needs_photos
def test_elic_codec_with_uneven_slices_and_checkerboard(tmp_path: Path) -> None:
    ex = load("elic_codec")
    save = tmp_path / "elic.pth"
    out = ex.main(["--steps", "8", "--N", "16", "--M", "144", "--save", str(save), *TINY])
    losses = out["losses"]
    assert mean(losses[-3:]) < mean(losses[:3])
    assert out["exact"] and out["bpp"] > 0
    sd = torch.load(save, weights_only=True)
    # uneven ELIC groups 16, 16, 32, 64, M - 128 and the spatial context
    widths = [sd[f"latent_codec.y.mean_transforms.{i}.4.weight"].shape[0] for i in range(5)]
    assert widths == [16, 16, 32, 64, 16]
    assert "latent_codec.y.context_prediction.4.weight" in sd


@pytest.mark.skipif(not KODAK.is_dir(), reason="needs the Kodak images")
def test_compress_image_example(tmp_path: Path) -> None:
    ex = load("compress_image")
    out_png = tmp_path / "rec.png"
    out = ex.main([str(KODAK / "kodim23.png"), "--out", str(out_png)])
    assert out["bytes"] > 0 and out["x_hat"].shape == (1, 3, 512, 768)
    assert out_png.is_file()
