"""Plot training curves (loss, bpp, PSNR) of one or more ``dcae train`` runs.

    python examples/plot_training_curves.py RUN_DIR [RUN_DIR ...] -o curves.png

Each run folder holds the ``train.csv`` and ``val.csv`` written by ``dcae train``.
A variable-rate run's ``val.csv`` has one row per rate point and step (column
``quality``) and a summary row (empty quality): each rate point gets its own
validation line, and the summary loss is drawn in the loss panel.
Needs matplotlib (not a dcae dependency).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _number(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


def read(path: Path, quality: str = "") -> dict:
    """Columns of a CSV as floats; with a ``quality`` column, only its rows
    equal to ``quality`` ("" = the rows without one)."""
    rows = list(csv.DictReader(open(path))) if path.is_file() else []
    rows = [r for r in rows if r.get("quality", "") == quality]
    return {k: [_number(r[k]) for r in rows] for k in (rows[0].keys() if rows else [])}


def qualities(path: Path) -> list:
    """The rate points of a variable-rate run's ``val.csv`` (empty otherwise)."""
    rows = list(csv.DictReader(open(path))) if path.is_file() else []
    return sorted({r["quality"] for r in rows if r.get("quality")}, key=float)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("-o", "--output", default="training_curves.png")
    p.add_argument("--offset", nargs="*", type=int, default=[],
                   help="step offset per run (warm-started runs)")  # fmt: skip
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours: dict = {}  # runs named "<phase>-<point>" share the colour of <point>
    for i, run in enumerate(args.runs):
        off = args.offset[i] if i < len(args.offset) else 0
        tr, va = read(Path(run) / "train.csv"), read(Path(run) / "val.csv")
        label = Path(run).name
        c = colours.setdefault(label.split("-")[-1], f"C{len(colours) % 10}")
        if tr:
            steps = [s + off for s in tr["step"]]
            axes[0].plot(steps, tr["loss"], label=label, lw=0.8, color=c)
            axes[1].plot(steps, tr["bpp"], label=f"{label} train", lw=0.8, color=c)
        points = qualities(Path(run) / "val.csv")
        if va and points:  # variable rate: the summary row's loss
            vsteps = [s + off for s in va["step"]]
            axes[0].plot(vsteps, va["loss"], "o-", label=f"{label} val (geo. mean)", ms=3, color=c)
        for q in points:
            vq = read(Path(run) / "val.csv", q)
            vsteps = [s + off for s in vq["step"]]
            shade = f"C{(int(float(q)) - 1) % 10}"
            axes[1].plot(vsteps, vq["bpp"], "o--", label=f"{label} q{q}", ms=2, color=shade)
            axes[2].plot(vsteps, vq["psnr"], "o-", label=f"{label} q{q}", ms=2, color=shade)
        if va and not points:
            vsteps = [s + off for s in va["step"]]
            axes[1].plot(vsteps, va["bpp"], "o--", label=f"{label} val", ms=3, color=c)
            axes[2].plot(vsteps, va["psnr"], "o-", label=f"{label} val", ms=3, color=c)
    for ax, title in zip(axes, ("train loss", "bpp (estimated)", "validation PSNR (dB)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
