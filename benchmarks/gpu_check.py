"""Everything issue 11 ("dcae on a GPU") measures, in one run on one device.

Sections, each guarded (a failure records its traceback and the run goes
on), the tables rewritten to ``--out`` after every section
(``gpu_check.md``, ``gpu_check.json``, ``pytest_cuda.log``):

``env``
    date, host, Python, torch, CUDA, cuDNN, GPU, driver, TF32 defaults.
``correctness``
    ``pytest -m cuda`` (a subprocess, summary and log); then, as a user
    would: ``DCAEModel(...).to(device)`` and an exact ``forward`` /
    ``compress`` / ``decompress`` round trip on Kodak content (batch 1 and 2,
    torch defaults and TF32 off), every attention backend against the
    reference one, fast mode (bfloat16, float16), ``dcae train --amp`` with
    the auxiliary optimizer, and :func:`dcae.encode` / :func:`dcae.decode`
    with the model on the device (``encode`` has no device argument).
``cross_device``
    files written on the device and decoded on the CPU and the reverse, for
    the shipped model and a paper-preset model with random weights (seed 0),
    in the default and the portable coding mode, over the Kodak images: how
    many decode, how many are refused (:class:`dcae.DecodingError`), how many
    files are byte-identical.
``latency``
    paper preset, the same weights in every variant, one Kodak image
    (768x512): the official code (``--official-repo``) with torch defaults
    and with TF32 off, dcae exact float32 (TF32 off), dcae with torch defaults,
    dcae fast mode (bfloat16, float16; bfloat16 with portable coding):
    compress and decompress, median of
    ``--repeats`` after warm-up, synchronised, variants interleaved; peak
    CUDA memory of one compress + decompress.
``training``
    paper preset, batch 8 of 256x256 Kodak crops: steps/s and peak memory of
    dcae's training step (as ``dcae.train``) and of the official model with
    the official ``train.py`` loss, bfloat16 autocast and float32, on the
    same batches.
``compile``
    ``torch.compile`` of ``g_a``/``g_s`` (compile time, difference to eager,
    latency), and fast mode with the per-slice entropy networks compiled with
    ``mode="reduce-overhead"`` (CUDA graphs) against eager fast mode.  Runs
    last and only while ``--budget`` leaves time.

Next GPU session: one device call, with ``.whl`` (the CompressAI wheels of
``../shared/device/wheels``), ``.official`` (the official repository's
working tree) and ``.kodak`` (the Kodak images) as git-ignored folders of the
checkout (about 15 MiB together), i.e. ``run`` with
``carry=[".whl", ".official", ".kodak"]``, ``timeout_s=560`` and the command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \\
        --target /tmp/site .whl/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \\
      && python3 benchmarks/gpu_check.py --device cuda --out $OUT \\
        --official-repo .official --kodak .kodak

(on one line; the performance guide has it verbatim; ``.official`` was
exported from the official repository at commit ``bd00306``).  Preparing the folders
once, in the checkout's root::

    printf '/.official/\\n/.whl/\\n/.kodak/\\n' >> .git/info/exclude
    mkdir -p .whl .kodak .official && cp ../shared/device/wheels/*.whl .whl/
    cp ../shared/datasets/kodak/*.png .kodak/
    git --git-dir=<a clone of github LabShuHangGU/DCAE>/.git archive HEAD | tar -x -C .official
    rm -rf .official/assets

A re-run after fixes can leave sections out, e.g. ``--skip cross_device,training``
(names: pytest, correctness, cross_device, latency, training, compile).

CPU rehearsal (fewer images and repeats, small crops, the ``small`` preset
for the correctness checks, the entropy networks of one slice compiled)::

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpucheck \\
        --official-repo .official
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import functools
import inspect
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

import dcae
from dcae.attention import BACKENDS
from dcae.codec import image_to_tensor, tensor_to_uint8
from dcae.nn.fast import fast_mode, tf32
from dcae.train import ImageFolder, RateDistortionLoss, TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_latency as bl  # noqa: E402

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
LAMBDA = 0.0067


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


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------- helpers
class Budget:
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


# ----------------------------------------------------------------------------- env
def section_env(rep: Report, args: argparse.Namespace) -> None:
    dev = args.device
    env: Dict[str, Any] = {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "dcae": dcae.__version__,
        "attention backend (default)": dcae.get_attention_backend(),
        "device": str(dev),
    }
    with contextlib.suppress(Exception):
        import compressai

        env["compressai"] = compressai.__version__
    with contextlib.suppress(Exception):
        env["dcae commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(
            {
                "CUDA (torch)": torch.version.cuda,
                "cuDNN": torch.backends.cudnn.version(),
                "GPU": torch.cuda.get_device_name(dev),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))),
                "GPU memory GiB": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
                "bf16 supported": torch.cuda.is_bf16_supported(),
            }
        )
        with contextlib.suppress(Exception):
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        env["fp32 precision default (matmul, cuDNN conv)"] = (
            f"{matmul.fp32_precision}, {torch.backends.cudnn.conv.fp32_precision}"
        )
    env["cudnn enabled / benchmark"] = (
        f"{torch.backends.cudnn.enabled} / {torch.backends.cudnn.benchmark}"
    )
    env["official repository"] = args.official_repo or "not given"
    if getattr(args, "official_missing", None):
        env["official repository"] = f"NOT FOUND at {args.official_missing}"
    rep.data["env"] = env
    rep.table("environment", [{"key": k, "value": v} for k, v in env.items()])


# ----------------------------------------------------------------------------- a
def run_pytest(rep: Report, args: argparse.Namespace) -> None:
    cmd = [sys.executable, "-m", "pytest", "tests", "-m", "cuda", "-v", "-rfEs"]
    cmd += ["-p", "no:cacheprovider", "--continue-on-collection-errors"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=args.pytest_timeout, env=env
        )
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        output = (out.decode() if isinstance(out, bytes) else out) + "\n[TIMED OUT]\n"
        rc = "timeout"
    (rep.out / "pytest_cuda.log").write_text(output)
    summary = [
        ln for ln in output.splitlines() if re.match(r"^=+ .*(passed|failed|error|skipped)", ln)
    ]
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped")}
    for n, k in re.findall(
        r"(\d+) (passed|failed|errors?|skipped)", summary[-1] if summary else ""
    ):
        counts[k.rstrip("s") if k.startswith("error") else k] += int(n)
    failed = [ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    rep.table(
        "pytest -m cuda",
        [
            {
                "command": " ".join(["python", *cmd[1:]]),
                "exit": rc,
                **counts,
                "seconds": round(time.perf_counter() - t0, 1),
                "summary": summary[-1].strip("= ") if summary else "(none)",
            }
        ],
    )
    for ln in failed[:40]:
        rep.note(ln)


def check_round_trips(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev, model = args.device, st["check_model"]
    files = st["kodak"]
    crop = args.check_size
    x1, _ = image_to_tensor(load_image(files[0], crop))
    x2 = image_batch(files[1:], 2, crop)
    rows = []
    for name, x, ctx in (
        ("batch 1, torch defaults", x1, contextlib.nullcontext()),
        ("batch 2, torch defaults", x2, contextlib.nullcontext()),
        ("batch 1, TF32 off", x1, tf32(False)),
        ("batch 2, TF32 off", x2, tf32(False)),
    ):
        with ctx:
            rows.append(
                {"case": name, "size": "x".join(map(str, x.shape)), **round_trip(model, x.to(dev))}
            )
    rep.table(
        f"DCAEModel({args.check_preset!r}).to({str(dev)!r}): decompress(compress(x)) == forward",
        rows,
    )


def check_backends(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev, model = args.device, st["check_model"]
    x = image_batch(st["kodak"], 2, args.check_size).to(dev)
    em = model.entropy_model
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(2, em.context_channels(1), 8, 12, generator=g).to(dev)
    rows = []
    with tf32(False), torch.no_grad():
        with use_backend("reference", model):
            y_ref = model.g_a(x)
            x_ref = model.g_s(y_ref)
            f_ref = em.cross_attention[1](ctx, em.dictionary)
        for backend in BACKENDS:
            with use_backend(backend, model):
                row: Dict[str, Any] = {"backend": backend}
                row["g_a max diff"] = float((model.g_a(x) - y_ref).abs().max())
                row["g_s max diff"] = float((model.g_s(y_ref) - x_ref).abs().max())
                f = em.cross_attention[1](ctx, em.dictionary)
                row["dictionary attention max diff"] = float((f - f_ref).abs().max())
                rt = round_trip(model, x)
                row["round trip exact"] = rt["exact"]
                row["bytes/sample"] = rt["bytes/sample"]
                rows.append(row)
    rep.table("attention backends, float32 with TF32 off, against 'reference' (batch 2)", rows)


def check_fast_mode(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev, model = args.device, st["check_model"]
    img = load_image(st["kodak"][3], args.check_size)
    x = image_to_tensor(img)[0].to(dev)
    with torch.no_grad():
        exact_x_hat = model(x)["x_hat"].clamp(0, 1)
    dtypes = [torch.bfloat16] + ([torch.float16] if dev.type == "cuda" else [])
    rows = []
    for dtype in dtypes:
        row: Dict[str, Any] = {"dtype": str(dtype).replace("torch.", "")}
        fast_mode(model, dtype)
        try:
            rt = round_trip(model, x)
            row["round trip exact (vs fast forward)"] = rt["exact"]
            row["PSNR dB"] = rt["PSNR dB"]
            with torch.no_grad():
                fwd = model(x)["x_hat"].clamp(0, 1)
            row["max |fast - fp32 x_hat|"] = float((fwd - exact_x_hat).abs().max())
            data = dcae.encode(img, model=model)
            fast_pixels = np.asarray(dcae.decode(data, model=model), dtype=np.int16)
        finally:
            fast_mode(model, enabled=False)
        try:
            exact_pixels = np.asarray(dcae.decode(data, model=model), dtype=np.int16)
            row["fast file decoded in fp32 mode"] = "yes"
            row["mean |pixel diff|"] = float(np.abs(exact_pixels - fast_pixels).mean())
        except dcae.DecodingError as e:
            row["fast file decoded in fp32 mode"] = f"DecodingError: {e}"
        rows.append(row)
    rep.table("fast mode (g_a/g_s in reduced precision, entropy model float32)", rows)


def check_training(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    import csv

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for f in st["kodak"][:4]:
            load_image(f, (256, 256)).save(data / f.name)
        cfg = TrainConfig(
            data=str(data),
            output=str(Path(tmp) / "run"),
            preset=args.check_preset,
            steps=3,
            batch_size=2,
            patch_size=128,
            warmup=1,
            val_split=0,
            log_every=1,
            save_every=3,
            amp=True,
        )
        t0 = time.perf_counter()
        model = train(cfg)
        seconds = time.perf_counter() - t0
        with open(Path(tmp) / "run" / "train.csv") as fh:
            logged = list(csv.DictReader(fh))
        ckpt = torch.load(
            Path(tmp) / "run" / "checkpoint.pt", map_location="cpu", weights_only=True
        )
    model.eval()
    model.update(force=True)
    x = image_to_tensor(load_image(st["kodak"][5], args.check_size))[0]
    x = x.to(next(model.parameters()).device)
    rt = round_trip(model, x)
    use_cuda = torch.cuda.is_available()
    amp = (
        "bfloat16"
        if use_cuda and torch.cuda.is_bf16_supported()
        else ("float16" if use_cuda else "off (CPU)")
    )
    rep.table(
        "dcae.train.train(TrainConfig(amp=True, ...)): 3 steps, then update() and a round trip",
        [
            {
                "device": str(next(model.parameters()).device),
                "autocast": amp,
                "loss per step": ", ".join(r["loss"] for r in logged),
                "aux per step": ", ".join(r["aux"] for r in logged),
                "grad scaler scale": ckpt.get("scaler", {}).get("scale", "disabled"),
                "seconds (3 steps + setup)": round(seconds, 1),
                "round trip exact after training": rt["exact"],
            }
        ],
    )


def check_codec_api(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev, model = args.device, st["check_model"]
    params = list(inspect.signature(dcae.encode).parameters)
    if "device" in params:
        rep.note("dcae.encode has a device argument")
    else:
        rep.note(
            f"finding: dcae.encode({', '.join(params)}) has no device argument; the device is "
            "the model's: dcae.encode(img, model=model.to(device)); dcae.decode likewise"
        )
    from dcae import pretrained

    if pretrained.available_qualities():
        q = pretrained.default_quality()
        if pretrained.load_pretrained(q) is pretrained.load_pretrained(q):
            rep.note(
                "finding: dcae.pretrained.load_pretrained(q) returns one cached instance, so "
                "load_pretrained(q).to('cuda') also moves the model that dcae.encode(img, "
                "quality=q) and dcae.decode(data) use afterwards"
            )
    img = load_image(st["kodak"][6], args.check_size)
    t0 = time.perf_counter()
    data = dcae.encode(img, model=model)
    t1 = time.perf_counter()
    decoded = np.asarray(dcae.decode(data, model=model))
    t2 = time.perf_counter()
    x, _ = image_to_tensor(img)
    with torch.no_grad():
        expected = tensor_to_uint8(model(x.to(dev))["x_hat"].cpu()).numpy()
    rep.table(
        f"dcae.encode / dcae.decode with the model on {dev}",
        [
            {
                "image": f"{img.width}x{img.height}",
                "bytes": len(data),
                "encode s": round(t1 - t0, 3),
                "decode s": round(t2 - t1, 3),
                "decoded == 8-bit forward": bool(np.array_equal(decoded, expected)),
            }
        ],
    )


def section_correctness(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    if "pytest" not in args.skip:
        rep.step("pytest -m cuda", lambda: run_pytest(rep, args))
    st["check_model"] = seeded_model(args.check_preset).to(args.device)
    rep.note(
        f"user checks: preset {args.check_preset!r}, random weights (seed 0), "
        f"Kodak crops {args.check_size or 'full size'}"
    )
    rep.step("round trips", lambda: check_round_trips(rep, args, st))
    rep.step("attention backends", lambda: check_backends(rep, args, st))
    rep.step("fast mode", lambda: check_fast_mode(rep, args, st))
    rep.step("training step", lambda: check_training(rep, args, st))
    rep.step("encode/decode API", lambda: check_codec_api(rep, args, st))


# ----------------------------------------------------------------------------- b
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
    from dcae import pretrained

    models: List[Tuple[str, Callable[[], Any]]] = []
    if pretrained.available_qualities():
        q = pretrained.default_quality()
        models.append((f"shipped q{q}", lambda: copy.deepcopy(pretrained.load_pretrained(q))))
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


# ----------------------------------------------------------------------------- c
@contextlib.contextmanager
def _setup(
    model: Any = None,
    tf32_on: Optional[bool] = None,
    backend: Optional[str] = None,
    fast: Optional[torch.dtype] = None,
) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if tf32_on is not None:
            stack.enter_context(tf32(tf32_on))
        if backend is not None:
            stack.enter_context(use_backend(backend, model))
        if fast is not None:
            fast_mode(model, fast)
            stack.callback(fast_mode, model, enabled=False)
        yield


def time_variants(
    variants: List[bl.Variant], x: Tensor, device: torch.device, repeats: int, warmup: int
) -> Dict[str, Dict[str, Any]]:
    """Compress/decompress medians (interleaved round-robin), peak memory, checks."""
    res: Dict[str, Dict[str, Any]] = {}
    decoded: Dict[str, Tensor] = {}
    with torch.no_grad():
        for v in variants:
            for _ in range(warmup):
                v.compress(x)
                v.decompress(x)
            with peak_memory(device) as mem:
                out = v.compress(x)
                decoded[v.name] = v.decompress(x)["x_hat"]
            nbytes = sum(len(s[0]) for s in out["strings"])
            res[v.name] = {"compress": [], "decompress": [], "peak": mem.extra_mb, "bytes": nbytes}
            res[v.name]["repeatable"] = True
        for _ in range(repeats):
            for v in variants:
                for task in ("compress", "decompress"):
                    sync(device)
                    t0 = time.perf_counter()
                    out = getattr(v, task)(x)
                    sync(device)
                    res[v.name][task].append(time.perf_counter() - t0)
                    if task == "decompress" and not torch.equal(out["x_hat"], decoded[v.name]):
                        res[v.name]["repeatable"] = False
    for v in variants:
        res[v.name]["psnr"] = psnr(decoded[v.name].clamp(0, 1), x)
    return res


def latency_rows(
    res: Dict[str, Dict[str, Any]], device: torch.device, ref: Optional[str]
) -> List[Dict[str, Any]]:
    rows = []
    total = lambda r: statistics.median(r["compress"]) + statistics.median(r["decompress"])  # noqa: E731
    for name, r in res.items():
        row: Dict[str, Any] = {
            "variant": name,
            "compress ms": round(1e3 * statistics.median(r["compress"]), 1),
            "decompress ms": round(1e3 * statistics.median(r["decompress"]), 1),
            "comp+decomp ms": round(1e3 * total(r), 1),
        }
        if ref and ref in res:
            row[f"speed-up vs {ref}"] = f"{total(res[ref]) / total(r):.2f}x"
        row[mem_column(device)] = round(r["peak"])
        row["bytes"] = r["bytes"]
        row["PSNR dB"] = round(r["psnr"], 3)
        row["decode repeatable"] = r["repeatable"]
        rows.append(row)
    return rows


class _PortableCalls:
    """A model's ``compress``/``decompress`` with ``portable=True``."""

    def __init__(self, model: Any):
        self.model = model

    def compress(self, x: Tensor) -> Dict[str, Any]:
        return self.model.compress(x, portable=True)

    def decompress(self, strings: Any, shape: Any) -> Dict[str, Any]:
        return self.model.decompress(strings, shape, portable=True)


def section_latency(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev = args.device
    path = next((f for f in st["kodak"] if Image.open(f).size == (768, 512)), st["kodak"][0])
    img = load_image(path, args.size)
    x = image_to_tensor(img)[0].to(dev)
    ns = argparse.Namespace(
        preset="paper",
        checkpoint=None,
        device=dev,
        official_repo=args.official_repo,
        fast_dtype="bfloat16",
    )
    built = {v.name: v for v in bl.build_variants(ns)}  # same weights in every variant
    model = built["dcae reference"].model
    st["latency_model"], st["latency_x"] = model, x
    variants = []
    if "official" in built:
        official = built["official"].model
        st["official_model"] = official
        variants.append(bl.Variant("official (torch defaults)", official, lambda: _setup()))
        variants.append(bl.Variant("official (TF32 off)", official, lambda: _setup(tf32_on=False)))
    variants.append(
        bl.Variant(
            "dcae exact fp32 (TF32 off)",
            model,
            lambda: _setup(model, tf32_on=False, backend="auto"),
        )
    )
    variants.append(
        bl.Variant("dcae (torch defaults)", model, lambda: _setup(model, backend="auto"))
    )
    variants.append(
        bl.Variant(
            "dcae fast bf16", model, lambda: _setup(model, backend="auto", fast=torch.bfloat16)
        )
    )
    if "portable" in inspect.signature(model.compress).parameters:
        variants.append(
            bl.Variant(
                "dcae fast bf16, portable coding",
                _PortableCalls(model),
                lambda: _setup(model, backend="auto", fast=torch.bfloat16),
            )
        )
    if dev.type == "cuda":
        variants.append(
            bl.Variant(
                "dcae fast fp16", model, lambda: _setup(model, backend="auto", fast=torch.float16)
            )
        )
    rep.note(
        f"{path.name} {img.width}x{img.height}, paper preset, random weights (seed 0), "
        f"official with dcae's weights (to_official_state_dict); median of {args.repeats} "
        f"after {args.warmup} warm-up(s), variants interleaved, synchronised"
    )
    res = time_variants(variants, x, dev, args.repeats, args.warmup)
    ref = "official (torch defaults)" if "official" in built else None
    rep.table("latency (compress, decompress)", latency_rows(res, dev, ref))
    if ref:
        r = res
        tot = lambda n: statistics.median(r[n]["compress"]) + statistics.median(r[n]["decompress"])  # noqa: E731
        best_fast = min((n for n in r if n.startswith("dcae fast")), key=tot)
        rep.note(
            f"targets: fast < 30 ms: {1e3 * tot(best_fast):.1f} ms ({best_fast}); fast >= 3x "
            f"official: {tot(ref) / tot(best_fast):.2f}x; exact >= 1.5x official: "
            f"{tot(ref) / tot('dcae exact fp32 (TF32 off)'):.2f}x (vs official TF32 off: "
            f"{tot('official (TF32 off)') / tot('dcae exact fp32 (TF32 off)'):.2f}x)"
        )


# ----------------------------------------------------------------------------- d
def dcae_step(
    model: Any,
    opt: Any,
    aux_opt: Any,
    scaler: Any,
    criterion: Any,
    x: Tensor,
    amp: bool,
    main_params: List[Tensor],
) -> float:
    """One step as ``dcae.train.train`` does it."""
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out["x_hat"] = out["x_hat"].float()
    terms = criterion(out, x)
    scaler.scale(terms["loss"]).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(main_params, 1.0)
    scaler.step(opt)
    scaler.update()
    aux = model.aux_loss()
    aux.backward()
    aux_opt.step()
    return float(terms["loss"].detach())


def official_step(
    model: Any, opt: Any, aux_opt: Any, criterion: Any, x: Tensor, amp: bool
) -> float:
    """One step as the official ``train.py`` (``train_one_epoch``) does it, with
    an optional bfloat16 autocast around the forward."""
    opt.zero_grad()
    aux_opt.zero_grad()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out["x_hat"] = out["x_hat"].float()
    loss = criterion(out, x)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    aux_opt.step()
    return float(loss.detach())


def _split(model: nn.Module) -> Tuple[List[Tensor], List[Tensor]]:
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return main, aux


def train_throughput(
    rep: Report,
    args: argparse.Namespace,
    name: str,
    batches: List[Tensor],
    amp: bool,
    make: Callable[[], Tuple[nn.Module, Callable[..., float]]],
) -> Dict[str, Any]:
    dev = args.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    mem = bl.PeakRSS() if dev.type != "cuda" else contextlib.nullcontext()
    with mem:
        model, step = make()
        losses = []
        for x in batches[: args.train_warmup]:
            losses.append(step(x))
        sync(dev)
        t0 = time.perf_counter()
        for x in batches[args.train_warmup :]:
            losses.append(step(x))
        sync(dev)
        seconds = time.perf_counter() - t0
    timed = len(batches) - args.train_warmup
    row: Dict[str, Any] = {"model + step": name, "autocast": "bf16" if amp else "fp32"}
    row["steps/s"] = round(timed / seconds, 3)
    row["ms/step"] = round(1e3 * seconds / timed, 1)
    if dev.type == "cuda":
        row["peak CUDA MB (model, optimizers, activations)"] = round(
            (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        )
    else:
        row["peak extra RSS MB"] = round(mem.extra_mb)  # type: ignore[union-attr]
    row["first, last loss"] = f"{losses[0]:.3f}, {losses[-1]:.3f}"
    row["finite"] = all(math.isfinite(v) for v in losses)
    del model
    return row


def section_training(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    dev = args.device
    data = ImageFolder(files=st["kodak"])
    gen = torch.Generator().manual_seed(0)
    n = args.train_warmup + args.train_steps
    batches = [data.batch(args.train_batch, args.train_patch, gen).to(dev) for _ in range(n)]
    rep.note(
        f"paper preset, batch {args.train_batch} of {args.train_patch}x{args.train_patch} "
        f"Kodak crops (the same {n} batches for every row), {args.train_warmup} warm-up "
        f"+ {args.train_steps} timed steps, Adam lr 1e-4 / aux 1e-3, clip 1.0, "
        f"lambda {LAMBDA}, TF32 torch defaults"
    )
    use_scaler = dev.type == "cuda"

    def make_dcae(amp: bool) -> Callable[[], Tuple[nn.Module, Callable[..., float]]]:
        def make():
            torch.manual_seed(0)
            model = dcae.DCAEModel("paper").to(dev).train()
            main, aux = _split(model)
            opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
            scaler = torch.amp.GradScaler(dev.type, enabled=amp and use_scaler)
            crit = RateDistortionLoss(LAMBDA)
            return model, lambda x: dcae_step(model, opt, aux_opt, scaler, crit, x, amp, main)

        return make

    def make_official(amp: bool) -> Callable[[], Tuple[nn.Module, Callable[..., float]]]:
        def make():
            torch.manual_seed(0)
            model = official_class(args.official_repo)().to(dev).train()
            main, aux = _split(model)
            opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
            crit = official_loss_class(args.official_repo)(lmbda=LAMBDA)
            return model, lambda x: official_step(model, opt, aux_opt, crit, x, amp)

        return make

    runs: List[Tuple[str, bool, Callable[[], Any]]] = [
        ("dcae (dcae.train step)", True, make_dcae(True))
    ]
    if args.official_repo:
        runs.append(("official (train.py model + loss)", True, make_official(True)))
    runs.append(("dcae (dcae.train step)", False, make_dcae(False)))
    if args.official_repo:
        runs.append(("official (train.py model + loss)", False, make_official(False)))
    rows: List[Dict[str, Any]] = []
    for name, amp, make in runs:
        run = functools.partial(train_throughput, rep, args, name, batches, amp, make)
        rep.step(f"{name} amp={amp}", lambda run=run: rows.append(run()))
    rep.table("training throughput", rows)


# ----------------------------------------------------------------------------- e
class _Cloned(nn.Module):
    """A compiled module whose outputs are cloned: CUDA-graph replays reuse
    their output memory, and the slice loop keeps earlier slices' outputs."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module(*args).clone()


def _raise_recompile_limit() -> None:
    """The per-slice networks share ``forward`` code objects (``nn.Sequential``)
    with other shapes; torch's default of 8 graphs per code object would send
    the later slices back to eager mode."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(64, getattr(cfg, name)))


def compile_transform(
    rep: Report, args: argparse.Namespace, st: Dict[str, Any], which: str
) -> None:
    """``torch.compile`` of ``g_a`` or ``g_s``: compile time, difference, latency."""
    dev, model = args.device, st["check_model"]
    x = image_to_tensor(load_image(st["kodak"][0], args.check_size))[0].to(dev)
    with tf32(False), torch.no_grad():
        module = getattr(model, which)
        inp = x if which == "g_a" else model.g_a(x)
        eager = module(inp)
        compiled = torch.compile(module, dynamic=False)
        sync(dev)
        t0 = time.perf_counter()
        out = compiled(inp)
        sync(dev)
        compile_s = time.perf_counter() - t0
        times: Dict[str, List[float]] = {"eager": [], "compiled": []}
        for _ in range(args.repeats):
            for kind, fn in (("eager", module), ("compiled", compiled)):
                sync(dev)
                t0 = time.perf_counter()
                fn(inp)
                sync(dev)
                times[kind].append(time.perf_counter() - t0)
    st.setdefault("compile_rows", []).append(
        {
            "transform": which,
            "preset": args.check_preset,
            "input": "x".join(map(str, inp.shape)),
            "compile s (first call)": round(compile_s, 1),
            "max |compiled - eager|": float((out - eager).abs().max()),
            "eager ms": round(1e3 * statistics.median(times["eager"]), 2),
            "compiled ms": round(1e3 * statistics.median(times["compiled"]), 2),
        }
    )
    rep.table(f"torch.compile({which}, dynamic=False), float32 TF32 off", st["compile_rows"][-1:])


@contextlib.contextmanager
def _graph_step(model: Any) -> Iterator[None]:
    """Fast mode, and a new CUDA-graph generation per compress/decompress."""
    mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    if mark is not None and torch.cuda.is_available():
        mark()
    with _setup(model, backend="auto", fast=torch.bfloat16):
        yield


def compile_entropy_networks(rep: Report, args: argparse.Namespace, st: Dict[str, Any]) -> None:
    """Fast mode with the per-slice networks compiled (CUDA graphs on a GPU)
    against eager fast mode, on the latency section's model and image."""
    dev, x = args.device, st["latency_x"]
    base = st["latency_model"]
    model = copy.deepcopy(base)
    em = model.entropy_model
    n = min(args.compile_slices, em.num_slices)
    mode = "reduce-overhead" if dev.type == "cuda" else "default"
    for i in range(n):
        nets = [em.cross_attention, em.mean_transforms, em.scale_transforms]
        nets += [em.lrp_transforms] if em.lrp else []
        for nets_i in nets:
            nets_i[i] = _Cloned(torch.compile(nets_i[i], mode=mode, dynamic=False))
    label = f"dcae fast bf16 + {mode} slice nets ({n} of {em.num_slices} slices)"
    compiled = bl.Variant(label, model, lambda: _graph_step(model))
    eager = bl.Variant(
        "dcae fast bf16", base, lambda: _setup(base, backend="auto", fast=torch.bfloat16)
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled.compress(x)
        compiled.decompress(x)
    rep.note(
        f"compiling the entropy networks ({mode}) took {time.perf_counter() - t0:.1f} s "
        "(first compress + decompress)"
    )
    res = time_variants([eager, compiled], x, dev, args.repeats, args.warmup)
    rep.table(
        "per-slice entropy networks compiled (same image and weights as latency)",
        latency_rows(res, dev, "dcae fast bf16"),
    )


def section_compile(
    rep: Report, args: argparse.Namespace, st: Dict[str, Any], budget: Budget
) -> None:
    """Entropy networks first (a latency target), then ``g_a`` and ``g_s``
    (compiling them is also a ``cuda`` test on the small preset)."""
    _raise_recompile_limit()
    steps = [
        (
            "entropy networks",
            functools.partial(compile_entropy_networks, rep, args, st),
            args.compile_need,
        )
    ]
    for which in ("g_a", "g_s"):
        fn = functools.partial(compile_transform, rep, args, st, which)
        steps.append((which, fn, args.transform_compile_need))
    for name, fn, need in steps:
        if budget.left() < need:
            rep.note(f"{name}: skipped, {budget.left():.0f} s of the budget left (< {need} s)")
            continue
        if name == "entropy networks" and "latency_model" not in st:
            rep.note(f"{name}: skipped, the latency section built no model")
            continue
        rep.step(name, fn)


# ----------------------------------------------------------------------------- main
def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the tables")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CPU rehearsal: fewer images and repeats, small crops and preset",
    )
    default_kodak = (
        REPO / ".kodak" if (REPO / ".kodak").is_dir() else Path("/work/shared/datasets/kodak")
    )
    p.add_argument("--kodak", type=Path, default=default_kodak)
    p.add_argument("--official-repo", default=None, help="the official DCAE repository")
    p.add_argument("--max-images", type=int, default=None, help="cross-device images (24)")
    p.add_argument("--crop", default=None, help="WxH centre crop for cross-device images")
    p.add_argument(
        "--diff-images", type=int, default=6, help="cross-device images with pixel differences"
    )
    p.add_argument("--size", default=None, help="WxH crop of the latency image (768x512)")
    p.add_argument("--check-preset", default=None, help="preset of the user checks (paper)")
    p.add_argument("--check-size", default=None, help="WxH crop for the user checks (768x512)")
    p.add_argument("--repeats", type=int, default=None, help="latency repeats (20)")
    p.add_argument("--warmup", type=int, default=None, help="latency warm-up passes (2)")
    p.add_argument("--train-batch", type=int, default=None, help="(8)")
    p.add_argument("--train-patch", type=int, default=None, help="(256)")
    p.add_argument("--train-steps", type=int, default=None, help="timed steps (10)")
    p.add_argument("--train-warmup", type=int, default=None, help="(3)")
    p.add_argument("--compile-slices", type=int, default=None, help="slices compiled (all)")
    p.add_argument(
        "--budget",
        type=float,
        default=440.0,
        help="seconds; the compile section runs only inside it",
    )
    p.add_argument("--cross-budget", type=float, default=None, help="seconds (150)")
    p.add_argument(
        "--reserve",
        type=float,
        default=150.0,
        help="seconds kept for the sections after cross-device",
    )
    p.add_argument(
        "--compile-need",
        type=float,
        default=None,
        help="seconds left to compile the slice nets (90)",
    )
    p.add_argument(
        "--transform-compile-need",
        type=float,
        default=None,
        help="seconds left to compile g_a, and again g_s (150)",
    )
    p.add_argument("--pytest-timeout", type=float, default=None, help="seconds (200)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--skip",
        default="",
        help="comma list: pytest,correctness,cross_device,latency,training,compile",
    )
    args = p.parse_args(argv)
    q = args.quick
    defaults = {
        "max_images": 2 if q else 24,
        "crop": "128x128" if q else None,
        "size": "256x256" if q else None,
        "check_preset": "small" if q else "paper",
        "check_size": "128x96" if q else None,
        "repeats": 2 if q else 20,
        "warmup": 1 if q else 2,
        "train_batch": 1 if q else 8,
        "train_patch": 256,
        "train_steps": 1 if q else 10,
        "train_warmup": 1 if q else 3,
        "compile_slices": 1 if q else 5,
        "cross_budget": 150.0,
        "compile_need": 20.0 if q else 90.0,
        "transform_compile_need": 20.0 if q else 150.0,
        "pytest_timeout": 600.0 if q else 200.0,
        "threads": 1 if q and args.device == "cpu" else 0,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    size = lambda s: tuple(int(v) for v in s.lower().split("x")) if s else None  # noqa: E731
    args.crop, args.size, args.check_size = size(args.crop), size(args.size), size(args.check_size)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    args.device = torch.device(args.device)
    if args.official_repo:
        repo = Path(args.official_repo).resolve()
        if not (repo / "models" / "dcae.py").is_file():
            print(f"--official-repo {repo}: no models/dcae.py there; running without it")
            args.official_missing = str(repo)
            args.official_repo = None
        else:
            args.official_repo = str(repo)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns 0 even when sections failed (see the tables)."""
    argv_list = sys.argv[1:] if argv is None else argv
    args = parse_args(argv_list)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget)
    rep = Report(args.out, ["python", "benchmarks/gpu_check.py", *argv_list])
    st: Dict[str, Any] = {}
    with rep.section("env", "Environment"):
        section_env(rep, args)
        st["kodak"] = kodak_files(args.kodak)
    if "kodak" not in st:
        return 1
    sections: List[Tuple[str, str, Callable[[], None]]] = [
        (
            "correctness",
            "a. Correctness on the device",
            lambda: section_correctness(rep, args, st),
        ),
        (
            "cross_device",
            "b. Cross-device streams",
            lambda: section_cross_device(rep, args, st, budget),
        ),
        ("latency", "c. Latency, paper preset", lambda: section_latency(rep, args, st)),
        (
            "training",
            "d. Training throughput, paper preset",
            lambda: section_training(rep, args, st),
        ),
        ("compile", "e. torch.compile", lambda: section_compile(rep, args, st, budget)),
    ]
    for key, title, fn in sections:
        if key in args.skip:
            continue
        if key == "compile" and "correctness" in args.skip:
            st["check_model"] = seeded_model(args.check_preset).to(args.device)
        with rep.section(key, title):
            fn()
    rep.data["total seconds"] = round(time.perf_counter() - _T0, 1)
    rep.write()
    log(f"done in {rep.data['total seconds']} s; tables in {args.out}\n")
    print(rep.markdown(), flush=True)  # the tail of the output holds the tables too
    return 0


if __name__ == "__main__":
    sys.exit(main())
