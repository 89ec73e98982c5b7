"""Compress + decompress time of models on real images, interleaved in one run.

Each model (the shipped one at ``--quality``, or ``--checkpoint`` files,
a variable-rate one at ``--quality``) codes every image ``--repeats`` times,
the models taking turns; the table gives the median per image of
compress + decompress (``model.compress``/``decompress``, batch 1) and the
ratio to the first model::

    python benchmarks/coding_time.py --images /path/to/kodak --limit 6 \\
        --checkpoint old-q3.pt.xz --shipped --quality 4 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from typing import List, Tuple

import torch

from dcae.format.images import image_files
from dcae.format.pixels import image_to_tensor
from dcae.zoo import shipped
from dcae.zoo.loading import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--limit", type=int, default=6)
    p.add_argument("--checkpoint", nargs="*", default=[], help="models to time")
    p.add_argument("--shipped", action="store_true", help="time the shipped model too")
    p.add_argument("--quality", type=float, default=None, help="quality of variable-rate models")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models: List[Tuple[str, torch.nn.Module]] = [(c, load_model(c)) for c in args.checkpoint]
    if args.shipped:
        models.append(("shipped", shipped.load_pretrained()))
    for _, m in models:
        m.eval()
        if getattr(m, "variable_rate", False) and args.quality is not None:
            m.default_quality = args.quality
    images = [image_to_tensor(f)[0] for f in image_files(args.images)[: args.limit]]
    times = {name: [] for name, _ in models}
    with torch.no_grad():
        for x in images[:1]:  # warm-up
            for _, m in models:
                out = m.compress(x)
                m.decompress(out["strings"], out["shape"])
        for x in images:
            runs = {name: [] for name, _ in models}
            for _ in range(args.repeats):
                for name, m in models:
                    t0 = time.perf_counter()
                    out = m.compress(x)
                    m.decompress(out["strings"], out["shape"])
                    runs[name].append(time.perf_counter() - t0)
            for name in runs:
                times[name].append(statistics.median(runs[name]))
    print(
        f"{datetime.date.today()}, {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {len(images)} images, median of {args.repeats}"
    )
    base = statistics.mean(times[models[0][0]])
    print(f"{'model':<40} {'s / image':>10} {'ratio':>6}")
    for name, _ in models:
        t = statistics.mean(times[name])
        print(f"{name[-40:]:<40} {t:10.3f} {t / base:6.2f}")


if __name__ == "__main__":
    main()
