"""Variable-rate models: real qualities, gains, the recorded quality, --target-bpp."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

import dcae
from dcae import DCAEModel
from dcae.cli import main
from dcae.codec import find_quality
from dcae.errors import DCAEError, DecodingError
from dcae.format.container import pack, unpack
from dcae.training.loss import RateDistortionLoss
from dcae.training.warm_start import variable_rate_from
from dcae.zoo import shipped
from dcae.zoo.checkpoints import save_checkpoint
from dcae.zoo.loading import load_checkpoint
from dcae.zoo.release import package_variable_rate


@pytest.fixture(scope="module")
def vr_model() -> DCAEModel:
    """The ``small-vr`` preset, random weights; gains spread as a warm start
    from lambda 0.0067 would set them, plus per-channel jitter."""
    torch.manual_seed(1)
    model = DCAEModel("small-vr").eval()
    with torch.no_grad():
        model.log_gain.add_(0.05 * torch.randn_like(model.log_gain))
    model.update(force=True)
    return model


def smooth_image(h: int = 96, w: int = 128, seed: int = 0) -> Image.Image:
    """Gradients and a few soft shapes: a photo-like rate, unlike noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], axis=-1) * 180 + 30
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(6, 25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img += blob * rng.uniform(-80, 80, size=3)
    img += rng.normal(0, 4, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


# ------------------------------------------------------------------- the model
def test_gains_interpolate_geometrically(vr_model):
    g3, ig3 = vr_model.gains(3.0)
    assert torch.equal(g3.flatten(), vr_model.log_gain[2].exp())
    assert torch.equal(ig3.flatten(), vr_model.log_inv_gain[2].exp())
    g, _ = vr_model.gains(3.25)
    g4, _ = vr_model.gains(4.0)
    expected = g3.flatten() ** 0.75 * g4.flatten() ** 0.25
    torch.testing.assert_close(g.flatten(), expected, rtol=1e-5, atol=0)
    assert vr_model.lambda_for(4.0) == pytest.approx(0.0067)
    assert vr_model.lambda_for(4.5) == pytest.approx(math.sqrt(0.0067 * 0.013))


def test_per_sample_qualities_match_one_at_a_time(vr_model):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    q = torch.tensor([1.0, 2.7, 7.9])
    with torch.no_grad():
        batched = vr_model(x, q)
        for i in range(3):
            one = vr_model(x[i : i + 1], float(q[i]))
            torch.testing.assert_close(batched["x_hat"][i], one["x_hat"][0])
            for k in ("y", "z"):
                torch.testing.assert_close(batched["likelihoods"][k][i], one["likelihoods"][k][0])


@pytest.mark.parametrize("bad", [0.999, 8.001, float("nan"), float("inf"), -1])
def test_out_of_range_quality_is_refused(vr_model, bad):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="outside this model's range"):
        vr_model.compress(x, quality=bad)
    with pytest.raises(ValueError, match="outside"):
        vr_model(x, bad)
    with pytest.raises(ValueError, match="outside"):
        dcae.encode(smooth_image(16, 16), model=vr_model, quality=bad)


@pytest.mark.parametrize("bad", ["3", True, [3.0]])
def test_non_numeric_quality_is_refused(vr_model, bad):
    with pytest.raises(TypeError, match="real number"):
        vr_model.compress(torch.rand(1, 3, 16, 16), quality=bad)


def test_single_rate_and_variable_rate_strings_do_not_mix(vr_model, small_model):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="single rate"):
        small_model.compress(x, quality=2.0)
    with torch.no_grad():
        single = small_model.compress(x)
        variable = vr_model.compress(x, quality=2.0)
    with pytest.raises(ValueError, match="no 'quality'"):
        vr_model.decompress(single["strings"], single["shape"])
    with pytest.raises(ValueError, match="variable-rate"):
        small_model.decompress(variable["strings"], variable["shape"])


def test_warm_start_codes_exactly_as_the_single_rate_model(small_model):
    net = variable_rate_from(small_model, dcae.config.VARIABLE_RATE_LAMBDAS, 0.0067).eval()
    net.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = small_model.compress(x)
        b = net.compress(x, quality=4.0)  # lambda 0.0067 is rate point 4
        # the same symbols and rANS payload; only the y checks differ, as they
        # bind the quality (#23)
        head = small_model.entropy_model.string_overhead
        (ya,), za = a["strings"][0], a["strings"][1]
        (yb,), zb = b["strings"][0], b["strings"][1]
        assert za == zb and ya[head:] == yb[head:] and ya[:head] != yb[:head]
        assert net.gains(2.0)[0].flatten()[0] == pytest.approx(math.sqrt(0.0018 / 0.0067))


def test_per_sample_lambdas_average_per_sample_losses(vr_model):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([1.5, 6.0])
    lam = vr_model.lambda_for(q)
    with torch.no_grad():
        both = RateDistortionLoss(1.0)(vr_model(x, q), x, lam)["loss"]
        each = [
            RateDistortionLoss(float(lam[i]))(vr_model(x[i : i + 1], float(q[i])), x[i : i + 1])
            for i in range(2)
        ]
    torch.testing.assert_close(both, (each[0]["loss"] + each[1]["loss"]) / 2)


# ------------------------------------------------------------------- the files
def test_rate_grows_strictly_with_quality(vr_model):
    img = smooth_image()
    # random weights: below quality 3 every symbol of this image is zero
    qualities = np.linspace(3, 8, 15)
    sizes = [len(dcae.encode(img, model=vr_model, quality=float(q))) for q in qualities]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes


def test_fractional_quality_is_recorded_exactly_and_used(vr_model):
    img = smooth_image(64, 80)
    q = 1 + 1 / 3
    data = dcae.encode(img, model=vr_model, quality=q, portable=False)  # == forward
    stream = unpack(data)
    assert stream.quality == q and stream.shape["quality"] == q
    assert data != dcae.encode(img, model=vr_model, quality=1.0)
    assert data != dcae.encode(img, model=vr_model, quality=2.0)
    decoded = np.asarray(dcae.decode(data, model=vr_model))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        x_hat = vr_model(x, q)["x_hat"].clamp(0, 1)
    expected = (x_hat[0] * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(decoded, expected)  # decoding needs only the file
    # the recorded quality decides the inverse gain, so the strings' checks
    # cover it: a rewritten quality is refused, never decoded otherwise (#23)
    shape = dict(stream.shape, quality=2.0)
    other = pack(dataclasses.replace(stream, quality=2.0, shape=shape))
    with pytest.raises(DecodingError, match="does not verify"):
        dcae.decode(other, model=vr_model)


def test_default_quality_of_an_instance(vr_model):
    x = torch.rand(1, 3, 32, 32)
    assert vr_model.default_quality == 4.5
    net = variable_rate_from(vr_model, vr_model.config.rate_lambdas, 0.0067)
    net.load_state_dict(vr_model.state_dict())
    net.eval()
    net.default_quality = 2.25
    with torch.no_grad():
        assert net.compress(x)["shape"]["quality"] == 2.25
    with pytest.raises(ValueError, match="outside"):
        net.default_quality = 0.5


@pytest.mark.parametrize("target", [0.4, 1.5])
def test_target_bpp_is_met_within_3_percent(vr_model, target):
    img = smooth_image()
    q, data = find_quality(img, target, model=vr_model)
    bpp = 8 * len(data) / (img.width * img.height)
    assert abs(bpp / target - 1) <= 0.03, (q, bpp)
    assert unpack(data).quality == q
    assert dcae.encode(img, model=vr_model, target_bpp=target) == data


def test_unreachable_target_bpp_is_refused(vr_model):
    img = smooth_image()
    with pytest.raises(DCAEError, match="out of reach.*quality 1 gives"):
        find_quality(img, 0.001, model=vr_model)
    with pytest.raises(DCAEError, match="out of reach.*quality 8 gives"):
        find_quality(img, 500.0, model=vr_model)
    with pytest.raises(ValueError, match="positive"):
        find_quality(img, -1.0, model=vr_model)
    with pytest.raises(ValueError, match="not both"):
        dcae.encode(img, model=vr_model, quality=2.0, target_bpp=0.5)


def test_target_bpp_needs_a_variable_rate_model(small_model):
    with pytest.raises(ValueError, match="single rate"):
        find_quality(smooth_image(32, 32), 0.5, model=small_model)


# --------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def vr_checkpoint(vr_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("vr") / "vr.pt"
    save_checkpoint(vr_model, path)
    return path


def test_cli_quality_and_target_bpp(vr_checkpoint, tmp_path, capsys):
    src = tmp_path / "a.png"
    smooth_image().save(src)
    out = tmp_path / "a.dcae"
    assert main(["compress", str(src), "-o", str(out), "--checkpoint", str(vr_checkpoint),
                 "--quality", "2.75"]) == 0  # fmt: skip
    assert unpack(out.read_bytes()).quality == 2.75
    assert "quality 2.75" in capsys.readouterr().out
    assert main(["decompress", str(out), "-o", str(tmp_path / "a2.png"),
                 "--checkpoint", str(vr_checkpoint)]) == 0  # fmt: skip
    out2 = tmp_path / "b.dcae"
    assert main(["compress", str(src), "-o", str(out2), "--checkpoint", str(vr_checkpoint),
                 "--target-bpp", "0.8"]) == 0  # fmt: skip
    bpp = 8 * out2.stat().st_size / (128 * 96)
    assert abs(bpp / 0.8 - 1) <= 0.03
    capsys.readouterr()
    code = main(["compress", str(src), "-o", str(tmp_path / "c.dcae"), "--checkpoint",
                 str(vr_checkpoint), "--quality", "9"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("dcae: error:") and "outside" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "c.dcae").exists()
    with pytest.raises(SystemExit):
        main(["compress", str(src), "--quality", "2", "--target-bpp", "0.5"])


# ------------------------------------------------------------ the shipped model
@pytest.mark.skipif(not shipped.available_qualities(), reason="no shipped weights")
def test_shipped_model_rate_grows_and_spans_the_range():
    lo, hi = shipped.quality_range()
    img = smooth_image(128, 192, seed=3)
    qualities = np.arange(lo, hi + 1e-9, 0.25)
    sizes = [len(dcae.encode(img, quality=float(q))) for q in qualities]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes
    net = shipped.load_pretrained(2.5)
    assert net.variable_rate and net.default_quality == 2.5
    assert shipped.load_pretrained().default_quality == shipped.default_quality()
    with pytest.raises(DCAEError, match="outside the shipped model's range"):
        shipped.load_pretrained(hi + 0.5)


def test_eval_sweeps_a_variable_rate_checkpoint(vr_checkpoint, tmp_path):
    import json

    src = tmp_path / "imgs"
    src.mkdir()
    smooth_image(176, 192).save(src / "a.png")
    out = tmp_path / "out"
    args = ["eval", str(src), "-o", str(out), "--checkpoint", str(vr_checkpoint), "--no-anchors",
            "--jpeg-qualities", "none", "--webp-qualities", "none", "--avif-qualities", "none",
            "--no-plot", "-q"]  # fmt: skip
    assert main([*args, "--qualities", "3,5.5"]) == 0
    curve = json.loads((out / "dcae.json").read_text())
    assert curve["points"] == ["q3", "q5.5"]
    bpp = curve["results"]["bpp"]
    assert bpp[0] < bpp[1]
    assert main([*args, "--qualities", "9"]) != 0  # outside the checkpoint's range


def test_a_variable_rate_state_dict_without_config_loads(vr_model):
    net = DCAEModel.from_state_dict(vr_model.state_dict())
    assert net.config.rate_lambdas == dcae.config.VARIABLE_RATE_LAMBDAS
    assert torch.equal(net.log_gain, vr_model.log_gain)
    three = DCAEModel(vr_model.config.replace(rate_lambdas=(0.001, 0.01, 0.1)))
    with pytest.raises(dcae.ModelMismatchError, match="lambdas are unknown"):
        DCAEModel.from_state_dict(three.state_dict())


# ------------------------------------------------------------ cutting the range
def test_first_rate_points_code_as_before_and_end_the_range(vr_model):
    cut = vr_model.first_rate_points(3)
    assert cut.quality_range == (1.0, 3.0)
    assert cut.config.rate_lambdas == vr_model.config.rate_lambdas[:3]
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for q in (1.0, 2.25, 3.0):  # qualities kept code exactly as before
            a, b = vr_model.compress(x, quality=q), cut.compress(x, quality=q)
            assert a["strings"] == b["strings"]
            assert torch.equal(
                cut.decompress(b["strings"], b["shape"])["x_hat"],
                vr_model.decompress(a["strings"], a["shape"])["x_hat"],
            )
        with pytest.raises(ValueError, match="outside this model's range"):
            cut.compress(x, quality=3.5)
    for bad in (1, 0, len(vr_model.config.rate_lambdas) + 1, 2.0, True):
        with pytest.raises(ValueError, match="count"):
            vr_model.first_rate_points(bad)


def test_package_variable_rate_can_end_the_range(vr_model, tmp_path):
    ckpt = tmp_path / "vr.pt"
    save_checkpoint(vr_model, ckpt)
    manifest = package_variable_rate(
        ckpt, tmp_path / "w", default_quality=2, rate_points=3, name="small-vr"
    )
    (entry,) = manifest["models"]
    assert entry["quality_range"] == [1.0, 3.0] and len(entry["lambdas"]) == 3
    model = load_checkpoint(tmp_path / "w" / entry["file"])
    assert model.quality_range == (1.0, 3.0)
