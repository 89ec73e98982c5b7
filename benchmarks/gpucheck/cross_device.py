"""Section ``cross_device``: files written on the device and decoded on the
CPU, and the reverse.

For the shipped model and a paper-preset model with random weights (seed 0),
in every coding mode this dcae has, over the Kodak images: how many decode,
how many are refused (:class:`dcae.DecodingError`), how many files are
byte-identical, and the largest pixel difference to the same-device decode.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import dcae

from .common import Budget, Report, load_image, log, seeded_model

__all__ = ["coding_modes", "section_cross_device"]


class _Decodes:
    """``dcae.decode`` of a file (``"dev"``/``"cpu"``) on a device, each done once."""

    def __init__(self, data: Dict[str, bytes], models: Dict[str, Any]):
        self.data, self.models = data, models
        self.identical = data["dev"] == data["cpu"]
        self.done: Dict[Tuple[str, str], np.ndarray] = {}

    def __call__(self, file: str, on: str) -> np.ndarray:
        key = ("dev" if self.identical else file, on)
        if key not in self.done:
            pixels = dcae.decode(self.data[file], model=self.models[on])
            self.done[key] = np.asarray(pixels, dtype=np.int16)
        return self.done[key]


def coding_modes() -> Dict[str, Dict[str, Any]]:
    """``dcae.encode`` keyword arguments per coding mode this dcae has."""
    modes: Dict[str, Dict[str, Any]] = {"default": {}}
    if "portable" in inspect.signature(dcae.encode).parameters:
        # float32 coding (dcae.encode's default before portable files were)
        modes = {"float32": {"portable": False}, "portable": {"portable": True}}
    return modes


def cross_device_model(
    rep: Report,
    args: argparse.Namespace,
    st: Dict[str, Any],
    name: str,
    make_model: Callable[[], Any],
    deadline: float,
) -> None:
    """Encode every image on both devices in every coding mode, decode each file
    on the other device.

    The rows in ``st["cross_rows"]`` are updated image by image, so a failure
    or the deadline keeps the counts so far.  The pixel difference to the
    same-device decode is measured on the first ``--diff-images`` images only
    (that decode costs one more CPU decode per image)."""
    dev = args.device
    models = {"cpu": make_model()}
    models["dev"] = copy.deepcopy(models["cpu"]).to(dev)
    ways = {f"{dev}->cpu": ("dev", "cpu"), f"cpu->{dev}": ("cpu", "dev")}
    modes = coding_modes()
    rows: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for mode in modes:
        for way in ways:
            row = {"model": name, "mode": mode, "direction": way, "images": 0, "decoded": 0}
            row.update({"DecodingError": 0, "other error": 0, "identical files": 0})
            row[f"max |diff| levels (first {args.diff_images})"] = 0
            rows[mode, way] = row
            st.setdefault("cross_rows", []).append(row)
    diff_key = f"max |diff| levels (first {args.diff_images})"
    details = rep.current.setdefault("details", {}).setdefault(name, [])
    files = st["kodak"][: args.max_images]
    for index, f in enumerate(files):
        if time.perf_counter() > deadline:
            rep.note(f"{name}: time budget reached after {index} of {len(files)} images")
            break
        img = load_image(f, args.crop)
        detail: Dict[str, Any] = {"image": f.name}
        for mode, kwargs in modes.items():
            data = {k: dcae.encode(img, model=m, **kwargs) for k, m in models.items()}
            dec = _Decodes(data, models)
            detail[f"{mode} identical"] = dec.identical
            for way, (enc, other) in ways.items():
                row = rows[mode, way]
                row["images"] += 1
                row["identical files"] += dec.identical
                try:
                    there = dec(enc, other)
                except dcae.DecodingError as e:
                    row["DecodingError"] += 1
                    detail[f"{mode} {way}"] = f"DecodingError: {e}"
                    continue
                except Exception as e:  # counted and shown
                    row["other error"] += 1
                    detail[f"{mode} {way}"] = f"{type(e).__name__}: {e}"
                    continue
                row["decoded"] += 1
                detail[f"{mode} {way}"] = "decoded"
                if index < args.diff_images:
                    diff = int(np.abs(there - dec(enc, enc)).max())
                    row[diff_key] = max(row[diff_key], diff)
                    detail[f"{mode} {way}"] = f"decoded, max |diff| {diff}"
        details.append(detail)
        log(f"   {name} {f.name}: {detail}")


def section_cross_device(
    rep: Report, args: argparse.Namespace, st: Dict[str, Any], budget: Budget
) -> None:
    from dcae.zoo import shipped

    models: List[Tuple[str, Callable[[], Any]]] = []
    if shipped.available_qualities():
        q = shipped.default_quality()
        models.append((f"shipped q{q}", lambda: copy.deepcopy(shipped.load_pretrained(q))))
    models.append(("paper, random (seed 0)", lambda: seeded_model("paper")))
    total = max(0.0, min(args.cross_budget, budget.left() - args.reserve))
    end = time.perf_counter() + total
    rep.note(
        f"images {args.max_images} of {len(st['kodak'])} Kodak, "
        f"{'crop ' + str(args.crop) if args.crop else 'full size'}; "
        f"coding modes {', '.join(coding_modes())}; "
        f"max |diff| compares with the same-device decode (8-bit levels); "
        f"{total:.0f} s for this section, the first model at most half of it"
    )
    for i, (name, make) in enumerate(models):
        deadline = min(end, time.perf_counter() + total / 2) if i == 0 else end
        rep.step(name, functools.partial(cross_device_model, rep, args, st, name, make, deadline))
    rep.table(
        "cross-device decoding (dcae.encode on one device, dcae.decode on the other)",
        st.get("cross_rows", []),
    )
