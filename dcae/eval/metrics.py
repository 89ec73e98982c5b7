"""Image-quality and rate metrics, and Bjontegaard deltas.

* :func:`psnr`, :func:`ms_ssim` (and :func:`ms_ssim_db`) compare images;
* :func:`bpp_from_likelihoods` (the model's estimate) and
  :func:`bpp_from_bytes` (real files) measure rate;
* :func:`bd_rate` and :func:`bd_psnr` compare two rate-distortion curves as in
  Bjontegaard's VCEG-M33 note (``method="cubic"``) or with piecewise cubic
  Hermite interpolation as in VCEG-AL22 and the JVET tools (``method="pchip"``).

Everything here is plain torch / numpy; no SciPy, no pytorch-msssim.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MS_SSIM_WEIGHTS",
    "bd_psnr",
    "bd_rate",
    "bpp_from_bytes",
    "bpp_from_likelihoods",
    "ms_ssim",
    "ms_ssim_per_sample",
    "ms_ssim_db",
    "psnr",
]

#: Per-scale exponents of Wang, Simoncelli and Bovik, "Multiscale structural
#: similarity for image quality assessment" (2003), finest scale first.
MS_SSIM_WEIGHTS: Tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03

ArrayLike = Union[Sequence[float], np.ndarray]
#: the values of one RD curve (rates or qualities)
Seq = ArrayLike


def _as_image_pair(a: Tensor, b: Tensor, differentiable: bool = False) -> Tuple[Tensor, Tensor]:
    """Both as tensors of one shape: float64 and detached (metrics), or as
    given with their graph (``differentiable``, training losses)."""
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        raise ValueError("empty images")
    if differentiable:
        dtype = torch.promote_types(a.dtype, torch.float32)
        return a.to(dtype), b.to(dtype)
    return a.detach().to(torch.float64), b.detach().to(torch.float64)


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB.

    The MSE is taken over every element (batch, channels and pixels), as
    CompressAI's ``eval_model`` does for one image. Identical inputs give
    ``inf``.

    Args:
        a: an image tensor (any shape).
        b: a tensor of the same shape.
        data_range: the peak value (1.0 for ``[0, 1]`` images, 255 for 8-bit).
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    a, b = _as_image_pair(a, b)
    mse = float((a - b).pow(2).mean())
    if math.isnan(mse):
        raise ValueError("images contain NaN")
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(_WIN_SIZE, dtype=dtype, device=device) - _WIN_SIZE // 2
    g = torch.exp(-(coords**2) / (2 * _WIN_SIGMA**2))
    return g / g.sum()


def _blur(x: Tensor, win: Tensor) -> Tensor:
    """Separable Gaussian filter, 'valid' borders, every channel alike.

    A weighted sum of shifted views (11 multiply-adds per pass): on CPU this
    is ~10x faster than a grouped ``conv2d``, which PyTorch runs as one slow
    convolution per channel.
    """
    k = win.numel()
    h, w = x.shape[-2:]
    rows = sum(win[i] * x[..., i : w - k + 1 + i] for i in range(k))
    return sum(win[i] * rows[..., i : h - k + 1 + i, :] for i in range(k))


def _ssim_and_cs(x: Tensor, y: Tensor, win: Tensor, data_range: float) -> Tuple[Tensor, Tensor]:
    """Per-channel mean SSIM and contrast-structure term, shape ``(n, c)``."""
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu_x, mu_y, e_xx, e_yy, e_xy = (_blur(m, win) for m in (x, y, x * x, y * y, x * y))
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx, sigma_yy, sigma_xy = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    cs_map = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim_per_sample(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Multi-scale SSIM (Wang et al., 2003) of each image pair, averaged over
    channels: a differentiable tensor ``(n,)`` (the training loss uses it).

    Five scales with the weights :data:`MS_SSIM_WEIGHTS`, an 11x11 Gaussian
    window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, 'valid' filtering and
    2x2 average pooling between scales (odd sizes padded by one), i.e. the
    definition used by CompressAI's evaluation (through pytorch-msssim)::

        MS-SSIM = prod_{j<5} relu(cs_j)^w_j * relu(ssim_5)^w_5

    Args:
        a: images ``(n, c, h, w)`` or ``(c, h, w)``; both sides at least 161
            pixels, so that the coarsest scale still holds one window.
        b: images of the same shape.
        data_range: the peak value (1.0 for ``[0, 1]`` images, 255 for 8-bit).

    Raises:
        ValueError: different shapes, wrong rank, images too small, NaNs.
    """
    return _ms_ssim_values(*_as_image_pair(a, b, differentiable=True), data_range)


def _ms_ssim_values(a: Tensor, b: Tensor, data_range: float) -> Tensor:
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.dim() != 4:
        raise ValueError(f"expected images (n, c, h, w) or (c, h, w), got {tuple(a.shape)}")
    levels = len(MS_SSIM_WEIGHTS)
    min_side = (_WIN_SIZE - 1) * 2 ** (levels - 1)
    if min(a.shape[-2:]) <= min_side:
        raise ValueError(
            f"MS-SSIM needs images larger than {min_side} pixels on each side, "
            f"got {a.shape[-2]}x{a.shape[-1]}"
        )
    if torch.isnan(a).any() or torch.isnan(b).any():
        raise ValueError("images contain NaN")
    win = _gaussian_window(a.dtype, a.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=a.dtype, device=a.device)
    cs_levels = []
    for level in range(levels):
        ssim_pc, cs_pc = _ssim_and_cs(a, b, win, data_range)
        if level < levels - 1:
            cs_levels.append(torch.relu(cs_pc))
            padding = [s % 2 for s in a.shape[-2:]]
            a = F.avg_pool2d(a, kernel_size=2, padding=padding)
            b = F.avg_pool2d(b, kernel_size=2, padding=padding)
    values = torch.stack([*cs_levels, torch.relu(ssim_pc)], dim=0)  # (levels, n, c)
    per_channel = torch.prod(values ** weights.view(-1, 1, 1), dim=0)
    return per_channel.mean(dim=1)


def ms_ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """Multi-scale SSIM (Wang et al., 2003), averaged over batch and channels.

    Five scales with the weights :data:`MS_SSIM_WEIGHTS`, an 11x11 Gaussian
    window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, 'valid' filtering and
    2x2 average pooling between scales (odd sizes padded by one); see
    :func:`ms_ssim_per_sample` for the arguments and errors (this is the mean
    of its values, as a float).
    """
    return float(_ms_ssim_values(*_as_image_pair(a, b), data_range).mean())


def ms_ssim_db(value: Union[float, ArrayLike]) -> Union[float, np.ndarray]:
    """MS-SSIM in decibels, ``-10 log10(1 - value)`` (``inf`` for 1).

    Accepts a number or an array; returns the same kind.
    """
    v = np.asarray(value, dtype=np.float64)
    if np.isnan(v).any():
        raise ValueError("MS-SSIM value is NaN")
    if (v > 1).any():
        raise ValueError(f"MS-SSIM values cannot exceed 1, got {value}")
    with np.errstate(divide="ignore"):
        out = -10.0 * np.log10(1.0 - v)
    return float(out) if out.ndim == 0 else out


def _check_num_pixels(num_pixels: int) -> None:
    if isinstance(num_pixels, bool) or not float(num_pixels) > 0:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")


def bpp_from_likelihoods(likelihoods: Mapping[str, Tensor], num_pixels: int) -> float:
    """Estimated bits per pixel ``sum(-log2 p) / num_pixels`` over every latent.

    Args:
        likelihoods: the ``"likelihoods"`` dict of a CompressAI model's
            ``forward`` (e.g. ``{"y": ..., "z": ...}``).
        num_pixels: pixels of the image(s), ``n * h * w`` for a batch.
    """
    _check_num_pixels(num_pixels)
    if not isinstance(likelihoods, Mapping) or not likelihoods:
        raise ValueError("likelihoods must be a non-empty dict of tensors")
    bits = 0.0
    for name, lk in likelihoods.items():
        lk = torch.as_tensor(lk).detach().to(torch.float64)
        if torch.isnan(lk).any() or (lk < 0).any():
            raise ValueError(f"likelihoods[{name!r}] has NaN or negative values")
        bits += float(-torch.log2(lk).sum())
    return bits / num_pixels


def bpp_from_bytes(n_bytes: int, num_pixels: int) -> float:
    """Real bits per pixel ``8 * n_bytes / num_pixels`` of a file or bit stream."""
    _check_num_pixels(num_pixels)
    if n_bytes < 0:
        raise ValueError(f"n_bytes must be non-negative, got {n_bytes}")
    return 8.0 * n_bytes / num_pixels


# ---------------------------------------------------------------- Bjontegaard

_MIN_POINTS = 4
_METHODS = ("cubic", "pchip")


def _curve(rate: ArrayLike, dist: ArrayLike, which: str) -> Tuple[np.ndarray, np.ndarray]:
    """Validated ``(log rate, distortion)`` sorted by rate."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    d = np.asarray(dist, dtype=np.float64).ravel()
    if r.shape != d.shape:
        raise ValueError(f"{which} curve: {r.size} rates but {d.size} distortion values")
    if r.size < _MIN_POINTS:
        raise ValueError(
            f"{which} curve: Bjontegaard deltas need at least {_MIN_POINTS} points, got {r.size}"
        )
    if not (np.isfinite(r).all() and np.isfinite(d).all()):
        raise ValueError(f"{which} curve: rates and distortions must be finite (no NaN/inf)")
    if (r <= 0).any():
        raise ValueError(f"{which} curve: rates must be positive")
    order = np.argsort(r, kind="stable")
    r, d = r[order], d[order]
    if not ((np.diff(r) > 0).all() and (np.diff(d) > 0).all()):
        raise ValueError(
            f"{which} curve is not monotone: quality must increase strictly with rate "
            f"(rates {r.tolist()}, distortion {d.tolist()})"
        )
    return np.log(r), d


def _overlap(x1: np.ndarray, x2: np.ndarray, what: str) -> Tuple[float, float]:
    lo = max(x1.min(), x2.min())
    hi = min(x1.max(), x2.max())
    if not hi > lo:
        raise ValueError(f"the two curves do not overlap in {what}")
    return float(lo), float(hi)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives of the monotone piecewise cubic Hermite
    interpolant (the same as SciPy's ``PchipInterpolator``)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = np.sign(delta[:-1]) * np.sign(delta[1:]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[1:-1] = np.where(same_sign, harmonic, 0.0)

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        s = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(s) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(s) > 3 * abs(m0):
            return 3 * m0
        return float(s)

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` (inside ``[x[0], x[-1]]``) of the
    piecewise cubic Hermite interpolant through ``(x, y)``."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        delta = (y[k + 1] - y[k]) / h
        # y(t) = c0 + c1 t + c2 t^2 + c3 t^3 with t = x - x[k]
        c = (
            y[k],
            d[k],
            (3 * delta - 2 * d[k] - d[k + 1]) / h,
            (d[k] + d[k + 1] - 2 * delta) / h**2,
        )
        antiderivative = np.polynomial.Polynomial(c).integ()
        total += float(antiderivative(b - x[k]) - antiderivative(a - x[k]))
    return total


def _mean_difference(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, method: str, what: str
) -> float:
    """Mean of ``f2 - f1`` over the overlap of the x ranges, where ``f_i``
    interpolates ``y_i(x_i)``."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    lo, hi = _overlap(x1, x2, what)
    if method == "cubic":
        integrals = []
        for x, y in ((x1, y1), (x2, y2)):
            # integrate in the fit's scaled domain: converting to plain power
            # coefficients first loses digits when x is far from 0 (PSNR ~ 30)
            antiderivative = np.polynomial.Polynomial.fit(x, y, 3).integ()
            integrals.append(float(antiderivative(hi) - antiderivative(lo)))
        int1, int2 = integrals
    else:
        # x must increase for the Hermite pieces; sort (y then follows).
        o1, o2 = np.argsort(x1), np.argsort(x2)
        int1 = _pchip_integral(x1[o1], y1[o1], lo, hi)
        int2 = _pchip_integral(x2[o2], y2[o2], lo, hi)
    return (int2 - int1) / (hi - lo)


def bd_rate(
    rate_anchor: Seq, dist_anchor: Seq, rate_test: Seq, dist_test: Seq, method: str = "cubic"
) -> float:
    """Bjontegaard delta rate: the mean rate difference of the test curve
    against the anchor at equal quality, in percent (negative = the test
    codec saves bits).

    Log-rate is interpolated as a function of distortion (PSNR, or MS-SSIM in
    dB) for both curves and integrated over the distortion range they share::

        BD-rate = 100 * (exp(mean_{D in overlap}(ln R_test(D) - ln R_anchor(D))) - 1)

    Args:
        rate_anchor: rates (bpp, bytes...; any positive unit, the same for both
            curves) of the anchor, in any order.
        dist_anchor: the anchor's quality at those rates (higher = better).
        rate_test: rates of the tested codec.
        dist_test: its quality.
        method: ``"cubic"``: least-squares polynomial of order 3 (Bjontegaard,
            VCEG-M33, 2001); ``"pchip"``: piecewise cubic Hermite interpolation
            (Bjontegaard, VCEG-AL22, 2008; the JVET/CTC variant), integrated
            exactly.

    Raises:
        ValueError: fewer than 4 points, NaN/inf, non-positive rates, a curve
            whose quality does not increase strictly with rate, curves that do
            not overlap in quality, or an unknown method.
    """
    lr_a, d_a = _curve(rate_anchor, dist_anchor, "anchor")
    lr_t, d_t = _curve(rate_test, dist_test, "test")
    mean_log_diff = _mean_difference(d_a, lr_a, d_t, lr_t, method, "quality")
    return 100.0 * math.expm1(mean_log_diff)


def bd_psnr(
    rate_anchor: Seq, dist_anchor: Seq, rate_test: Seq, dist_test: Seq, method: str = "cubic"
) -> float:
    """Bjontegaard delta quality: the mean quality difference of the test curve
    against the anchor at equal rate (dB when the distortion is PSNR; positive
    = the test codec is better).

    Distortion is interpolated as a function of log-rate for both curves and
    integrated over the log-rate range they share. Arguments and errors as in
    :func:`bd_rate`.
    """
    lr_a, d_a = _curve(rate_anchor, dist_anchor, "anchor")
    lr_t, d_t = _curve(rate_test, dist_test, "test")
    return _mean_difference(lr_a, d_a, lr_t, d_t, method, "rate")
