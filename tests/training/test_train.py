"""Training: exact resume, warm start, export, DDP with torchrun (gloo, 2 processes)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dcae.config import TrainConfig
from dcae.training.data import ImageFolder
from dcae.training.loop import train
from dcae.training.loss import RateDistortionLoss
from dcae.zoo.loading import load_checkpoint

TRAIN_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "train-photos"


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """A few small images (crops of the training photos, or noise if absent)."""
    d = tmp_path_factory.mktemp("imgs")
    files = sorted(TRAIN_PHOTOS.glob("*.png"))[:4] if TRAIN_PHOTOS.is_dir() else []
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        if files:
            im = Image.open(files[i]).convert("RGB").crop((0, 0, 48, 40))
        else:
            arr = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
            im = Image.fromarray(arr)
        im.save(d / f"img{i}.png")
    return d


def _cfg(image_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(image_dir),
        output=str(out),
        preset="small",
        steps=4,
        batch_size=2,
        patch_size=32,
        val_split=1,
        val_every=2,
        save_every=2,
        log_every=1,
        warmup=2,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_resume_is_exact(image_dir, tmp_path):
    full = train(_cfg(image_dir, tmp_path / "full"))
    train(_cfg(image_dir, tmp_path / "part", steps=2))
    # continue the 2-step run to 4 steps from its checkpoint
    resumed = train(
        _cfg(image_dir, tmp_path / "part", resume=str(tmp_path / "part" / "checkpoint.pt"))
    )
    a, b = full.state_dict(), resumed.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ckpt = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4
    rows = list(csv.DictReader(open(tmp_path / "full" / "train.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    val = list(csv.DictReader(open(tmp_path / "full" / "val.csv")))
    assert [int(r["step"]) for r in val] == [2, 4]


def test_export_and_warm_start(image_dir, tmp_path):
    export = tmp_path / "model.pt"
    model = train(_cfg(image_dir, tmp_path / "a", steps=2, export=str(export), quality=1))
    loaded = load_checkpoint(export)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    meta = torch.load(export, weights_only=True)
    assert meta["lambda"] == pytest.approx(0.0067) and meta["quality"] == 1
    # CDF tables were stored: coding works without update()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        enc = loaded.compress(x)
        dec = loaded.decompress(enc["strings"], enc["shape"])
    assert dec["x_hat"].shape == x.shape
    warm = train(_cfg(image_dir, tmp_path / "b", steps=1, init=str(export), lmbda=0.02))
    assert warm.config == loaded.config
    # a training checkpoint.pt (optimizer and RNG states inside) warm-starts too
    from_run = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    for k, v in model.named_parameters():
        assert torch.equal(from_run.state_dict()[k], v), k


def test_rate_distortion_loss_values():
    x = torch.rand(2, 3, 8, 8)
    lik = {"y": torch.full((2, 4, 1, 1), 0.5), "z": torch.ones(2, 2, 1, 1)}
    out = RateDistortionLoss(0.01)({"x_hat": x + 0.1, "likelihoods": lik}, x)
    assert out["bpp"].item() == pytest.approx(8 / 128)
    assert out["mse"].item() == pytest.approx(0.01, rel=1e-4)
    assert out["loss"].item() == pytest.approx(0.01 * 255**2 * 0.01 + 8 / 128, rel=1e-4)
    with pytest.raises(ValueError):
        RateDistortionLoss(0.01, "psnr")


def test_crops_are_seeded_and_flipped(image_dir):
    data = ImageFolder(str(image_dir))
    a = data.batch(4, 16, torch.Generator().manual_seed(1))
    b = data.batch(4, 16, torch.Generator().manual_seed(1))
    c = data.batch(4, 64, torch.Generator().manual_seed(2))  # larger than the images
    assert torch.equal(a, b) and a.shape == (4, 3, 16, 16)
    assert c.shape == (4, 3, 64, 64) and 0 <= float(c.min()) and float(c.max()) <= 1


def test_missing_folder_raises(tmp_path):
    from dcae import DCAEError

    with pytest.raises(DCAEError):
        ImageFolder(str(tmp_path / "nope"))
    with pytest.raises(DCAEError):
        ImageFolder(str(tmp_path))


def test_ddp_torchrun_gloo_two_processes(image_dir, tmp_path):
    """Two CPU processes with DistributedDataParallel (gloo) through torchrun."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dcae", "train", str(image_dir), "-o", str(out), "--preset", "small",
        "--steps", "2", "--batch-size", "1", "--patch-size", "32", "--val-split", "1",
        "--save-every", "2", "--log-every", "1", "--threads", "1",
        "--export", str(tmp_path / "ddp.pt"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2
    assert isinstance(ckpt["rng"], list) and len(ckpt["rng"]) == 2  # one RNG state per rank
    assert not torch.equal(ckpt["rng"][0]["generator"], ckpt["rng"][1]["generator"])
    assert load_checkpoint(tmp_path / "ddp.pt").config.name == "small"


@pytest.mark.parametrize("per_sample", [False, True])
def test_ms_ssim_loss_has_a_distortion_gradient(per_sample):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 176, 176)
    x_hat = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    out = {"x_hat": x_hat, "likelihoods": {"y": torch.full((2, 4, 11, 11), 0.5)}}
    lam = torch.tensor([3.0, 30.0]) if per_sample else None
    terms = RateDistortionLoss(10.0, "ms-ssim")(out, x, lam)
    terms["loss"].backward()
    assert x_hat.grad is not None and float(x_hat.grad.abs().sum()) > 0
    assert 0 < float(terms["ms_ssim"]) < 1


def test_variable_rate_run_resumes_exactly_and_keeps_the_best(image_dir, tmp_path):
    single = tmp_path / "single.pt"
    train(_cfg(image_dir, tmp_path / "s", steps=1, export=str(single)))
    kw = dict(preset="small-vr", init=str(single), lmbda=0.0067, bf16=True, keep_best=True)
    full = train(_cfg(image_dir, tmp_path / "full", **kw))
    train(_cfg(image_dir, tmp_path / "part", steps=2, **kw))
    resumed = train(
        _cfg(image_dir, tmp_path / "part", resume=str(tmp_path / "part" / "checkpoint.pt"), **kw)
    )
    assert resumed.variable_rate
    # resuming never reads --init again (its CDF tables may differ in size): not even
    # a missing file matters
    again = train(
        _cfg(image_dir, tmp_path / "part", resume=str(tmp_path / "part" / "checkpoint.pt"),
             **{**kw, "init": str(tmp_path / "gone.pt")})
    )  # fmt: skip
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in resumed.state_dict().items())
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    val = list(csv.DictReader(open(tmp_path / "full" / "val.csv")))
    assert [r["quality"] for r in val[:9]] == [str(q) for q in range(1, 9)] + [""]
    rates = [float(r["bpp"]) for r in val[:8]]
    assert rates == sorted(rates)  # the rate points' gains order the rates
    summary = [r for r in val if r["quality"] == ""]
    losses = [float(r["loss"]) for r in summary]
    best = load_checkpoint(tmp_path / "full" / "best.pt")
    assert best.variable_rate and best.transform_dtype is None  # exported without fast mode
    ckpt = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert ckpt["best"] == pytest.approx(min(losses), rel=1e-4)  # the CSV has 5 decimals
