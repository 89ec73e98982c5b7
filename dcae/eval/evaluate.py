"""Rate-distortion evaluation: dcae models, Pillow JPEG/WebP/AVIF and published anchors.

The engine behind ``dcae eval``::

    images ──► dcae model(s): compress ─► bytes ─► decompress ──┐
       │                                                        ├─► per-image records
       └────► Pillow JPEG / WebP / AVIF: save ─► bytes ─► open ─┘        │ mean per point
                                                                         ▼
    anchors/ (CompressAI JSON, paper RD data) ────────────────────►  RD curves
                                                                         │
                       results JSON (CompressAI format), CSV, BD-rate table, RD plot

Every codec is measured the way CompressAI's ``eval_model`` measures one:
the reconstruction is rounded to 8 bits, PSNR and MS-SSIM are computed on
RGB, the rate is the real number of bytes (for dcae: every ``y`` and ``z``
string) times 8 over the pixels, and per-point values are means over images.

This module runs the codecs; :mod:`dcae.eval.report` turns the records into
curves, BD-rate tables, CSV and plots.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from PIL import __version__ as PIL_VERSION
from torch import Tensor

from ..errors import DCAEError
from ..format.images import IMAGE_SUFFIXES, image_files
from ..format.padding import coding_padding, pad_image
from ..format.pixels import rgb_to_tensor
from ..models.readiness import check_ready, eval_mode
from .anchors import load_anchors
from .curves import Curve, ImageRecord, mean_curve
from .measure import MS_SSIM_MIN_SIDE, Log, measure, progress_line, read_image, silent
from .metrics import bpp_from_bytes, bpp_from_likelihoods
from .pillow import (
    PILLOW_SETTINGS,
    check_qualities,
    describe_pillow,
    evaluate_pillow,
    pillow_name,
    pillow_supports,
)
from .report import (
    PLOT_ANCHORS,
    BDResult,
    bd_table,
    format_bd_markdown,
    format_summary_markdown,
    plot_rd,
    write_per_image_csv,
)

__all__ = ["EvaluationReport", "collect_images", "evaluate_model", "run_evaluation"]


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
    """Image files directly in ``directory``, sorted by name (first ``limit``):
    :func:`dcae.format.images.image_files`, refusing an empty folder."""
    files = image_files(directory, limit)
    if not files:
        raise DCAEError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


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
    log: Log = silent,
    ms_ssim: bool = True,
) -> List[ImageRecord]:
    """Compress and decompress each image with ``model`` (real entropy coding).

    The rate counts every string of ``model.compress`` (for DCAE: ``y`` and
    ``z``); times are wall-clock seconds of ``compress`` and ``decompress``
    after one warm-up call on a crop of the first image.  Images are padded
    as :func:`dcae.encode` pads them (DCAE: not at all; other models: centred
    zeros to a multiple of their ``downsampling_factor``, as CompressAI's
    ``eval_model``) and the reconstruction is cropped back.

    Args:
        model: a :class:`~dcae.DCAEModel` or any CompressAI ``CompressionModel``
            with CDF tables (``update(force=True)`` done).
        images: image files.
        codec: codec name stored in the records.
        point: rate-point label stored in the records.
        device: where to run the model.  A model elsewhere is copied there
            (``copy.deepcopy``); ``model`` itself is never moved.
        estimate_rate: also run ``forward`` and store the likelihood bpp.
        log: progress callback.

    ``model`` is run in eval mode and its training flag restored afterwards;
    nothing else of it changes.
    """
    check_ready(model)
    device = torch.device(device)
    own = next(iter(model.parameters()), None)
    if own is not None and own.device != device:
        model = copy.deepcopy(model).to(device)
    with eval_mode(model):
        return _evaluate(model, images, codec, point, device, estimate_rate, log, ms_ssim)


def _evaluate(
    model: torch.nn.Module,
    images: Sequence[Path],
    codec: str,
    point: str,
    device: torch.device,
    estimate_rate: bool,
    log: Log,
    ms_ssim: bool,
) -> List[ImageRecord]:
    def pad(x: Tensor) -> Tuple[Tensor, Tuple[int, int, int, int]]:
        _, _, padding = coding_padding(model, int(x.shape[2]), int(x.shape[3]))
        return pad_image(x, padding), padding

    records = []
    for i, path in enumerate(images):
        x = rgb_to_tensor(read_image(path, ms_ssim)).to(device)
        h, w = x.shape[-2:]
        x_in, (left, _, top, _) = pad(x)
        if i == 0:  # warm-up: allocator, kernels, lazily built tables
            warm, _ = pad(x[..., :MS_SSIM_MIN_SIDE, :MS_SSIM_MIN_SIDE])
            out = model.compress(warm)
            model.decompress(out["strings"], out["shape"])
        _sync(device)
        t0 = time.perf_counter()
        enc = model.compress(x_in)
        _sync(device)
        t1 = time.perf_counter()
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
        _sync(device)
        t2 = time.perf_counter()
        x_hat = x_hat[..., top : top + h, left : left + w]
        n_bytes = _n_bytes(enc["strings"])
        p, m = measure(x, x_hat, ms_ssim)
        est = None
        if estimate_rate:
            est = bpp_from_likelihoods(model(x_in)["likelihoods"], h * w)
        rec = ImageRecord(
            codec, point, path.stem, int(w), int(h), n_bytes, bpp_from_bytes(n_bytes, h * w),
            p, m, t1 - t0, t2 - t1, est,
        )  # fmt: skip
        records.append(rec)
        log(progress_line(rec, i + 1, len(images)))
    return records


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
    avif_qualities: Sequence[int] = (),
    webp_method: int = 6,
    avif_speed: int = 4,
    anchors_dir: Optional[Union[str, os.PathLike]] = None,
    anchor_dataset: str = "kodak",
    method: str = "cubic",
    plot: bool = True,
    limit: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    estimate_rate: bool = False,
    log: Log = silent,
    ms_ssim: bool = True,
) -> EvaluationReport:
    """Evaluate dcae rate points, Pillow JPEG/WebP/AVIF and anchors; write the report.

    Writes to ``output``: ``<codec>.json`` per codec (CompressAI results
    format, the encoder settings in ``description``), ``per_image.csv``,
    ``bd_rate.md`` and ``bd_rate.json``, ``summary.md`` (codec settings,
    means per point and BD table) and ``rd.png``.

    A format this Pillow cannot write (AVIF before Pillow 11.2, or a build
    without libavif) is skipped with a warning and a line in ``summary.md``.

    Args:
        image_dir: folder of images (e.g. the 24 Kodak images).
        output: output folder (created).
        models: ``(point label, loader)`` per rate point of the dcae curve;
            each loader returns a model ready to ``compress`` and is called
            once, when that point is evaluated.
        name: name of the dcae curve.
        jpeg_qualities: Pillow JPEG qualities (empty: no JPEG).
        webp_qualities: Pillow WebP qualities (empty: no WebP).
        avif_qualities: Pillow AVIF qualities (empty: no AVIF).
        webp_method: WebP ``method`` (0 fastest .. 6 best).
        avif_speed: AVIF ``speed`` (0 slowest and best .. 10 fastest).
        anchors_dir: published anchors (see :func:`load_anchors`); ``None``:
            none.
        anchor_dataset: which dataset's anchors to use.
        method: Bjontegaard interpolation, ``"cubic"`` or ``"pchip"``.
        plot: write ``rd.png`` (needs matplotlib).
        limit: evaluate only the first ``limit`` images.
        device: device of the dcae models.
        estimate_rate: also record the likelihood-estimated rate of dcae.
        log: progress callback.
        ms_ssim: measure MS-SSIM, which needs images of at least
            :data:`MS_SSIM_MIN_SIDE` (161) pixels per side; ``False``: PSNR and
            bpp only (MS-SSIM reported as n/a), for images of any size.
    """
    if method not in ("cubic", "pchip"):
        raise ValueError(f"method must be 'cubic' or 'pchip', got {method!r}")
    if webp_method not in range(7):
        raise ValueError(f"webp_method must be in 0..6, got {webp_method!r}")
    if avif_speed not in range(11):
        raise ValueError(f"avif_speed must be in 0..10, got {avif_speed!r}")
    sweeps = (
        ("JPEG", jpeg_qualities, PILLOW_SETTINGS["JPEG"]),
        ("WEBP", webp_qualities, {**PILLOW_SETTINGS["WEBP"], "method": webp_method}),
        ("AVIF", avif_qualities, {**PILLOW_SETTINGS["AVIF"], "speed": avif_speed}),
    )
    for fmt, qualities, _ in sweeps:
        check_qualities(fmt, qualities)
    images = collect_images(image_dir, limit)
    for p in images:  # fail early on unreadable or too small images
        read_image(p, ms_ssim)
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
            dcae_records += evaluate_model(
                model, images, name, point, device, estimate_rate, log, ms_ssim
            )
            del model
        records += dcae_records
        curves.append(mean_curve(dcae_records, name, f"{name}: real entropy coding"))
    skipped = []
    for fmt, qualities, options in sweeps:
        if not qualities:
            continue
        if not pillow_supports(fmt):
            msg = f"Pillow {PIL_VERSION} was built without {fmt} support; skipping the {fmt} sweep"
            warnings.warn(msg, stacklevel=2)
            skipped.append(msg)
            continue
        recs = evaluate_pillow(images, fmt, qualities, log, options, ms_ssim)
        records += recs
        curves.append(mean_curve(recs, pillow_name(fmt), describe_pillow(fmt, options)))

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
    codecs = [f"- **{c.name}**: {c.description}" for c in curves]
    codecs += [f"- not run: {msg}" for msg in skipped]
    summary = (
        f"# Evaluation on {len(images)} images of {image_dir}\n\n"
        + ("## Codecs\n\n" + "\n".join(codecs) + "\n\n" if codecs else "")
        + f"## Means per rate point\n\n{format_summary_markdown(curves, records)}\n"
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
