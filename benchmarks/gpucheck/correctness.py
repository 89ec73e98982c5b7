"""Section ``correctness``: the device works as a user expects.

First ``pytest -m cuda`` in a subprocess (``tests/test_cuda.py`` and the other
``cuda``-marked tests; its log is ``pytest_cuda.log``; ``--skip pytest``
leaves it out), then the same checks as a user would run them:
``DCAEModel(...).to(device)`` and an exact ``forward`` / ``compress`` /
``decompress`` round trip on Kodak content (batch 1 and 2, torch defaults and
TF32 off), every attention backend against the reference one, fast mode
(bfloat16, and float16 on CUDA), ``dcae.training`` with ``amp=True`` and the
auxiliary optimizer, and :func:`dcae.encode` / :func:`dcae.decode` with the
model on the device.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

import dcae
from dcae.config import TrainConfig
from dcae.format.pixels import image_to_tensor, tensor_to_uint8
from dcae.layers.attention import BACKENDS
from dcae.layers.fast import fast_mode, tf32
from dcae.training.loop import train

from .common import REPO, Report, image_batch, load_image, round_trip, seeded_model, use_backend

__all__ = ["run_pytest", "section_correctness"]


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
        "dcae.training.loop.train(TrainConfig(amp=True, ...)): 3 steps, update(), a round trip",
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
    from dcae.zoo import shipped

    if shipped.available_qualities():
        q = shipped.default_quality()
        if shipped.load_pretrained(q) is shipped.load_pretrained(q):
            rep.note(
                "finding: dcae.zoo.shipped.load_pretrained(q) returns one cached instance, so "
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
