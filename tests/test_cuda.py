"""CUDA: what a user does first on a GPU (tests marked ``cuda``, skipped
without one by ``conftest.py``).

``DCAEModel.to("cuda")`` then ``forward``/``compress``/``decompress`` (exact
round trip, batch > 1), every attention backend in float32 (TF32 off) against
the reference backend, fast mode in float16 and bfloat16, ``dcae train`` with
AMP (bfloat16) and the auxiliary optimizer, :func:`dcae.encode` /
:func:`dcae.decode` with a model on the GPU (the device is the model's),
files crossing between CUDA and CPU (decoded, or refused with
:class:`~dcae.DecodingError`, never silently wrong; portable files always
decoded), and ``torch.compile`` of the transforms.  ``benchmarks/gpu_check.py``
runs these with the rest of the GPU measurements.
"""

from __future__ import annotations

import copy
import csv
import inspect
import math

import numpy as np
import pytest
import torch
from PIL import Image

import dcae
from dcae import DecodingError
from dcae.format.pixels import image_to_tensor, tensor_to_uint8
from dcae.layers.attention import BACKENDS
from dcae.layers.fast import fast_mode, tf32

pytestmark = pytest.mark.cuda

#: float32 tolerance between attention backends for one transform (TF32 off)
ATOL = 1e-4


def no_tf32():
    """Full float32 matmuls and convolutions inside the block."""
    return tf32(False)


def use_backend(name: str, model: torch.nn.Module):
    """``dcae.attention_backend`` for ``model`` where the API takes a model."""
    if len(inspect.signature(dcae.attention_backend).parameters) > 1:
        return dcae.attention_backend(name, model)
    return dcae.attention_backend(name)


@pytest.fixture(scope="module")
def cuda_model(small_model):
    """A copy of the session's ``small`` model on the GPU (the CPU one stays)."""
    return copy.deepcopy(small_model).to("cuda")


def smooth_images(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random content, so that a random-weight codec is not pure noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, max(1, h // 8), max(1, w // 8), generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear")
    return (x + 0.02 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)


def photo(h: int, w: int, seed: int = 0) -> Image.Image:
    x = smooth_images(1, h, w, seed)
    return Image.fromarray(tensor_to_uint8(x).numpy())


@pytest.mark.parametrize("batch, h, w", [(1, 72, 88), (3, 64, 64), (2, 23, 41)])
def test_model_to_cuda_round_trip_is_exact(cuda_model, batch, h, w):
    x = smooth_images(batch, h, w, seed=h).cuda()
    with torch.no_grad():
        fwd = cuda_model(x)
        enc = cuda_model.compress(x)
        dec = cuda_model.decompress(enc["strings"], enc["shape"])
    assert dec["x_hat"].device.type == "cuda" and dec["x_hat"].shape == x.shape
    assert all(len(s) == batch for s in enc["strings"])
    assert torch.equal(dec["x_hat"], fwd["x_hat"].clamp(0, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_in_fp32_and_round_trip_on_cuda(cuda_model, backend):
    """Each transform within ``ATOL`` of the reference backend (compared part by
    part: a full forward can flip a rounding), and the round trip exact."""
    x = smooth_images(2, 80, 112, seed=5).cuda()
    em = cuda_model.entropy_model
    ctx = torch.randn(2, em.context_channels(1), 5, 7, device="cuda")
    with no_tf32(), torch.no_grad():
        with use_backend("reference", cuda_model):
            y_ref = cuda_model.g_a(x)
            x_ref = cuda_model.g_s(y_ref)
            f_ref = em.cross_attention[1](ctx, em.dictionary)
        with use_backend(backend, cuda_model):
            torch.testing.assert_close(cuda_model.g_a(x), y_ref, atol=ATOL, rtol=0)
            torch.testing.assert_close(cuda_model.g_s(y_ref), x_ref, atol=ATOL, rtol=0)
            f = em.cross_attention[1](ctx, em.dictionary)
            torch.testing.assert_close(f, f_ref, atol=ATOL, rtol=0)
            fwd = cuda_model(x)
            enc = cuda_model.compress(x)
            dec = cuda_model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], fwd["x_hat"].clamp(0, 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fast_mode_on_cuda(cuda_model, dtype):
    """Fast mode round trip is exact against fast-mode ``forward``; a fast-mode
    file decodes in float32 mode (symbols verified) close to the fast decode."""
    model = copy.deepcopy(cuda_model)
    x = smooth_images(2, 64, 96, seed=7).cuda()
    fast_mode(model, dtype)
    with torch.no_grad():
        fwd = model(x)
        enc = model.compress(x)
        a = model.decompress(enc["strings"], enc["shape"])["x_hat"]
        b = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.equal(a, fwd["x_hat"].clamp(0, 1))
    img = photo(64, 96, seed=8)
    data = dcae.encode(img, model=model)
    fast_pixels = np.asarray(dcae.decode(data, model=model), dtype=np.int16)
    fast_mode(model, enabled=False)
    exact_pixels = np.asarray(dcae.decode(data, model=model), dtype=np.int16)
    assert np.abs(exact_pixels - fast_pixels).mean() < 2.0


def test_train_with_amp_and_aux_optimizer_on_cuda(tmp_path):
    """``dcae train --amp`` runs on the GPU (bfloat16 autocast where supported),
    steps the auxiliary optimizer, and the trained model codes exactly."""
    from dcae.config import TrainConfig
    from dcae.training.loop import train

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        photo(96, 96, seed=i).save(data / f"{i}.png")
    cfg = TrainConfig(
        data=str(data),
        output=str(tmp_path / "run"),
        preset="small",
        steps=3,
        batch_size=2,
        patch_size=64,
        warmup=1,
        val_split=0,
        log_every=1,
        save_every=3,
        amp=True,
    )
    before = dcae.DCAEModel("small").latent_codec.hyper.entropy_bottleneck.quantiles
    model = train(cfg)
    assert next(model.parameters()).device.type == "cuda"
    with open(tmp_path / "run" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["aux"])) for r in rows)
    quantiles = model.latent_codec.hyper.entropy_bottleneck.quantiles
    assert not torch.equal(quantiles.detach().cpu(), before.detach())  # aux optimizer stepped
    model.eval()
    model.update(force=True)
    x = smooth_images(1, 64, 80, seed=9).cuda()
    with torch.no_grad():
        fwd = model(x)
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], fwd["x_hat"].clamp(0, 1))


def test_encode_decode_with_a_model_on_cuda(cuda_model):
    """The device is the model's: ``dcae.encode(img, model=model.to("cuda"))``;
    the file decodes to the 8-bit eval-mode ``forward`` reconstruction."""
    img = photo(70, 90, seed=11)
    data = dcae.encode(img, model=cuda_model)
    decoded = np.asarray(dcae.decode(data, model=cuda_model))
    x, _ = image_to_tensor(img)
    with torch.no_grad():
        x_hat = cuda_model(x.cuda())["x_hat"].cpu()
    assert np.array_equal(decoded, tensor_to_uint8(x_hat).numpy())


@pytest.mark.parametrize("direction", ["cuda->cpu", "cpu->cuda"])
def test_cross_device_stream_decodes_or_raises(small_model, cuda_model, direction):
    """Across devices the entropy parameters differ in the last bits: a file
    either decodes (close to the same-device decode) or raises
    :class:`DecodingError`; it never decodes to garbage silently."""
    enc_model, dec_model = (
        (cuda_model, small_model) if direction == "cuda->cpu" else (small_model, cuda_model)
    )
    img = photo(96, 128, seed=13)
    data = dcae.encode(img, model=enc_model, portable=False)  # float32 coding
    same = np.asarray(dcae.decode(data, model=enc_model), dtype=np.int16)
    try:
        other = np.asarray(dcae.decode(data, model=dec_model), dtype=np.int16)
    except DecodingError:
        return
    assert np.abs(other - same).mean() < 0.5


@pytest.mark.parametrize("direction", ["cuda->cpu", "cpu->cuda"])
def test_portable_file_crosses_devices(small_model, cuda_model, direction):
    """Portable coding promises decoding on any device: the symbols always
    decode, and only ``g_s`` (float32 on either device) separates the images."""
    enc_model, dec_model = (
        (cuda_model, small_model) if direction == "cuda->cpu" else (small_model, cuda_model)
    )
    img = photo(96, 128, seed=19)
    data = dcae.encode(img, model=enc_model, portable=True)
    same = np.asarray(dcae.decode(data, model=enc_model), dtype=np.int16)
    other = np.asarray(dcae.decode(data, model=dec_model), dtype=np.int16)
    assert np.abs(other - same).max() <= 2


def test_torch_compile_transforms_on_cuda(cuda_model):
    torch._dynamo.reset()
    x = smooth_images(1, 72, 88, seed=17).cuda()
    with no_tf32(), torch.no_grad():
        y = cuda_model.g_a(x)
        g_a = torch.compile(cuda_model.g_a, fullgraph=True, dynamic=False)
        torch.testing.assert_close(g_a(x), y, atol=ATOL, rtol=0)
        g_s = torch.compile(cuda_model.g_s, fullgraph=True, dynamic=False)
        torch.testing.assert_close(g_s(y), cuda_model.g_s(y), atol=ATOL, rtol=0)


def test_cli_portable_file_is_the_same_bytes_on_cuda_and_cpu(tmp_path):
    """``dcae compress --device cuda`` and ``--device cpu`` write the same
    portable file (the shipped model), and each decodes on the other device."""
    from dcae.cli import main

    src = tmp_path / "a.png"
    photo(96, 128, seed=3).save(src)
    outs = {}
    for device in ("cuda", "cpu"):
        outs[device] = tmp_path / f"{device}.dcae"
        assert main(["compress", str(src), "-o", str(outs[device]), "-q", "--device", device]) == 0
    assert outs["cuda"].read_bytes() == outs["cpu"].read_bytes()
    for device, other in (("cuda", "cpu"), ("cpu", "cuda")):
        dst = tmp_path / f"{device}_on_{other}.png"
        args = ["decompress", str(outs[device]), "-o", str(dst), "-q", "--device", other]
        assert main(args) == 0
        assert Image.open(dst).size == (128, 96)
