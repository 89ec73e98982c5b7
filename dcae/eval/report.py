"""Rate-distortion reports: Bjontegaard tables, summaries, per-image CSV and
RD plots.

:mod:`dcae.eval.evaluate` measures codecs and produces
:class:`~dcae.eval.curves.ImageRecord` s, turned into
:class:`~dcae.eval.curves.Curve` s; this module compares curves with each
other and with the published anchors (:mod:`dcae.eval.anchors`)
(:func:`bd_table`) and writes the reports.  Everything here works on numbers
alone, so results JSON from other runs or other tools can be compared the
same way.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .curves import Curve, ImageRecord
from .metrics import bd_psnr, bd_rate

__all__ = [
    "BDResult",
    "PLOT_ANCHORS",
    "bd_table",
    "format_bd_markdown",
    "format_summary_markdown",
    "plot_rd",
    "rd_figure",
    "write_per_image_csv",
]

#: Anchors drawn in the RD plot next to the curves measured in the run.
PLOT_ANCHORS = ("DCAE (paper)", "VTM")


# ---------------------------------------------------------------- BD table


@dataclass
class BDResult:
    """Bjontegaard deltas of one test curve against one anchor.

    ``None`` values could not be computed; ``notes`` says why.
    """

    test: str
    anchor: str
    anchor_source: str
    bd_rate_psnr: Optional[float]
    bd_psnr: Optional[float]
    bd_rate_ms_ssim: Optional[float]
    notes: List[str] = field(default_factory=list)


def _bd(
    fn: Callable[..., float], anchor: Curve, test: Curve, metric: str, method: str
) -> Tuple[Optional[float], Optional[str]]:
    da, dt = anchor.metric(metric), test.metric(metric)
    if da is None or dt is None:
        return None, None
    try:
        return fn(anchor.bpp, da, test.bpp, dt, method=method), None
    except ValueError as e:
        return None, f"{'PSNR' if metric == 'psnr' else 'MS-SSIM'}: {e}"


def bd_table(
    tests: Sequence[Curve], anchors: Sequence[Curve], method: str = "cubic"
) -> List[BDResult]:
    """BD-rate (PSNR and MS-SSIM in dB) and BD-PSNR of each test curve
    against each anchor; deltas that cannot be computed are ``None``."""
    rows = []
    for t in tests:
        for a in anchors:
            notes = []
            values = []
            for fn, metric in ((bd_rate, "psnr"), (bd_psnr, "psnr"), (bd_rate, "ms-ssim")):
                v, note = _bd(fn, a, t, metric, method)
                values.append(v)
                if note and note not in notes:
                    notes.append(note)
            rows.append(BDResult(t.name, a.name, a.source, *values, notes=notes))
    return rows


def _fmt(v: Optional[float], unit: str) -> str:
    return "n/a" if v is None else f"{v:+.2f}{unit}"


def format_bd_markdown(rows: Sequence[BDResult], method: str = "cubic") -> str:
    """A markdown table of :func:`bd_table` rows, grouped by test curve."""
    lines = []
    for test in dict.fromkeys(r.test for r in rows):
        lines += [
            f"BD deltas of **{test}** ({method} interpolation; negative BD-rate = {test} "
            "needs fewer bits)",
            "",
            "| anchor | source | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) |",
            "|---|---|---:|---:|---:|",
        ]
        notes: List[str] = []
        for r in rows:
            if r.test != test:
                continue
            lines.append(
                f"| {r.anchor} | {r.anchor_source} | {_fmt(r.bd_rate_psnr, ' %')} "
                f"| {_fmt(r.bd_psnr, ' dB')} | {_fmt(r.bd_rate_ms_ssim, ' %')} |"
            )
            for n in r.notes:  # a fault of the test curve is listed once, not per anchor
                note = f"- {test}: {n}" if ": test curve" in n else f"- {r.anchor}: {n}"
                if note not in notes:
                    notes.append(note)
        if notes:
            lines += ["", "Not computed:", "", *notes]
        lines.append("")
    return "\n".join(lines)


def format_summary_markdown(curves: Sequence[Curve], records: Sequence[ImageRecord]) -> str:
    """A markdown table of the mean values per codec and rate point."""
    est: Dict[Tuple[str, str], List[ImageRecord]] = {}
    for r in records:
        if r.bpp_estimate is not None:
            est.setdefault((r.codec, r.point), []).append(r)
    has_est = bool(est)
    head = "| codec | point | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | enc (s) | dec (s) |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|"
    if has_est:
        head += " estimated bpp | real / estimate |"
        sep += "---:|---:|"
    lines = [head, sep]
    for c in curves:
        ms_db = c.metric("ms-ssim")
        for i, point in enumerate(c.points or [str(i) for i in range(len(c.bpp))]):
            ms = "n/a | n/a" if c.ms_ssim is None else f"{c.ms_ssim[i]:.5f} | {ms_db[i]:.3f}"
            line = (
                f"| {c.name} | {point} | {c.bpp[i]:.4f} | {c.psnr[i]:.3f} | "
                f"{ms} | {c.encoding_time[i]:.3f} | "
                f"{c.decoding_time[i]:.3f} |"
            )
            if has_est:
                recs = est.get((c.name, point))
                if recs:
                    e = float(np.mean([r.bpp_estimate for r in recs]))
                    ratio = float(np.mean([r.bpp / r.bpp_estimate for r in recs]))
                    line += f" {e:.4f} | {100 * (ratio - 1):+.2f} % |"
                else:
                    line += " | |"
            lines.append(line)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- outputs


def write_per_image_csv(records: Sequence[ImageRecord], path: Union[str, os.PathLike]) -> None:
    """One row per codec, point and image."""
    fields = [
        "codec", "point", "image", "width", "height", "bytes", "bpp", "psnr", "ms_ssim",
        "ms_ssim_db", "encoding_time", "decoding_time", "bpp_estimate",
    ]  # fmt: skip
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in records:
            ms, ms_db = "", ""  # not measured
            if r.ms_ssim is not None:
                db = -10 * math.log10(1 - r.ms_ssim) if r.ms_ssim < 1 else math.inf
                ms, ms_db = f"{r.ms_ssim:.6f}", f"{db:.4f}"
            w.writerow(
                [
                    r.codec, r.point, r.image, r.width, r.height, r.n_bytes, f"{r.bpp:.6f}",
                    f"{r.psnr:.4f}", ms, ms_db,
                    f"{r.encoding_time:.4f}", f"{r.decoding_time:.4f}",
                    "" if r.bpp_estimate is None else f"{r.bpp_estimate:.6f}",
                ]
            )  # fmt: skip


def plot_rd(
    curves: Sequence[Curve],
    anchors: Sequence[Curve],
    path: Union[str, os.PathLike],
    title: str = "",
) -> bool:
    """Write :func:`rd_figure` of ``curves`` and ``anchors`` to ``path``.

    Returns:
        ``False`` (with a warning) if matplotlib is not installed.
    """
    try:
        fig = rd_figure(curves, anchors, title)
    except ImportError:
        warnings.warn("matplotlib is not installed; skipping the RD plot", stacklevel=2)
        return False
    fig.savefig(path, dpi=120)
    return True


def rd_figure(curves: Sequence[Curve], anchors: Sequence[Curve], title: str = "") -> Any:
    """A matplotlib ``Figure``: PSNR and MS-SSIM (dB) versus bpp of ``curves``
    (solid, measured) and ``anchors`` (dashed, published), one line per curve
    labelled with its name.

    The rate axis stops at twice the largest rate of the first curve (at
    least 1 bpp) so that long JPEG/AVIF/anchor tails do not squash it.

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x_max = max(1.0, 2.0 * max(curves[0].bpp)) if curves else 2.0
    for ax, metric, label in zip(axes, ("psnr", "ms-ssim"), ("PSNR (dB)", "MS-SSIM (dB)")):
        shown = []
        styled = [(c, "o-") for c in curves] + [(a, "s--") for a in anchors]
        for i, (c, style) in enumerate(styled):
            y = c.metric(metric)
            if y is None:
                continue
            ax.plot(c.bpp, y, style, color=f"C{i % 10}", label=c.name, markersize=4)
            x = np.asarray(c.bpp)
            shown.extend(y[(x <= x_max) & np.isfinite(y)].tolist())
        if shown:
            pad = 0.05 * (max(shown) - min(shown) + 1e-9)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.set_xlim(0, x_max)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
