"""Bit-exact decoding: same process, another process with another thread
count, and the eval-mode forward reconstruction; drift is caught by the
per-slice symbol checksums."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from dcae.codec import decode, decode_stream, encode
from dcae.errors import DecodingError
from dcae.format.container import unpack
from dcae.format.padding import coding_padding, pad_image
from dcae.format.pixels import image_to_tensor, tensor_to_uint8
from dcae.zoo.checkpoints import save_checkpoint


def photo_like(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, size=(h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def forward_pixels(model, img: Image.Image, policy: str = "minimal") -> np.ndarray:
    """The eval-mode ``forward`` reconstruction, quantised like :func:`decode`."""
    x, _ = image_to_tensor(img)
    h, w = x.shape[2:]
    # the image as dcae.encode codes it: edge-replicated, centred (#23)
    _, _, (left, right, top, bottom) = coding_padding(model, h, w, policy)
    with torch.inference_mode():
        x_hat = model.eval()(pad_image(x, (left, right, top, bottom)))["x_hat"]
    return tensor_to_uint8(x_hat[..., top : top + h, left : left + w]).numpy()


@pytest.mark.parametrize("h, w", [(1, 1), (23, 41), (64, 64), (80, 33)])
def test_decode_equals_forward_reconstruction(small_model, h, w):
    img = photo_like(h, w)
    # the eval forward is the model's default (float32) coding; portable files
    # (dcae.encode's default) snap the means to a grid: within 2^-7 of it
    decoded = np.asarray(decode(encode(img, model=small_model, portable=False), model=small_model))
    assert decoded.shape == (h, w, 3)
    assert np.array_equal(decoded, forward_pixels(small_model, img))
    portable = np.asarray(decode(encode(img, model=small_model), model=small_model))
    assert np.abs(portable.astype(int) - decoded.astype(int)).mean() < 1.0


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np, torch
    torch.set_num_threads(1)
    from dcae.codec import decode, encode
    from dcae.zoo.loading import load_checkpoint
    ckpt, src, dcae_file, out_pixels, out_file = sys.argv[1:]
    model = load_checkpoint(ckpt)
    img = decode(open(dcae_file, "rb").read(), model=model)
    np.save(out_pixels, np.asarray(img))
    open(out_file, "wb").write(encode(src, model=model, portable=False))
    print(torch.get_num_threads())
    """
)


def test_cross_process_decoding_is_bit_exact(small_model, tmp_path, threads):
    torch.set_num_threads(2)
    ckpt = tmp_path / "small.pt"
    save_checkpoint(small_model, ckpt)
    img = photo_like(72, 100, seed=3)
    img.save(tmp_path / "src.png")
    data = encode(img, model=small_model, portable=False)
    (tmp_path / "a.dcae").write_bytes(data)
    here = np.asarray(decode(data, model=small_model))

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(ckpt),
            str(tmp_path / "src.png"),
            str(tmp_path / "a.dcae"),
            str(tmp_path / "there.npy"),
            str(tmp_path / "there.dcae"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1" and torch.get_num_threads() == 2
    there = np.load(tmp_path / "there.npy")
    assert there.dtype == np.uint8 and np.array_equal(there, here)
    assert np.array_equal(here, forward_pixels(small_model, img))
    # the encoder is deterministic too: same file from a 1-thread process
    assert (tmp_path / "there.dcae").read_bytes() == data


def test_thread_count_does_not_change_the_file(small_model, threads):
    img = photo_like(48, 70, seed=5)
    torch.set_num_threads(1)
    one = encode(img, model=small_model)
    torch.set_num_threads(2)
    assert encode(img, model=small_model) == one


def test_numeric_drift_is_reported_with_the_slice(small_model):
    """A decoder whose entropy parameters differ from the encoder's (simulated
    by changing the last slice's scale network) fails on that slice, not with
    garbage.  (Symbols depend on the scales; the means only shift ``y_hat``.)"""
    stream = unpack(encode(photo_like(64, 64, seed=9), model=small_model))
    drifted = copy.deepcopy(small_model)
    last = len(drifted.entropy_model.scale_transforms) - 1
    with torch.no_grad():
        drifted.entropy_model.scale_transforms[last][-1].bias.add_(0.5)
    with pytest.raises(DecodingError, match=f"slice {last} of sample 0"):
        decode_stream(stream, drifted)
