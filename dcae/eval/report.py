"""Rate-distortion results: curves, published anchors, Bjontegaard tables,
summaries, per-image CSV and RD plots.

:mod:`dcae.evaluate` measures codecs and produces :class:`ImageRecord` s;
this module turns them into :class:`Curve` s (:func:`mean_curve`), loads the
published anchors (:func:`load_anchors`), compares them (:func:`bd_table`)
and writes the reports.  Everything here works on numbers alone, so results
JSON from other runs or other tools can be compared the same way.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .metrics import bd_psnr, bd_rate

__all__ = [
    "BDResult",
    "Curve",
    "ImageRecord",
    "PLOT_ANCHORS",
    "bd_table",
    "find_anchors_dir",
    "format_bd_markdown",
    "format_summary_markdown",
    "load_anchors",
    "mean_curve",
    "plot_rd",
    "rd_figure",
    "write_per_image_csv",
]

_PAPER_RD_FILE = "dcae-paper-rd.json"
_PAPER_KEYS = {"kodak": "Kodak", "clic": "CLIC", "tecnick": "Tecnick"}
#: Anchors drawn in the RD plot next to the curves measured in the run.
PLOT_ANCHORS = ("DCAE (paper)", "VTM")


@dataclass
class ImageRecord:
    """Measurements of one codec at one rate point on one image."""

    codec: str
    point: str
    image: str
    width: int
    height: int
    n_bytes: int
    bpp: float
    psnr: float
    ms_ssim: Optional[float]  # None: not measured (dcae eval --no-ms-ssim)
    encoding_time: float
    decoding_time: float
    bpp_estimate: Optional[float] = None


@dataclass
class Curve:
    """A rate-distortion curve: one value per rate point, sorted by rate.

    ``ms_ssim`` is linear (not dB), as in CompressAI's results files; a curve
    may lack PSNR or MS-SSIM (``None``).
    """

    name: str
    bpp: List[float]
    psnr: Optional[List[float]] = None
    ms_ssim: Optional[List[float]] = None
    encoding_time: Optional[List[float]] = None
    decoding_time: Optional[List[float]] = None
    points: Optional[List[str]] = None
    description: str = ""
    source: str = ""

    def metric(self, metric: str) -> Optional[np.ndarray]:
        """``"psnr"`` in dB or ``"ms-ssim"`` in dB, ``None`` if absent."""
        if metric == "psnr":
            return None if self.psnr is None else np.asarray(self.psnr, dtype=np.float64)
        if metric == "ms-ssim":
            if self.ms_ssim is None:
                return None
            with np.errstate(divide="ignore"):
                return -10.0 * np.log10(1.0 - np.asarray(self.ms_ssim, dtype=np.float64))
        raise ValueError(f"unknown metric {metric!r}; use 'psnr' or 'ms-ssim'")

    def to_compressai(self) -> Dict[str, Any]:
        """The results dict of ``compressai.utils.eval_model`` (read by
        ``compressai.utils.plot``)."""
        results: Dict[str, Any] = {"bpp": list(self.bpp)}
        for key, values in (
            ("psnr-rgb", self.psnr),
            ("ms-ssim-rgb", self.ms_ssim),
            ("encoding_time", self.encoding_time),
            ("decoding_time", self.decoding_time),
        ):
            if values is not None:
                results[key] = list(values)
        out: Dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "results": results,
        }
        if self.points is not None:
            out["points"] = list(self.points)
        return out

    @classmethod
    def from_compressai(cls, data: Mapping[str, Any], source: str = "") -> Curve:
        """A curve from a CompressAI results dict, points sorted by rate."""
        results = data.get("results", data)
        if "bpp" not in results:
            raise ValueError(f"{source or 'results'}: no 'bpp' list")
        bpp = [float(v) for v in results["bpp"]]
        order = sorted(range(len(bpp)), key=bpp.__getitem__)

        def pick(key: str) -> Optional[List[float]]:
            if key not in results:
                return None
            values = results[key]
            if len(values) != len(bpp):
                raise ValueError(f"{source or 'results'}: {key!r} and 'bpp' differ in length")
            return [float(values[i]) for i in order]

        return cls(
            name=str(data.get("name", Path(source).stem if source else "?")),
            bpp=[bpp[i] for i in order],
            psnr=pick("psnr-rgb"),
            ms_ssim=pick("ms-ssim-rgb"),
            encoding_time=pick("encoding_time"),
            decoding_time=pick("decoding_time"),
            description=str(data.get("description", "")),
            source=source,
        )


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


def mean_curve(records: Sequence[ImageRecord], name: str, description: str = "") -> Curve:
    """Per-point means over images of ``records`` (one codec), sorted by rate."""
    if not records:
        raise ValueError(f"no records for {name}")
    by_point: Dict[str, List[ImageRecord]] = {}
    for r in records:
        by_point.setdefault(r.point, []).append(r)
    rows = []
    for point, recs in by_point.items():

        def mean(attr: str, recs: List[ImageRecord] = recs) -> Optional[float]:
            values = [getattr(r, attr) for r in recs]
            return None if any(v is None for v in values) else float(np.mean(values))

        rows.append(
            (
                mean("bpp"), mean("psnr"), mean("ms_ssim"),
                mean("encoding_time"), mean("decoding_time"), point,
            )
        )  # fmt: skip
    rows.sort(key=lambda row: row[0])
    bpp, ps, ms, enc, dec, points = (list(c) for c in zip(*rows))
    ms_ssim = None if any(v is None for v in ms) else ms  # unmeasured at some point
    return Curve(name, bpp, ps, ms_ssim, enc, dec, points, description, source="this run")


# ---------------------------------------------------------------- anchors


def find_anchors_dir(start: Optional[Path] = None) -> Optional[Path]:
    """``$DCAE_ANCHORS``, else the first ``shared/anchors`` in the current
    directory or one of its parents; ``None`` if there is none."""
    env = os.environ.get("DCAE_ANCHORS")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "shared" / "anchors").is_dir():
            return d / "shared" / "anchors"
    return None


def load_anchors(directory: Union[str, os.PathLike], dataset: str = "kodak") -> List[Curve]:
    """Published RD curves of ``dataset`` in ``directory``.

    Reads ``<directory>/<dataset>/*.json`` (CompressAI results format) and the
    DCAE paper's RD data ``<directory>/dcae-paper-rd.json`` (``{"Kodak":
    {"bpp", "PSNR"}, "Kodak_MS-SSIM": {"bpp", "MS_SSIM" (dB)}, ...}``), whose
    curves are named ``"DCAE (paper)"`` (MSE models, PSNR) and
    ``"DCAE MS-SSIM models (paper)"``.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"anchors directory {d} does not exist")
    curves = []
    paper = d / _PAPER_RD_FILE
    key = _PAPER_KEYS.get(dataset.lower(), dataset)
    if paper.is_file():
        data = json.loads(paper.read_text())
        src = f"{paper.name}[{key}]"
        if key in data:
            curves.append(
                Curve.from_compressai(
                    {
                        "name": "DCAE (paper)",
                        "results": {"bpp": data[key]["bpp"], "psnr-rgb": data[key]["PSNR"]},
                    },
                    source=src,
                )
            )
        ms_key = f"{key}_MS-SSIM"
        if ms_key in data:
            db = np.asarray(data[ms_key]["MS_SSIM"], dtype=np.float64)
            curves.append(
                Curve.from_compressai(
                    {
                        "name": "DCAE MS-SSIM models (paper)",
                        "results": {
                            "bpp": data[ms_key]["bpp"],
                            "ms-ssim-rgb": (1.0 - 10.0 ** (-db / 10.0)).tolist(),
                        },
                    },
                    source=f"{paper.name}[{ms_key}]",
                )
            )
    sub = d / dataset.lower()
    if sub.is_dir():
        for f in sorted(sub.glob("*.json")):
            try:
                curves.append(Curve.from_compressai(json.loads(f.read_text()), source=f.name))
            except (ValueError, KeyError, TypeError) as e:
                warnings.warn(f"skipping anchor {f}: {e}", stacklevel=2)
    return curves


# ---------------------------------------------------------------- BD table


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
