"""Fixtures for evaluation tests: a handful of short synthetic items and a byte tokenizer."""

from __future__ import annotations

import pytest
import torch

from ablate.tasks import SyntheticTask
from ablate.tasks.base import Item
from ablate.tokenizer import ByteTokenizer


def synthetic_items(n: int, split: str = "test") -> list[Item]:
    return SyntheticTask(max_depth=2).load(split, limit=n)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from intra-op threads, and on a busy 2-core machine the
    threads' spin-waiting made these tests ~30x slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def items() -> list[Item]:
    return synthetic_items(5)


@pytest.fixture
def tokenizer() -> ByteTokenizer:
    return ByteTokenizer()
