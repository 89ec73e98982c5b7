"""Shared fixtures: small models with CDF tables, deterministic seeds."""

from __future__ import annotations

import os

import pytest
import torch

from dcae import DCAEModel

torch.set_num_threads(int(os.environ.get("DCAE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def small_model() -> DCAEModel:
    """The ``small`` preset with random weights, eval mode, CDFs updated."""
    torch.manual_seed(0)
    model = DCAEModel("small").eval()
    model.update(force=True)
    return model


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
