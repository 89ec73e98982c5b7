"""Rate-distortion evaluation: dcae models, Pillow JPEG/WebP and published anchors.

The engine behind ``dcae eval``::

    images ──► dcae model(s): compress ─► bytes ─► decompress ──┐
       │                                                        ├─► per-image records
       └────► Pillow JPEG / WebP: save ─► bytes ─► open ────────┘        │ mean per point
                                                                         ▼
    anchors/ (CompressAI JSON, paper RD data) ────────────────────►  RD curves
                                                                         │
                       results JSON (CompressAI format), CSV, BD-rate table, RD plot

Every codec is measured the way CompressAI's ``eval_model`` measures one:
the reconstruction is rounded to 8 bits, PSNR and MS-SSIM are computed on
RGB, the rate is the real number of bytes (for dcae: every ``y`` and ``z``
string) times 8 over the pixels, and per-point values are means over images.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import DCAEError
from .metrics import bd_psnr, bd_rate, bpp_from_bytes, bpp_from_likelihoods, ms_ssim, psnr

__all__ = [
    "BDResult",
    "Curve",
    "EvaluationReport",
    "ImageRecord",
    "IMAGE_SUFFIXES",
    "bd_table",
    "collect_images",
    "evaluate_model",
    "evaluate_pillow",
    "find_anchors_dir",
    "format_bd_markdown",
    "format_summary_markdown",
    "load_anchors",
    "mean_curve",
    "plot_rd",
    "run_evaluation",
    "write_per_image_csv",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
_MIN_SIDE = 161  # MS-SSIM needs more than 160 pixels per side (5 scales, 11-tap window)
_PAPER_RD_FILE = "dcae-paper-rd.json"
_PAPER_KEYS = {"kodak": "Kodak", "clic": "CLIC", "tecnick": "Tecnick"}
#: Anchors drawn in the RD plot next to the curves measured in the run.
PLOT_ANCHORS = ("DCAE (paper)", "VTM")

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


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
    ms_ssim: float
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


@dataclass
class EvaluationReport:
    """What :func:`run_evaluation` measured and wrote."""

    records: List[ImageRecord]
    curves: List[Curve]
    anchors: List[Curve]
    bd: List[BDResult]
    method: str
    files: Dict[str, Path]


# ---------------------------------------------------------------- images


def collect_images(directory: Union[str, os.PathLike], limit: Optional[int] = None) -> List[Path]:
    """Image files directly in ``directory``, sorted by name (first ``limit``)."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a directory")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        files = files[:limit]
    if not files:
        raise DCAEError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {d}")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            rgb = np.array(img.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise DCAEError(f"cannot read image {path}: {e}") from e
    h, w = rgb.shape[:2]
    if min(h, w) < _MIN_SIDE:
        raise DCAEError(
            f"{path} is {w}x{h}; evaluation needs at least {_MIN_SIDE} pixels per side (MS-SSIM)"
        )
    return rgb


def _to_tensor(rgb: np.ndarray) -> Tensor:
    """``(1, 3, H, W)`` float in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255)


def _quantise(x: Tensor) -> Tensor:
    """8-bit rounding, as the decoder's output would be written to a file."""
    return x.detach().float().clamp(0, 1).mul(255).round().div(255).cpu()


def _quality(x: Tensor, x_hat: Tensor) -> Tuple[float, float]:
    x, x_hat = _quantise(x), _quantise(x_hat)
    return psnr(x, x_hat), ms_ssim(x, x_hat)


def _n_bytes(strings: Any) -> int:
    """Bytes in a (nested) list of byte strings."""
    if isinstance(strings, (bytes, bytearray)):
        return len(strings)
    return sum(_n_bytes(s) for s in strings)


# ---------------------------------------------------------------- codecs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    images: Sequence[Path],
    codec: str,
    point: str,
    device: Union[str, torch.device] = "cpu",
    estimate_rate: bool = False,
    log: Log = _silent,
) -> List[ImageRecord]:
    """Compress and decompress each image with ``model`` (real entropy coding).

    The rate counts every string of ``model.compress`` (``y`` slices and
    ``z``); times are wall-clock seconds of ``compress`` and ``decompress``
    after one warm-up call on a crop of the first image.

    Args:
        model: a :class:`~dcae.DCAEModel` (or a CompressAI model that accepts
            the image size as it is) with CDF tables (``update()`` done).
        images: image files.
        codec: codec name stored in the records.
        point: rate-point label stored in the records.
        device: where to run the model.
        estimate_rate: also run ``forward`` and store the likelihood bpp.
        log: progress callback.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    records = []
    for i, path in enumerate(images):
        x = _to_tensor(_read_rgb(path)).to(device)
        if i == 0:  # warm-up: allocator, kernels, lazily built tables
            warm = x[..., :_MIN_SIDE, :_MIN_SIDE]
            out = model.compress(warm)
            model.decompress(out["strings"], out["shape"])
        _sync(device)
        t0 = time.perf_counter()
        enc = model.compress(x)
        _sync(device)
        t1 = time.perf_counter()
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
        _sync(device)
        t2 = time.perf_counter()
        h, w = x.shape[-2:]
        x_hat = x_hat[..., :h, :w]
        n_bytes = _n_bytes(enc["strings"])
        p, m = _quality(x, x_hat)
        est = None
        if estimate_rate:
            est = bpp_from_likelihoods(model(x)["likelihoods"], h * w)
        rec = ImageRecord(
            codec, point, path.stem, int(w), int(h), n_bytes, bpp_from_bytes(n_bytes, h * w),
            p, m, t1 - t0, t2 - t1, est,
        )  # fmt: skip
        records.append(rec)
        log(_progress_line(rec, i + 1, len(images)))
    return records


def evaluate_pillow(
    images: Sequence[Path],
    fmt: str,
    qualities: Iterable[int],
    log: Log = _silent,
) -> List[ImageRecord]:
    """Encode and decode each image with Pillow at each quality.

    Pillow's defaults otherwise (JPEG: 4:2:0 chroma subsampling, baseline;
    WebP: lossy, ``method=4``).

    Args:
        images: image files.
        fmt: ``"JPEG"`` or ``"WEBP"``.
        qualities: Pillow ``quality`` values (1..100).
        log: progress callback.
    """
    fmt = fmt.upper()
    qualities = _check_qualities(fmt, qualities)
    codec = _pillow_name(fmt)
    pixels = [_read_rgb(p) for p in images]
    records = []
    for q in qualities:
        for i, (path, rgb) in enumerate(zip(images, pixels)):
            img = Image.fromarray(rgb)
            buf = io.BytesIO()
            t0 = time.perf_counter()
            img.save(buf, format=fmt, quality=int(q))
            t1 = time.perf_counter()
            data = buf.getvalue()
            with Image.open(io.BytesIO(data)) as dec:
                rec_rgb = np.array(dec.convert("RGB"))
            t2 = time.perf_counter()
            h, w = rgb.shape[:2]
            p, m = _quality(_to_tensor(rgb), _to_tensor(rec_rgb))
            rec = ImageRecord(
                codec, f"q{q}", path.stem, w, h, len(data), bpp_from_bytes(len(data), h * w),
                p, m, t1 - t0, t2 - t1,
            )  # fmt: skip
            records.append(rec)
            log(_progress_line(rec, i + 1, len(images)))
    return records


def _check_qualities(fmt: str, qualities: Iterable[int]) -> List[int]:
    if fmt not in ("JPEG", "WEBP"):
        raise ValueError(f"unsupported format {fmt!r}; use JPEG or WEBP")
    qualities = [int(q) for q in qualities]
    for q in qualities:
        if not 1 <= q <= 100:
            raise ValueError(f"{fmt} quality must be in 1..100, got {q}")
    return qualities


def _pillow_name(fmt: str) -> str:
    return {"JPEG": "JPEG (Pillow)", "WEBP": "WebP (Pillow)"}[fmt]


def _progress_line(rec: ImageRecord, i: int, n: int) -> str:
    return (
        f"{rec.codec} {rec.point} [{i:>{len(str(n))}}/{n}] {rec.image}: "
        f"{rec.bpp:.4f} bpp, {rec.psnr:.2f} dB, MS-SSIM {rec.ms_ssim:.4f}, "
        f"enc {rec.encoding_time:.2f} s, dec {rec.decoding_time:.2f} s"
    )


def mean_curve(records: Sequence[ImageRecord], name: str, description: str = "") -> Curve:
    """Per-point means over images of ``records`` (one codec), sorted by rate."""
    if not records:
        raise ValueError(f"no records for {name}")
    by_point: Dict[str, List[ImageRecord]] = {}
    for r in records:
        by_point.setdefault(r.point, []).append(r)
    rows = []
    for point, recs in by_point.items():

        def mean(attr: str, recs: List[ImageRecord] = recs) -> float:
            return float(np.mean([getattr(r, attr) for r in recs]))

        rows.append(
            (
                mean("bpp"), mean("psnr"), mean("ms_ssim"),
                mean("encoding_time"), mean("decoding_time"), point,
            )
        )  # fmt: skip
    rows.sort()
    bpp, ps, ms, enc, dec, points = (list(c) for c in zip(*rows))
    return Curve(name, bpp, ps, ms, enc, dec, points, description, source="this run")


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
            line = (
                f"| {c.name} | {point} | {c.bpp[i]:.4f} | {c.psnr[i]:.3f} | "
                f"{c.ms_ssim[i]:.5f} | {ms_db[i]:.3f} | {c.encoding_time[i]:.3f} | "
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
            ms_db = -10 * math.log10(1 - r.ms_ssim) if r.ms_ssim < 1 else math.inf
            w.writerow(
                [
                    r.codec, r.point, r.image, r.width, r.height, r.n_bytes, f"{r.bpp:.6f}",
                    f"{r.psnr:.4f}", f"{r.ms_ssim:.6f}", f"{ms_db:.4f}",
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
    """Write a PSNR / MS-SSIM (dB) versus bpp plot of ``curves`` (solid,
    measured) and ``anchors`` (dashed, published) to ``path``.

    The rate axis stops at twice the largest rate of the first curve (at
    least 1 bpp) so that long JPEG/anchor tails do not squash it.

    Returns:
        ``False`` (with a warning) if matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed; skipping the RD plot", stacklevel=2)
        return False
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
    fig.savefig(path, dpi=120)
    return True


def _slug(name: str) -> str:
    s = "".join(ch.lower() if ch.isalnum() else "-" for ch in name)
    return "-".join(filter(None, s.split("-")))


def run_evaluation(
    image_dir: Union[str, os.PathLike],
    output: Union[str, os.PathLike],
    models: Sequence[Tuple[str, Callable[[], torch.nn.Module]]],
    name: str = "dcae",
    jpeg_qualities: Sequence[int] = (),
    webp_qualities: Sequence[int] = (),
    anchors_dir: Optional[Union[str, os.PathLike]] = None,
    anchor_dataset: str = "kodak",
    method: str = "cubic",
    plot: bool = True,
    limit: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    estimate_rate: bool = False,
    log: Log = _silent,
) -> EvaluationReport:
    """Evaluate dcae rate points, Pillow JPEG/WebP and anchors; write the report.

    Writes to ``output``: ``<codec>.json`` per codec (CompressAI results
    format), ``per_image.csv``, ``bd_rate.md`` and ``bd_rate.json``,
    ``summary.md`` (means per point and BD table) and ``rd.png``.

    Args:
        image_dir: folder of images (e.g. the 24 Kodak images).
        output: output folder (created).
        models: ``(point label, loader)`` per rate point of the dcae curve;
            each loader returns a model ready to ``compress`` and is called
            once, when that point is evaluated.
        name: name of the dcae curve.
        jpeg_qualities: Pillow JPEG qualities (empty: no JPEG).
        webp_qualities: Pillow WebP qualities (empty: no WebP).
        anchors_dir: published anchors (see :func:`load_anchors`); ``None``:
            none.
        anchor_dataset: which dataset's anchors to use.
        method: Bjontegaard interpolation, ``"cubic"`` or ``"pchip"``.
        plot: write ``rd.png`` (needs matplotlib).
        limit: evaluate only the first ``limit`` images.
        device: device of the dcae models.
        estimate_rate: also record the likelihood-estimated rate of dcae.
        log: progress callback.
    """
    if method not in ("cubic", "pchip"):
        raise ValueError(f"method must be 'cubic' or 'pchip', got {method!r}")
    _check_qualities("JPEG", jpeg_qualities)
    _check_qualities("WEBP", webp_qualities)
    images = collect_images(image_dir, limit)
    for p in images:  # fail early on unreadable or too small images
        _read_rgb(p)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    anchors = load_anchors(anchors_dir, anchor_dataset) if anchors_dir is not None else []
    log(f"{len(images)} images from {image_dir}; {len(anchors)} published anchors")

    records: List[ImageRecord] = []
    curves: List[Curve] = []
    if models:
        dcae_records = []
        for point, loader in models:
            model = loader()
            dcae_records += evaluate_model(model, images, name, point, device, estimate_rate, log)
            del model
        records += dcae_records
        curves.append(mean_curve(dcae_records, name, "dcae: real entropy coding"))
    from PIL import __version__ as pil_version

    for fmt, qualities in (("JPEG", jpeg_qualities), ("WEBP", webp_qualities)):
        if qualities:
            recs = evaluate_pillow(images, fmt, qualities, log)
            records += recs
            desc = f"Pillow {pil_version} {fmt}, default settings"
            curves.append(mean_curve(recs, _pillow_name(fmt), desc))

    files: Dict[str, Path] = {}
    for c in curves:
        path = out / f"{_slug(c.name)}.json"
        path.write_text(json.dumps(c.to_compressai(), indent=2) + "\n")
        files[c.name] = path
    files["csv"] = out / "per_image.csv"
    write_per_image_csv(records, files["csv"])

    tests = curves[:1] if models else []
    comparisons = [c for c in curves if c not in tests] + anchors
    bd = bd_table(tests, comparisons, method)
    bd_md = format_bd_markdown(bd, method)
    files["bd_md"] = out / "bd_rate.md"
    files["bd_md"].write_text(bd_md)
    files["bd_json"] = out / "bd_rate.json"
    files["bd_json"].write_text(
        json.dumps({"method": method, "rows": [r.__dict__ for r in bd]}, indent=2) + "\n"
    )
    summary = (
        f"# Evaluation on {len(images)} images of {image_dir}\n\n"
        f"## Means per rate point\n\n{format_summary_markdown(curves, records)}\n"
        f"## Bjontegaard deltas\n\n{bd_md}"
    )
    files["summary"] = out / "summary.md"
    files["summary"].write_text(summary)
    if plot and curves:
        plotted = [a for a in anchors if a.name in PLOT_ANCHORS]
        png = out / "rd.png"
        title = f"{len(images)} images of {Path(image_dir).name}"
        if plot_rd(curves, plotted, png, title=title):
            files["plot"] = png
    return EvaluationReport(records, curves, anchors, bd, method, files)
