"""Fixtures for matrix-CODI: a seeded tiny native CODI model (d = 4, byte vocab with the
CODI specials), synthetic items, and a tiny local GPT-2 byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.codi.native import CodiSettings, NativeCodi
from ablate.codi.sequences import CodiLayout, collate, encode_example
from ablate.tasks import get_task
from ablate.tokenizer import ByteTokenizer
from tests.conftest import tiny_model

SPECIALS = ("<pad>", "<bot>", "<eot>")


def tiny_codi(seed: int = 0, projection: str = "network", n_iterations: int = 2) -> NativeCodi:
    thinker = tiny_model(seed, vocab_size=259, max_len=160, specials=list(SPECIALS))
    settings = CodiSettings(projection=projection, n_latents=3, n_iterations=n_iterations)
    torch.manual_seed(seed + 1)
    return NativeCodi(thinker, ByteTokenizer(SPECIALS), settings).eval()


def synthetic_items(n: int = 3, split: str = "test"):
    return get_task("synthetic", max_depth=3).load(split, limit=n)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared machine more threads mostly
    wait for each other. Restored afterwards so other tests keep torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def codi() -> NativeCodi:
    return tiny_codi()


@pytest.fixture
def items():
    return synthetic_items()


@pytest.fixture
def batch(codi, items):
    layout: CodiLayout = codi.layout
    return collate([encode_example(codi.tokenizer, item, layout) for item in items], codi.pad_id)


def byte_level_vocab() -> dict[str, int]:
    """GPT-2's byte-to-unicode alphabet as a 256-token vocabulary plus <|endoftext|>: a
    real GPT-2 tokenizer with no merges (every byte is a token)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    vocab = {chr(c): i for i, c in enumerate(chars)}
    vocab["<|endoftext|>"] = 256
    return vocab


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory) -> Path:
    from transformers.models.gpt2.tokenization_gpt2 import GPT2Tokenizer

    directory = tmp_path_factory.mktemp("gpt2-tokenizer")
    GPT2Tokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(str(directory))
    return directory
