"""Put the repository root on sys.path so that tests import the package as ``core.layout``; the shared tiny IFAdapter."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: a small IFAdapter with the real structure (SDXL context width, 16 processors), for the runtime-level tests
TINY_IFADAPTER = dict(hidden_size=128, heads=2, context_dim=2048,
                      resampler_kwargs=dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2))


@pytest.fixture(scope="module")
def tiny():
    """A seeded tiny IFAdapter in eval mode, every gate alpha at 0.7 (open enough that each layer's delta shows)."""
    from core.ifadapter import IFAdapter

    torch.manual_seed(0)
    m = IFAdapter(**TINY_IFADAPTER).eval().requires_grad_(False)
    with torch.no_grad():
        for p in m.processors().values():
            p.alpha.fill_(0.7)
    return m
