"""dcae on CUDA without a GPU: every CUDA code path traced with fake tensors.

PyTorch's ``FakeTensorMode`` gives tensors that claim ``device="cuda:0"`` on a
CPU-only build: real operators propagate shapes, dtypes and devices, a mix of
devices raises ``FakeTensorDeviceMismatchError`` and any read of a device
value on the host (``.item()``, ``bool(t)``, ``.tolist()``, a data-dependent
shape) raises ``DataDependentOutputException``.  What these tests prove and
what they cannot:

* ``forward`` (train and eval mode), the loss, every attention backend,
  reduced-precision transforms (float16 and bfloat16 as explicit casts:
  autocast cannot run without CUDA), the portable float64 copies, and
  ``compress``/``decompress`` up to the entropy coder run on ``cuda:0`` with
  no device mix and no host read beyond the documented copies of
  :mod:`dcae.latent_codecs.host` (counted here per slice);
* the backward pass, gradient clipping, Adam and the auxiliary step cannot
  run on fake CUDA tensors (the autograd engine asks for a CUDA context), so
  ``dcae train``'s own step runs on the ``meta`` device, which also refuses a
  device mix (a CPU tensor of one element or more) and any host read;
* nothing here checks numbers, kernels or speed on a real GPU: the tests
  marked ``cuda`` (``tests/test_cuda.py``, run by ``benchmarks/gpu_check.py``)
  do that on a machine with one.
"""

from __future__ import annotations

import contextlib
import copy
import gc
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.models.utils import conv, deconv
from PIL import Image
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

import dcae
from dcae import DCAEEntropyModel, DCAEModel
from dcae.config import TrainConfig
from dcae.latent_codecs import host
from dcae.latent_codecs.hyper_codec import (
    ExactHyperLatentCodec,
    bottleneck_compress,
    bottleneck_decompress,
)
from dcae.layers.attention import BACKENDS
from dcae.training.loss import RateDistortionLoss

FAKE = torch.device("cuda:0")
PRESETS = ["small", "small-vr", "paper"]


@pytest.fixture(scope="module")
def models() -> Dict[str, DCAEModel]:
    """One CPU model per preset (random weights, CDF tables built)."""
    out = {}
    for preset in PRESETS:
        torch.manual_seed(0)
        m = DCAEModel(preset).eval()
        m.update(force=True)
        out[preset] = m
    return out


class Transfers:
    """Stands in for :mod:`dcae.latent_codecs.host` while a fake model codes.

    A device-to-host copy of one of the model's buffers (the CDF tables)
    returns the real buffer's values; any other (symbols, indexes) returns
    zeros of its shape, so the CPU rANS coder runs for real on them.  Every
    copy is recorded as ``(direction, device, shape)``."""

    def __init__(self, real: nn.Module):
        # NumPy copies made outside the fake mode (inside it they are not real)
        self.reals = {
            name: b.numpy().copy() for name, b in real.named_buffers() if b.dtype in _NUMPY
        }
        self.known: Dict[int, Tuple[torch.Tensor, np.ndarray]] = {}
        self.log: List[Tuple[str, torch.device, Tuple[int, ...]]] = []

    def bind(self, fake: nn.Module) -> None:
        """Map the fake model's buffers to the real values."""
        # the tensors are held: an id is only unique while its object lives
        self.known = {
            id(b): (b, self.reals[n]) for n, b in fake.named_buffers() if n in self.reals
        }

    def to_host(self, t: torch.Tensor) -> np.ndarray:
        self.log.append(("d2h", t.device, tuple(t.shape)))
        if id(t) in self.known and self.known[id(t)][0] is t:
            return self.known[id(t)][1]
        dtype = torch.empty((), dtype=t.dtype, device="meta")
        return np.zeros(tuple(t.shape), dtype=_NUMPY[dtype.dtype])

    def to_device(self, a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        self.log.append(("h2d", like.device, tuple(a.shape)))
        return torch.from_numpy(np.array(a, copy=True)).to(like.device, like.dtype)

    def count(self, direction: str) -> int:
        return sum(1 for d, _, _ in self.log if d == direction)


_NUMPY = {
    torch.int32: np.int32,
    torch.int64: np.int64,
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.uint8: np.uint8,
}


@contextlib.contextmanager
def fake_cuda(model: nn.Module, monkeypatch=None) -> Iterator[Tuple[nn.Module, Any]]:
    """A copy of ``model`` on fake ``cuda:0`` inside ``FakeTensorMode``
    (and, with ``monkeypatch``, the host copies recorded)."""
    fake = copy.deepcopy(model)
    transfers = Transfers(model)
    # no cyclic collection inside the fake mode (fake tensors of earlier tests
    # are collected before it starts)
    gc.collect()
    gc.disable()
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            fake = fake.to(FAKE)
            transfers.bind(fake)
            if monkeypatch is not None:
                monkeypatch.setattr(host, "to_host", transfers.to_host)
                monkeypatch.setattr(host, "to_device", transfers.to_device)
            yield fake, transfers
    finally:
        gc.enable()


def qualities(model: DCAEModel, batch: int) -> Dict[str, Any]:
    """Per-sample qualities on the device for a variable-rate model."""
    if not model.variable_rate:
        return {}
    lo, hi = model.quality_range
    return {"quality": torch.linspace(lo, hi, batch, device=FAKE)}


def on_fake(t: torch.Tensor) -> bool:
    return t.device == FAKE


# ----------------------------------------------------------------------- forward
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("preset", PRESETS)
def test_forward_and_loss_on_fake_cuda(models, preset: str, train: bool) -> None:
    with fake_cuda(models[preset]) as (model, _):
        model.train(train)
        x = torch.rand(2, 3, 80, 96, device=FAKE)
        kw = qualities(model, 2)
        out = model(x, **kw)
        lmbda = model.lambda_for(kw["quality"]) if kw else None
        terms = RateDistortionLoss(0.0067)(out, x, lmbda)
        assert on_fake(out["x_hat"]) and out["x_hat"].shape == x.shape
        assert all(on_fake(v) for v in out["likelihoods"].values())
        assert on_fake(terms["loss"]) and on_fake(model.aux_loss())


@pytest.mark.parametrize("backend", [b for b in BACKENDS])
def test_every_attention_backend_on_fake_cuda(models, backend: str) -> None:
    with fake_cuda(models["small"]) as (model, _):
        with dcae.attention_backend(backend, model):
            out = model(torch.rand(1, 3, 72, 88, device=FAKE))
        assert on_fake(out["x_hat"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("preset", ["small-vr", "paper"])
def test_reduced_precision_transforms_on_fake_cuda(models, preset: str, dtype) -> None:
    """Fast mode's transforms in float16/bfloat16 (explicit casts): no
    constant of another dtype or device is mixed in."""
    real = copy.deepcopy(models[preset])
    real.g_a.to(dtype)
    real.g_s.to(dtype)
    with fake_cuda(real) as (model, _):
        g_a, g_s = model.g_a, model.g_s
        for backend in ("reference", "fused", "sdpa"):
            with dcae.attention_backend(backend, model):
                y = g_a(torch.rand(1, 3, 64, 80, device=FAKE, dtype=dtype))
                x_hat = g_s(y)
            assert y.dtype == x_hat.dtype == dtype and on_fake(x_hat)


# ----------------------------------------------------------------------- training
def _photos(folder: Path, n: int = 3) -> str:
    g = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(g.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


@pytest.mark.parametrize("preset", PRESETS)
def test_dcae_train_step_on_meta_reads_nothing_back(tmp_path, preset: str) -> None:
    """``dcae train``'s own step (forward, loss, backward, clipping, Adam,
    auxiliary loss and step) on the ``meta`` device: any host read of a
    device value or a mix with a CPU tensor would raise."""
    from dcae.training.loop import _Run

    cfg = TrainConfig(
        data=_photos(tmp_path), output=str(tmp_path / "run"), preset=preset,
        batch_size=2, patch_size=64, val_split=0,
    )  # fmt: skip
    (tmp_path / "run").mkdir()
    run = _Run(cfg, rank=0, world=1, local=0, device=torch.device("meta"))
    for _ in range(2):
        values = run.train_step()
    assert set(values) == {"loss", "bpp", "mse", "aux"}
    assert all(v.device.type == "meta" for v in values.values())
    assert all(p.device.type == "meta" for p in run.model.parameters())
    assert run.step == 2


def test_a_host_read_in_the_step_would_be_caught_on_meta() -> None:
    """The meta device refuses what the fake-CUDA layer hunts for."""
    t = torch.ones(3, device="meta")
    with pytest.raises(RuntimeError):
        t.sum().item()
    with pytest.raises(RuntimeError):
        _ = t + torch.ones(3)  # a CPU tensor mixed in


def test_compressai_entropy_bottleneck_reads_back_on_every_call() -> None:
    """CompressAI's ``EntropyBottleneck.forward`` permutes by a tensor of
    dimensions (a host read per call); :class:`ExactHyperLatentCodec` does
    not.  If CompressAI fixes this, this test says so."""
    eb = EntropyBottleneck(8)
    with FakeTensorMode(allow_non_fake_inputs=True):
        eb = eb.to(FAKE)
        z = torch.rand(2, 8, 4, 4, device=FAKE)
        with pytest.raises(DataDependentOutputException):
            eb(z)
        from dcae.latent_codecs.hyper_codec import bottleneck_forward

        z_tilde, lik = bottleneck_forward(eb, z, training=True)
        assert on_fake(z_tilde) and on_fake(lik)


# ----------------------------------------------------------------- user compositions
N, M, SIDE = 8, 20, 12
TINY: Dict[str, Any] = dict(
    dict_entries=8, dict_dim=16, dict_heads=2, msfa_depth=1, mlp_ratio=1, hidden_channels=(16,)
)


def _hyperprior(hyper_cls: type) -> HyperpriorLatentCodec:
    torch.manual_seed(0)
    h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N, 5, 2))
    h_s = nn.Sequential(deconv(N, N), nn.ReLU(), conv(N, SIDE, 3, 1))
    codec = HyperpriorLatentCodec(
        latent_codec={
            "y": DCAEEntropyModel(M, slice_sizes=[4, 16], side_channels=SIDE, **TINY),
            "hyper": hyper_cls(EntropyBottleneck(N), h_a, h_s, quantizer="ste"),
        }
    ).eval()
    codec.y.update()
    codec.hyper.entropy_bottleneck.update(force=True)
    return codec


def _channel_groups() -> ChannelGroupsLatentCodec:
    torch.manual_seed(0)
    codec = ChannelGroupsLatentCodec(
        groups=[8, 12],
        channel_context={"y1": conv(8, 6, kernel_size=3, stride=1)},
        latent_codec={
            "y0": DCAEEntropyModel(8, 2, side_channels=SIDE, **TINY),
            "y1": DCAEEntropyModel(12, slice_sizes=[4, 8], side_channels=SIDE + 6, **TINY),
        },
    ).eval()
    for k in ("y0", "y1"):
        codec[k].update()
    return codec


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_entropy_model_alone_on_fake_cuda(train: bool, monkeypatch) -> None:
    torch.manual_seed(0)
    em = DCAEEntropyModel(M, slice_sizes=[4, 16], side_channels=SIDE, **TINY).eval()
    em.update()
    with fake_cuda(em, monkeypatch) as (fake, transfers):
        fake.train(train)
        y, side = torch.randn(2, M, 6, 5, device=FAKE), torch.randn(2, SIDE, 6, 5, device=FAKE)
        out = fake(y, side)
        assert on_fake(out["y_hat"]) and on_fake(out["likelihoods"]["y"])
        fake.eval()
        with torch.no_grad():
            enc = fake.compress(y, side)
            dec = fake.decompress(enc["strings"], enc["shape"], side)
        assert on_fake(dec["y_hat"]) and len(enc["strings"][0]) == 2
        assert all(dev == FAKE for _, dev, _ in transfers.log)
        assert transfers.count("d2h") == 2 * 3 + 2 * 2  # tables each way, one per slice


@pytest.mark.parametrize("hyper_cls", [HyperLatentCodec, ExactHyperLatentCodec])
def test_in_compressai_hyperprior_latent_codec_on_fake_cuda(hyper_cls: type) -> None:
    codec = _hyperprior(hyper_cls)
    with fake_cuda(codec) as (fake, _):
        y = torch.randn(2, M, 8, 8, device=FAKE)
        if hyper_cls is HyperLatentCodec:  # CompressAI's bottleneck reads back
            with pytest.raises(DataDependentOutputException):
                fake(y)
            return
        out = fake(y)
        assert on_fake(out["y_hat"]) and on_fake(out["likelihoods"]["z"])


def test_in_compressai_channel_groups_latent_codec_on_fake_cuda() -> None:
    with fake_cuda(_channel_groups()) as (fake, _):
        y, side = torch.randn(2, M, 5, 6, device=FAKE), torch.randn(2, SIDE, 5, 6, device=FAKE)
        out = fake(y, side)
        assert on_fake(out["y_hat"]) and out["likelihoods"]["y"].shape == y.shape


# ----------------------------------------------------------------------- coding
@pytest.mark.parametrize("portable", [False, True], ids=["float32", "portable"])
@pytest.mark.parametrize("preset", PRESETS)
def test_compress_decompress_up_to_the_coder(models, preset, portable, monkeypatch) -> None:
    """Everything up to the rANS coder on the device, then the documented
    copies: one device-to-host copy per slice for the encoder (symbols and
    indexes together), one each way per slice for the decoder, plus the
    image range check, the hyper-latent's symbols and the CDF tables
    (portable: the float64 copies and their kernels on the device too)."""
    real = models[preset]
    slices = real.entropy_model.num_slices
    with fake_cuda(real, monkeypatch) as (model, transfers):
        kw = {"quality": 3.5} if model.variable_rate else {}
        x = torch.rand(2, 3, 70, 90, device=FAKE)
        with torch.no_grad():
            enc = model.compress(x, portable=portable, **kw)
            assert all(dev == FAKE for _, dev, _ in transfers.log)
            # range check 1, z symbols 1, z tables 3, y tables 3, one per slice
            assert transfers.count("d2h") == 1 + 1 + 3 + 3 + slices
            assert transfers.count("h2d") == 0
            transfers.log.clear()
            out = model.decompress(enc["strings"], enc["shape"], portable=portable)
        assert all(dev == FAKE for _, dev, _ in transfers.log)
        assert on_fake(out["x_hat"]) and out["x_hat"].shape == x.shape
        # z tables 3, y tables 3, one per slice; z symbols in, one per slice in
        assert transfers.count("d2h") == 3 + 3 + slices
        assert transfers.count("h2d") == 1 + slices
        assert len(enc["strings"][0]) == len(enc["strings"][1]) == 2  # one per sample


@pytest.mark.parametrize("portable", [False, True], ids=["float32", "portable"])
def test_encode_decode_with_a_model_on_fake_cuda(models, portable, monkeypatch) -> None:
    """:func:`dcae.encode` / :func:`dcae.decode` with the model on the device:
    the image goes to the model's device, and only the documented copies
    come back (here as zeros: the decoded image is black)."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8))
    with fake_cuda(models["small-vr"], monkeypatch) as (model, transfers):
        data = dcae.encode(img, model=model, quality=2.5, portable=portable)
        out = dcae.decode(data, model=model)
    assert all(dev == FAKE for _, dev, _ in transfers.log)
    assert out.size == img.size and out.mode == "RGB"
    assert dcae.codec.read_stream(data).portable is portable


def test_compress_z_hat_is_the_decoders_in_value_and_layout() -> None:
    """``z_hat`` made on the device when compressing equals, bit for bit and in
    memory layout, what the decoder rebuilds from the strings: ``h_s`` then runs
    the same kernels on both sides (a channels-last ``z``, as a convolution may
    return it, once made the side parameters differ by an ulp and the strings
    fail their checks)."""
    eb = EntropyBottleneck(8).eval()
    eb.update(force=True)
    z = (torch.randn(2, 8, 5, 7) * 4).to(memory_format=torch.channels_last)
    strings, z_hat = bottleneck_compress(eb, z)
    decoded = bottleneck_decompress(eb, strings, (5, 7))
    assert z_hat.is_contiguous() and decoded.is_contiguous()
    assert torch.equal(z_hat, decoded)
