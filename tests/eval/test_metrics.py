"""dcae.eval.metrics: PSNR, MS-SSIM, bpp and Bjontegaard deltas on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcae.eval.metrics import (
    bd_psnr,
    bd_rate,
    bpp_from_bytes,
    bpp_from_likelihoods,
    ms_ssim,
    ms_ssim_db,
    psnr,
)

METHODS = ("cubic", "pchip")

# A realistic PSNR curve (bpp, dB), deliberately given in decreasing rate order.
RATES = np.array([0.811, 0.593, 0.426, 0.292, 0.175, 0.109])
PSNRS = np.array([37.87, 36.11, 34.41, 32.68, 30.74, 29.24])


# ---------------------------------------------------------------- PSNR


def test_psnr_known_value():
    a = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    b = torch.full_like(a, 0.1)  # MSE = 0.01 -> 20 dB at data range 1
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a * 255, b * 255, data_range=255) == pytest.approx(20.0, abs=1e-9)
    # Half the pixels off by 0.2: MSE = 0.02
    c = a.clone()
    c[..., :4] = 0.2
    assert psnr(a, c) == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-9)


def test_psnr_identical_is_inf_and_errors():
    a = torch.rand(3, 5, 5)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:, :4])
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=0)
    with pytest.raises(ValueError, match="NaN"):
        psnr(a, torch.full_like(a, float("nan")))


# ---------------------------------------------------------------- MS-SSIM


def _smooth_image(seed: int, size=(2, 3, 176, 192)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(size[0], size[1], size[2] // 8, size[3] // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=size[2:], mode="bilinear", align_corners=False)


def test_ms_ssim_identical_is_one():
    x = _smooth_image(0)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(x[0], x[0]) == pytest.approx(1.0, abs=1e-12)  # (c, h, w) input


def test_ms_ssim_decreases_with_noise():
    x = _smooth_image(1)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    values = [ms_ssim(x, x + s * noise) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(v1 > v2 for v1, v2 in zip(values, values[1:])), values
    assert 0 < values[-1] < values[0] < 1


def test_ms_ssim_data_range_invariance():
    x = _smooth_image(3)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert ms_ssim(x * 255, y * 255, data_range=255) == pytest.approx(ms_ssim(x, y), abs=1e-10)


def test_ms_ssim_matches_pytorch_msssim():
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    for seed, size in ((4, (1, 3, 176, 200)), (5, (2, 3, 199, 163))):  # odd sizes: padding
        x = _smooth_image(seed, size)
        y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(
            0, 1
        )
        ref = pytorch_msssim.ms_ssim(x.double(), y.double(), data_range=1.0, size_average=True)
        assert ms_ssim(x, y) == pytest.approx(float(ref), abs=1e-6)  # float32 window there


def test_ms_ssim_errors():
    x = torch.rand(1, 3, 160, 300)
    with pytest.raises(ValueError, match="larger than 160"):
        ms_ssim(x, x)
    with pytest.raises(ValueError, match="shape"):
        ms_ssim(torch.rand(1, 3, 170, 170), torch.rand(1, 3, 170, 171))
    with pytest.raises(ValueError, match="expected images"):
        ms_ssim(torch.rand(170, 170), torch.rand(170, 170))
    y = torch.rand(1, 1, 170, 170)
    with pytest.raises(ValueError, match="NaN"):
        ms_ssim(y, torch.full_like(y, float("nan")))


def test_ms_ssim_db():
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(1.0) == math.inf
    np.testing.assert_allclose(ms_ssim_db([0.9, 0.999]), [10.0, 30.0])
    with pytest.raises(ValueError):
        ms_ssim_db(1.5)
    with pytest.raises(ValueError):
        ms_ssim_db(float("nan"))


# ---------------------------------------------------------------- bpp


def test_bpp_from_likelihoods():
    lk = {"y": torch.full((1, 4, 2, 2), 0.5), "z": torch.full((1, 2, 1, 1), 0.25)}
    # 16 symbols at 1 bit + 2 symbols at 2 bits = 20 bits over 10 pixels
    assert bpp_from_likelihoods(lk, 10) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bpp_from_likelihoods(lk, 0)
    with pytest.raises(ValueError):
        bpp_from_likelihoods({}, 10)
    with pytest.raises(ValueError, match="NaN"):
        bpp_from_likelihoods({"y": torch.tensor([float("nan")])}, 10)


def test_bpp_from_likelihoods_matches_model_forward(small_model):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = small_model(x)
    expected = sum(float(torch.log(v).sum()) for v in out["likelihoods"].values()) / (
        -math.log(2) * 64 * 64
    )
    assert bpp_from_likelihoods(out["likelihoods"], 64 * 64) == pytest.approx(expected, rel=1e-6)


def test_bpp_from_bytes():
    assert bpp_from_bytes(1000, 768 * 512) == pytest.approx(8000 / (768 * 512))
    assert bpp_from_bytes(0, 10) == 0.0
    with pytest.raises(ValueError):
        bpp_from_bytes(-1, 10)
    with pytest.raises(ValueError):
        bpp_from_bytes(10, 0)


# ---------------------------------------------------------------- Bjontegaard


@pytest.mark.parametrize("method", METHODS)
def test_bd_identical_curves_are_zero(method):
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_scaled_rates(method):
    assert bd_rate(RATES, PSNRS, 0.8 * RATES, PSNRS, method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, 1.5 * RATES, PSNRS, method) == pytest.approx(50.0, abs=1e-9)
    # Swapping the roles inverts the rate ratio: 1/0.8 - 1 = +25%
    assert bd_rate(0.8 * RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(25.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_shifted_linear_curve(method):
    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    dist = 30 + 3 * np.log2(rates / 0.1)  # linear in log-rate
    assert bd_psnr(rates, dist, rates, dist + 0.5, method) == pytest.approx(0.5, abs=1e-9)
    assert bd_psnr(rates, dist + 0.5, rates, dist, method) == pytest.approx(-0.5, abs=1e-9)
    # On a linear curve +0.5 dB at 3 dB per octave is a rate factor 2^(-0.5/3).
    expected = 100 * (2 ** (-0.5 / 3) - 1)
    assert bd_rate(rates, dist, rates, dist + 0.5, method) == pytest.approx(expected, abs=1e-9)


def test_bd_methods_agree_on_smooth_curve():
    test_psnr = PSNRS + 0.3 + 0.2 * np.log(RATES)
    cubic = bd_rate(RATES, PSNRS, RATES, test_psnr, "cubic")
    pchip = bd_rate(RATES, PSNRS, RATES, test_psnr, "pchip")
    assert cubic < 0 and pchip < 0
    assert cubic == pytest.approx(pchip, abs=0.5)


def test_bd_pchip_matches_scipy_integral():
    interpolate = pytest.importorskip("scipy.interpolate")
    test_rates = RATES * np.array([0.7, 0.8, 0.85, 0.9, 0.75, 0.95])
    test_psnr = PSNRS + np.array([0.1, -0.1, 0.2, 0.0, 0.05, 0.3])
    lo, hi = max(PSNRS.min(), test_psnr.min()), min(PSNRS.max(), test_psnr.max())
    ints = []
    for r, d in ((RATES, PSNRS), (test_rates, test_psnr)):
        o = np.argsort(d)
        ints.append(interpolate.PchipInterpolator(d[o], np.log(r[o])).integrate(lo, hi))
    expected = 100 * (math.exp((ints[1] - ints[0]) / (hi - lo)) - 1)
    got = bd_rate(RATES, PSNRS, test_rates, test_psnr, "pchip")
    assert got == pytest.approx(expected, abs=1e-9)


def test_bd_cubic_matches_vceg_m33_formula():
    # The classic implementation: polyfit of ln R against PSNR, polyint, average.
    test_rates = RATES * np.array([0.7, 0.8, 0.85, 0.9, 0.75, 0.95])
    test_psnr = PSNRS + np.array([0.1, -0.1, 0.2, 0.0, 0.05, 0.3])
    p1 = np.polyfit(PSNRS, np.log(RATES), 3)
    p2 = np.polyfit(test_psnr, np.log(test_rates), 3)
    lo, hi = max(PSNRS.min(), test_psnr.min()), min(PSNRS.max(), test_psnr.max())
    i1, i2 = np.polyint(p1), np.polyint(p2)
    avg = (np.polyval(i2, hi) - np.polyval(i2, lo) - np.polyval(i1, hi) + np.polyval(i1, lo)) / (
        hi - lo
    )
    got = bd_rate(RATES, PSNRS, test_rates, test_psnr, "cubic")
    assert got == pytest.approx(100 * (math.exp(avg) - 1), abs=1e-8)


@st.composite
def monotone_curves(draw):
    n = draw(st.integers(4, 9))
    rate_steps = draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n))
    dist_steps = draw(st.lists(st.floats(0.05, 3.0), min_size=n, max_size=n))
    start = draw(st.floats(0.01, 1.0))
    rates = start * np.exp(np.cumsum(rate_steps))
    dist = 20.0 + np.cumsum(dist_steps)
    return rates, dist


@settings(max_examples=60, deadline=None)
@given(
    curve=monotone_curves(),
    factor=st.floats(0.3, 3.0),
    method=st.sampled_from(METHODS),
)
@example(  # a narrow PSNR range far from 0: lost digits before the fit stayed scaled
    curve=(np.exp([1.0, 2.0, 2.5, 3.0]), np.array([21.0, 21.0625, 21.1875, 21.3125])),
    factor=0.5,
    method="cubic",
)
def test_bd_rate_property_rate_scaling(curve, factor, method):
    rates, dist = curve
    got = bd_rate(rates, dist, factor * rates, dist, method)
    assert got == pytest.approx(100 * (factor - 1), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(curve=monotone_curves(), shift=st.floats(-2.0, 2.0), method=st.sampled_from(METHODS))
def test_bd_psnr_property_shift(curve, shift, method):
    rates, dist = curve
    assert bd_psnr(rates, dist, rates, dist + shift, method) == pytest.approx(shift, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(curve=monotone_curves(), data=st.data(), method=st.sampled_from(METHODS))
def test_bd_rate_invariant_to_point_order(curve, data, method):
    rates, dist = curve
    perm = np.array(data.draw(st.permutations(range(rates.size))))
    test_rates, test_dist = 0.9 * rates, dist + 0.1
    a = bd_rate(rates, dist, test_rates, test_dist, method)
    b = bd_rate(rates[perm], dist[perm], test_rates[perm], test_dist[perm], method)
    assert a == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize("fn", [bd_rate, bd_psnr])
def test_bd_errors(fn):
    with pytest.raises(ValueError, match="at least 4 points"):
        fn(RATES[:3], PSNRS[:3], RATES, PSNRS)
    with pytest.raises(ValueError, match="at least 4 points"):
        fn(RATES, PSNRS, RATES[:3], PSNRS[:3])
    bad = PSNRS.copy()
    bad[2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fn(RATES, bad, RATES, PSNRS)
    nonmono = PSNRS.copy()
    nonmono[[1, 2]] = nonmono[[2, 1]]
    with pytest.raises(ValueError, match="not monotone"):
        fn(RATES, PSNRS, RATES, nonmono)
    with pytest.raises(ValueError, match="positive"):
        fn(-RATES, PSNRS, RATES, PSNRS)
    with pytest.raises(ValueError, match="distortion values"):
        fn(RATES, PSNRS[:-1], RATES, PSNRS)
    with pytest.raises(ValueError, match="method"):
        fn(RATES, PSNRS, RATES, PSNRS, method="linear")


def test_bd_non_overlapping_curves():
    with pytest.raises(ValueError, match="overlap in quality"):
        bd_rate(RATES, PSNRS, RATES, PSNRS + 20)
    with pytest.raises(ValueError, match="overlap in rate"):
        bd_psnr(RATES, PSNRS, RATES * 100, PSNRS)
