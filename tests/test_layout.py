"""The package layout (#14): the paper's networks in dcae.nn, evaluation in
dcae.eval, and every old module path still the same module."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dcae

MOVED = {
    "attention": "nn",
    "layers": "nn",
    "dictionary": "nn",
    "entropy_model": "nn",
    "slice_coders": "nn",
    "model": "nn",
    "fast": "nn",
    "metrics": "eval",
    "evaluate": "eval",
    "report": "eval",
    "eval_model": "eval",
}
#: modules added to the subpackages after the move (no old path)
ADDED = {"float64": "nn", "host": "nn", "hyper_codec": "nn"}
PACKAGE = Path(dcae.__file__).parent


@pytest.mark.parametrize("name", sorted(MOVED))
def test_old_module_paths_are_the_new_modules(name):
    old = importlib.import_module(f"dcae.{name}")
    new = importlib.import_module(f"dcae.{MOVED[name]}.{name}")
    assert old is new and getattr(dcae, name) is new


def test_subpackages_hold_their_modules_only():
    for pkg in ("nn", "eval"):
        found = {p.stem for p in (PACKAGE / pkg).glob("*.py")} - {"__init__"}
        assert found == {m for m, p in {**MOVED, **ADDED}.items() if p == pkg}


def test_public_api_unchanged():
    from dcae.nn.entropy_model import DCAEEntropyModel
    from dcae.nn.model import DCAEModel

    assert dcae.DCAEModel is DCAEModel and dcae.DCAEEntropyModel is DCAEEntropyModel
    assert all(hasattr(dcae, name) for name in dcae.__all__)


def test_python_m_dcae_eval_model_still_runs():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", "dcae.eval_model", "--help"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and "checkpoint" in result.stdout, result.stderr
