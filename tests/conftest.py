"""Shared fixtures: a seeded tiny model (d = 4, two layers, two heads, byte vocab) that
builds and runs in milliseconds, the research reference cases (the in-repo copy, and
../shared/reference when present), and the location of ../shared (GSM8K)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ablate.model import MatrixThinker, MatrixThinkerConfig
from tests.model.reference_cases import reference_roots

# Tiny models run several times faster on one thread than on two competing ones.
torch.set_num_threads(1)

SHARED = Path(os.environ.get("ABLATE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def tiny_config(**overrides) -> MatrixThinkerConfig:
    base = dict(mat_dim=4, n_layers=2, n_heads=2, n_probes=4, vocab_size=256, max_len=64,
                dropout=0.0, n_iterations=3)
    base.update(overrides)
    return MatrixThinkerConfig(**base)


def tiny_model(seed: int = 0, **overrides) -> MatrixThinker:
    torch.manual_seed(seed)
    return MatrixThinker(tiny_config(**overrides)).eval()


@pytest.fixture
def model() -> MatrixThinker:
    return tiny_model()


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}; set ABLATE_SHARED")
    return SHARED


@pytest.fixture(params=reference_roots(),
                ids=lambda root: "repo" if "tests" in root.parts else "shared")
def reference(request: pytest.FixtureRequest) -> Path:
    """A directory of the four research reference cases: tests/model/reference always (so
    the evidence runs on a clean clone), and ../shared/reference too when it exists."""
    return request.param
