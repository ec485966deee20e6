"""Tests for ablate.tokenizer: byte round trips, specials, save/load, encodability checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from ablate.errors import AblateError
from ablate.tokenizer import (
    ByteTokenizer,
    HuggingFaceTokenizer,
    Tokenizer,
    check_encodable,
    load_tokenizer,
)

REFERENCE_SPECIALS = ("<pad>", "<bot>", "<eot>")
TEXTS = ["", "Ann has 3 apples.", "naïve café — ünïcödé ✓ 🙂", "line\n\n\ttab  ", "<eot"]


@pytest.mark.parametrize("text", TEXTS)
def test_plain_byte_ids_are_the_utf8_bytes_and_round_trip(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    assert tokenizer.n_bytes(text) == len(ids)


def test_reference_specials_give_vocab_259_and_ids_in_order() -> None:
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    assert tokenizer.vocab_size == 259
    assert ByteTokenizer().vocab_size == 256
    assert [tokenizer.special_id(s) for s in REFERENCE_SPECIALS] == [256, 257, 258]


def test_literal_special_strings_encode_to_their_id_and_decode_back() -> None:
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    text = "a<bot>é<eot><eot"
    ids = tokenizer.encode(text)
    assert ids == [97, 257, 0xC3, 0xA9, 258, *b"<eot"]
    assert tokenizer.decode(ids) == text
    # n_bytes counts the text's UTF-8 bytes, not tokens.
    assert tokenizer.n_bytes(text) == len(text.encode("utf-8"))


def test_longer_special_wins_over_its_prefix() -> None:
    tokenizer = ByteTokenizer(("<a>", "<a>b"))
    assert tokenizer.encode("<a>b<a>") == [257, 256]


def test_invalid_utf8_decodes_to_replacement_character() -> None:
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    assert tokenizer.decode([0xC3, 258, 104]) == "\ufffd<eot>h"


def test_decode_rejects_ids_outside_the_vocabulary() -> None:
    with pytest.raises(AblateError, match="259"):
        ByteTokenizer(REFERENCE_SPECIALS).decode([259])


def test_unknown_special_names_the_close_match() -> None:
    with pytest.raises(AblateError, match="Did you mean '<eot>'"):
        ByteTokenizer(REFERENCE_SPECIALS).special_id("<eos>")


def test_duplicate_or_empty_specials_are_rejected() -> None:
    with pytest.raises(AblateError, match="duplicates"):
        ByteTokenizer(("<a>", "<a>"))
    with pytest.raises(AblateError, match="non-empty"):
        ByteTokenizer(("",))


def test_eos_id_only_for_end_of_text_specials() -> None:
    # "<eot>" is CODI's end-of-thought marker, not end of text.
    assert ByteTokenizer(REFERENCE_SPECIALS).eos_id is None
    assert ByteTokenizer(("<pad>", "<eos>")).eos_id == 257


def test_save_writes_the_documented_json_and_loads_back(tmp_path: Path) -> None:
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    path = tokenizer.save(tmp_path / "ckpt")
    assert path.name == "tokenizer.json"
    assert json.loads(path.read_text()) == {
        "type": "byte",
        "specials": ["<pad>", "<bot>", "<eot>"],
        "version": 1,
    }
    assert ByteTokenizer.load(tmp_path / "ckpt") == tokenizer
    loaded = load_tokenizer(tmp_path / "ckpt")
    assert isinstance(loaded, ByteTokenizer) and loaded == tokenizer
    assert isinstance(loaded, Tokenizer)


def test_load_tokenizer_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(AblateError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(AblateError, match="No tokenizer in"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"type": "byte", "specials": [], "version": 9}')
    with pytest.raises(AblateError, match="version 9"):
        load_tokenizer(tmp_path)


def test_check_encodable_returns_ids_for_lossless_text() -> None:
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    assert check_encodable(tokenizer, "hi<eot>", "item 3") == [104, 105, 258]


def test_check_encodable_rejects_specials_beyond_the_model_vocab() -> None:
    # The pure byte model has 256 ids, so "<eot>" (id 258) cannot be fed to it.
    tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
    with pytest.raises(AblateError, match=r"^data\.jsonl:4: .*258.*256 ids"):
        check_encodable(tokenizer, "x<eot>", "data.jsonl:4", vocab_size=256)


def test_check_encodable_rejects_unencodable_characters() -> None:
    with pytest.raises(AblateError, match="item 7"):
        check_encodable(ByteTokenizer(), "a\ud800b", "item 7")


class LowercasingTokenizer:
    """A tiny real lossy tokenizer: it folds case, so round trips can fail."""

    vocab_size = 256
    eos_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.lower().encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def n_bytes(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def special_id(self, name: str) -> int:
        raise AblateError(f"no special {name}")

    def save(self, directory: str | Path) -> Path:
        return Path(directory)


def test_check_encodable_rejects_round_trip_mismatch_at_the_first_difference() -> None:
    with pytest.raises(AblateError, match=r"q\.txt: .*character 4"):
        check_encodable(LowercasingTokenizer(), "abcdEf", "q.txt")


@pytest.mark.slow  # importing transformers takes a few seconds
def test_hugging_face_tokenizer_directory_loads_through_the_protocol(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(["Ann has 3 apples. She buys 4 more."] * 5, trainer)
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>"
    ).save_pretrained(str(tmp_path))

    tokenizer = load_tokenizer(tmp_path)  # has a tokenizer.json, but the HF kind
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    text = "Ann has 3 apples.\n\n naïve ✓"
    ids = check_encodable(tokenizer, text, "hf")
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_id == tokenizer.special_id("<|endoftext|>") == 0
    assert tokenizer.vocab_size == len(backend.get_vocab())
    assert tokenizer.n_bytes(text) == len(text.encode("utf-8"))
