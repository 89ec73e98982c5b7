"""Time one training step of a DCAE preset under the options that could
speed it up on a CPU (or a GPU), and print a table.

Each variant runs ``--warmup`` steps, then ``--steps`` timed steps; the table
gives the median seconds per step, pixels per second and the ratio to the
first variant (measured in the same process, one after the other)::

    python benchmarks/train_step.py --threads 2
    python benchmarks/train_step.py --variants fp32,bf16-transforms --patch 256 --batch 2

Variants: ``fp32`` (the default step), ``channels-last`` (model and input in
channels-last memory format), ``bf16-transforms`` (g_a/g_s under bfloat16
autocast, :func:`dcae.layers.fast.fast_mode`; the entropy model stays float32),
``bf16-all`` (the whole forward under autocast), ``compile``
(``torch.compile`` of the model's forward); join them with ``+``, e.g.
``bf16-transforms+channels-last``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dcae import DCAEModel
from dcae.layers.fast import fast_mode
from dcae.training.loss import RateDistortionLoss

VARIANTS = ("fp32", "channels-last", "bf16-transforms", "bf16-all", "compile")


def run(variant: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = DCAEModel(args.preset).train()
    x = torch.rand(args.batch, 3, args.patch, args.patch)
    parts = set(variant.split("+"))
    if "channels-last" in parts:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if "bf16-transforms" in parts:
        fast_mode(model)
    net = torch.compile(model) if "compile" in parts else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    crit = RateDistortionLoss(0.0067)
    vr = model.variable_rate
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        q = torch.rand(args.batch) * 7 + 1 if vr else None
        lam = model.lambda_for(q) if vr else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16-all" in parts):
            out = net(x, q) if vr else net(x)
        out["x_hat"] = out["x_hat"].float()
        loss = crit(out, x, lam)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small-vr")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for v in args.variants.split(","):
        try:
            rows.append((v, run(v, args)))
        except Exception as e:  # a variant this machine cannot run
            rows.append((v, float("nan")))
            print(f"{v}: {type(e).__name__}: {e}")
    base = rows[0][1]
    px = args.batch * args.patch**2
    print(f"preset {args.preset}, batch {args.batch} x {args.patch}^2, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps")  # fmt: skip
    print(f"{'variant':<18} {'s/step':>8} {'Mpx/s':>7} {'ratio':>6}")
    for v, t in rows:
        print(f"{v:<18} {t:8.3f} {px / t / 1e6:7.3f} {t / base:6.2f}")


if __name__ == "__main__":
    main()
