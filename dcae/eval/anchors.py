"""Published rate-distortion anchors: the RD points other codecs reached on a
dataset, read from a folder the user provides (:func:`load_anchors`).

dcae ships no anchor data.  A folder of anchors holds:

- ``dcae-paper-rd.json``: the DCAE paper's own RD points, the file
  ``RD_data.json`` of the official repository
  (https://github.com/LabShuHangGU/DCAE, MIT license), renamed;
- ``<dataset>/*.json``, e.g. ``kodak/vtm.json``: results in CompressAI's
  format, as in ``results/image/kodak/`` of
  https://github.com/InterDigitalInc/CompressAI (BSD 3-Clause Clear
  license): VTM, HM, AV1, BPG, JPEG, JPEG 2000, WebP and learned codecs.

``dcae eval --anchors DIR`` (or ``$DCAE_ANCHORS``) names it
(:func:`find_anchors_dir`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from .curves import Curve

__all__ = ["ANCHORS_ENV", "find_anchors_dir", "load_anchors"]

#: the environment variable naming the anchors folder
ANCHORS_ENV = "DCAE_ANCHORS"
_PAPER_RD_FILE = "dcae-paper-rd.json"
_PAPER_KEYS = {"kodak": "Kodak", "clic": "CLIC", "tecnick": "Tecnick"}


def find_anchors_dir() -> Optional[Path]:
    """The anchors folder named by ``$DCAE_ANCHORS``, or ``None`` when it is
    not set (``dcae eval`` then compares with no published anchor unless
    ``--anchors DIR`` is given)."""
    env = os.environ.get(ANCHORS_ENV)
    return Path(env) if env else None


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
