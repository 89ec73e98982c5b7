"""Check dcae on your CUDA machine: correctness, cross-device files, latency,
training throughput and torch.compile, in one run.

Needs a clone of the dcae repository (this script and ``tests/``) with dcae
installed from it and its test extras (``pip install ".[test]"``, for the
``cuda``-marked tests), the 24 Kodak PNG images (``--kodak DIR`` or the
environment variable ``DCAE_KODAK``) and, for the side-by-side numbers,
optionally a clone of the official code, github ``LabShuHangGU/DCAE``
(``--official-repo DIR``; it needs ``timm``, ``einops`` and ``matplotlib``).
From the repository's root::

    python benchmarks/gpu_check.py --device cuda --out gpu-check \\
        --kodak /path/to/kodak --official-repo /path/to/DCAE

Sections (one module each in ``benchmarks/gpucheck/``), each guarded: a
failure records its traceback and the run goes on.

``env``
    date, host, Python, torch, CUDA, cuDNN, GPU, driver, TF32 defaults.
``correctness``
    ``pytest -m cuda`` (``tests/test_cuda.py`` and the other ``cuda``-marked
    tests, in a subprocess; ``--skip pytest`` leaves it out), then the checks
    a user would run: exact round trips after ``.to(device)`` (batch 1 and 2,
    torch defaults and TF32 off), every attention backend against the
    reference one, fast mode, ``dcae.training`` with ``amp=True``,
    ``dcae.encode`` / ``dcae.decode`` with the model on the device.
``cross_device``
    files encoded on the device and decoded on the CPU and the reverse (the
    shipped model and a paper-preset model with random weights, each coding
    mode): how many decode, how many are refused, how many are identical.
``latency``
    compress and decompress of one Kodak image, paper preset, the same
    weights everywhere: the official code (torch defaults, TF32 off), dcae
    exact float32, dcae with torch defaults, dcae fast mode; medians and peak
    memory.
``training``
    steps/s and peak memory of dcae's training step and of the official
    model with its ``train.py`` loss, bfloat16 autocast and float32.
``compile``
    ``torch.compile`` of the per-slice entropy networks (CUDA graphs) and of
    ``g_a``/``g_s``; runs last and only while ``--budget`` leaves time.

It writes ``gpu_check.md`` (the tables), ``gpu_check.json`` (the same, with
per-image details) and ``pytest_cuda.log`` to ``--out`` after every section,
so a run cut short keeps what it measured, and prints the tables at the end.

Options: ``--device`` (cuda, or cpu), ``--out`` (required), ``--kodak``,
``--official-repo``, ``--quick`` (below), ``--skip`` (a comma list of
pytest, correctness, cross_device, latency, training, compile; e.g.
``--skip cross_device,training`` for a re-run), ``--budget`` (seconds the run
plans for, 440: ``--cross-budget`` and ``--reserve`` bound the cross-device
section, ``--compile-need`` and ``--transform-compile-need`` gate the compile
steps), and sizes and counts: ``--max-images``, ``--crop``,
``--diff-images``, ``--size``, ``--check-preset``, ``--check-size``,
``--repeats``, ``--warmup``, ``--train-batch``, ``--train-patch``,
``--train-steps``, ``--train-warmup``, ``--compile-slices``,
``--pytest-timeout``, ``--threads`` (``--help`` says what each sets).

Rehearsal on a machine without a GPU (2 images cropped to 128x128, 2
repeats, the ``small`` preset for the correctness checks, batch 1 for
training, the entropy networks of one slice compiled)::

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpucheck \\
        --kodak /path/to/kodak
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpucheck/, bench_latency
from gpucheck.common import Budget, Report, elapsed, kodak_files, log, seeded_model  # noqa: E402
from gpucheck.compile import section_compile  # noqa: E402
from gpucheck.correctness import section_correctness  # noqa: E402
from gpucheck.cross_device import section_cross_device  # noqa: E402
from gpucheck.env import section_env  # noqa: E402
from gpucheck.latency import section_latency  # noqa: E402
from gpucheck.training import section_training  # noqa: E402

__all__ = ["main"]

KODAK_ENV = "DCAE_KODAK"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for gpu_check.md, gpu_check.json and pytest_cuda.log",
    )
    p.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="the device checked (cuda)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="rehearsal without a GPU: fewer images and repeats, small crops and preset",
    )
    p.add_argument(
        "--kodak",
        type=Path,
        default=os.environ.get(KODAK_ENV) or None,
        help=f"folder of the Kodak PNG images (default: ${KODAK_ENV})",
    )
    p.add_argument(
        "--official-repo",
        default=None,
        help="a clone of the official code (github LabShuHangGU/DCAE), for side-by-side rows",
    )
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
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 with --quick on a CPU)"
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma list: pytest,correctness,cross_device,latency,training,compile",
    )
    args = p.parse_args(argv)
    if args.kodak is None:
        p.error(f"the Kodak images: give --kodak DIR or set {KODAK_ENV}")
    args.kodak = Path(args.kodak)
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
    rep.data["total seconds"] = round(elapsed(), 1)
    rep.write()
    log(f"done in {rep.data['total seconds']} s; tables in {args.out}\n")
    print(rep.markdown(), flush=True)  # the tail of the output holds the tables too
    return 0


if __name__ == "__main__":
    sys.exit(main())
