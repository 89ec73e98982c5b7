"""The report, the time budget and the helpers every section uses."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import bench_latency as bl
import torch
from PIL import Image
from torch import Tensor, nn

import dcae
from dcae.format.pixels import image_to_tensor

__all__ = [
    "LAMBDA",
    "REPO",
    "Budget",
    "Report",
    "elapsed",
    "image_batch",
    "kodak_files",
    "load_image",
    "log",
    "md_table",
    "mem_column",
    "official_class",
    "official_loss_class",
    "peak_memory",
    "psnr",
    "round_trip",
    "seeded_model",
    "sync",
    "use_backend",
]

REPO = Path(__file__).resolve().parents[2]  # the checkout: pytest's folder, ``git`` for the commit
LAMBDA = 0.0067  # the rate-distortion weight of the training rows


# ----------------------------------------------------------------------------- report
class Report:
    """Sections of tables and notes, written as markdown and JSON after each section."""

    def __init__(self, out: Path, argv: List[str]):
        self.out = out
        self.data: Dict[str, Any] = {"command": " ".join(argv), "sections": {}}
        self.current: Dict[str, Any] = {}

    @contextlib.contextmanager
    def section(self, key: str, title: str) -> Iterator[Dict[str, Any]]:
        sec: Dict[str, Any] = {"title": title, "status": "ok", "notes": [], "tables": []}
        self.data["sections"][key] = self.current = sec
        t0 = time.perf_counter()
        log(f"== {title}")
        try:
            yield sec
        except Exception:  # recorded, the run goes on
            sec["status"] = "error"
            sec["traceback"] = traceback.format_exc()
            log(sec["traceback"])
        finally:
            sec["seconds"] = round(time.perf_counter() - t0, 1)
            self.write()

    def note(self, text: str) -> None:
        self.current["notes"].append(text)
        log(f"   {text}")

    def table(self, title: str, rows: List[Dict[str, Any]]) -> None:
        self.current["tables"].append({"title": title, "rows": rows})
        self.write()

    def step(self, name: str, fn: Callable[[], None]) -> None:
        """Run one part of a section; an exception is recorded as a note."""
        try:
            fn()
        except Exception:
            tb = traceback.format_exc()
            self.current.setdefault("errors", []).append(tb)
            self.current["status"] = "partial"
            log(tb)
            self.note(f"{name}: FAILED ({tb.strip().splitlines()[-1]})")
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = ["# dcae GPU check", "", f"`{self.data['command']}`", ""]
        for sec in self.data["sections"].values():
            seconds = sec.get("seconds", "…")
            lines += [f"## {sec['title']} ({sec['status']}, {seconds} s)", ""]
            lines += [f"- {n}" for n in sec["notes"]]
            lines += [""] if sec["notes"] else []
            for t in sec["tables"]:
                lines += [f"**{t['title']}**", "", *md_table(t["rows"]), ""]
            for tb in [sec.get("traceback"), *sec.get("errors", [])]:
                if tb:
                    lines += ["```", tb.rstrip(), "```", ""]
        return "\n".join(lines)


def md_table(rows: List[Dict[str, Any]]) -> List[str]:
    if not rows:
        return ["(no rows)"]
    head = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        return (f"{v:.4g}" if isinstance(v, float) else str(v)).replace("|", "\\|")

    out = ["| " + " | ".join(map(fmt, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(fmt(r.get(k, "")) for k in head) + " |" for r in rows]
    return out


_T0 = time.perf_counter()


def elapsed() -> float:
    """Seconds since this module was imported (the start of the run)."""
    return time.perf_counter() - _T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------- helpers
class Budget:
    """The seconds left of ``--budget``, counted from its creation."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def use_backend(name: str, model: nn.Module) -> Any:
    """``dcae.attention_backend`` for ``model``'s modules where the API takes a
    model (per-module backends), else the global switch."""
    if len(inspect.signature(dcae.attention_backend).parameters) > 1:
        return dcae.attention_backend(name, model)
    return dcae.attention_backend(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> Any:
    return bl.PeakCUDA(device) if device.type == "cuda" else bl.PeakRSS()


def mem_column(device: torch.device) -> str:
    return "peak extra CUDA MB" if device.type == "cuda" else "peak extra RSS MB"


def psnr(a: Tensor, b: Tensor) -> float:
    mse = torch.mean((a.float().cpu() - b.float().cpu()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def kodak_files(directory: Path) -> List[Path]:
    files = sorted(directory.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG images in {directory}")
    return files


def load_image(path: Path, crop: Optional[Tuple[int, int]] = None) -> Image.Image:
    """An RGB image, centre-cropped to ``crop = (W, H)`` when given."""
    img = Image.open(path).convert("RGB")
    if crop:
        w, h = min(crop[0], img.width), min(crop[1], img.height)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
    return img


def image_batch(files: List[Path], n: int, crop: Optional[Tuple[int, int]]) -> Tensor:
    """``(n, 3, H, W)``: the first ``n`` images of the first one's size."""
    images = [load_image(f, crop) for f in files]
    images = [im for im in images if im.size == images[0].size][:n]
    return torch.cat([image_to_tensor(im)[0] for im in images])


def seeded_model(preset: str, seed: int = 0) -> dcae.DCAEModel:
    torch.manual_seed(seed)
    model = dcae.DCAEModel(preset).eval()
    model.update(force=True)
    return model


def round_trip(model: nn.Module, x: Tensor) -> Dict[str, Any]:
    """Eval ``forward`` and ``decompress(compress(x))``: exactness, sizes, PSNR."""
    with torch.no_grad():
        fwd = model(x)["x_hat"].clamp(0, 1)
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    nbytes = [sum(len(s[b]) for s in enc["strings"]) for b in range(x.shape[0])]
    return {
        "exact": bool(torch.equal(dec, fwd)),
        "max |decoded - forward|": float((dec - fwd).abs().max()),
        "x_hat device": str(dec.device),
        "bytes/sample": round(statistics.mean(nbytes)),
        "PSNR dB": round(psnr(dec, x), 3),
    }


def official_class(repo: str) -> Any:
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from models.dcae import DCAE  # type: ignore[import-not-found]

    return DCAE


def official_loss_class(repo: str) -> Any:
    """``RateDistortionLoss`` of the official ``train.py``, taken from its source
    alone (importing that module sets cuDNN to deterministic and 8 threads)."""
    source = (Path(repo) / "train.py").read_text()
    tree = ast.parse(source)
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RateDistortionLoss"]
    namespace: Dict[str, Any] = {"nn": nn, "torch": torch, "math": math}
    exec(compile(ast.Module(body=cls, type_ignores=[]), "official/train.py", "exec"), namespace)
    return namespace["RateDistortionLoss"]
