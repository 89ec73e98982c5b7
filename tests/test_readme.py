"""The Python example of README.md runs as written and does what its
comments say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_keeps_its_promises():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "README.md should hold one Python example"
    ns: dict = {}
    # the block asserts its own exact entropy-coding round trip
    exec(compile(blocks[0], "README.md python example", "exec"), ns)
    assert tuple(ns["f"].shape) == (2, 64, 16, 16)  # MSFA keeps the shape
    assert tuple(ns["F_dict"].shape) == (2, 32, 16, 16)  # dictionary feature
    assert tuple(ns["x_hat"].shape) == (1, 3, 100, 150)  # "any size"
    assert float(ns["x_hat"].min()) >= 0 and float(ns["x_hat"].max()) <= 1
