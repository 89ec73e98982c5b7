"""Rate-distortion curves: one record per image and rate point
(:class:`ImageRecord`), and a codec's curve of per-point means
(:class:`Curve`, :func:`mean_curve`) in CompressAI's results format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["Curve", "ImageRecord", "mean_curve"]


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
