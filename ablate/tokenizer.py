"""Tokenizers: the byte tokenizer of the byte-level models, and Hugging Face tokenizers.

Both satisfy the small ``Tokenizer`` protocol (encode / decode / vocab_size / n_bytes /
eos_id / save) that evaluation and training rely on, so neither needs to know which
kind it holds. Byte ids 0..255 are UTF-8 bytes; special strings get ids 256.. in order,
so ``ByteTokenizer(("<pad>", "<bot>", "<eot>"))`` has the reference models' vocab of 259.

    >>> tok = ByteTokenizer(("<pad>", "<bot>", "<eot>"))
    >>> tok.encode("hi<eot>")
    [104, 105, 258]
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ablate.config import read_json_object
from ablate.errors import AblateError, unknown_name_error

logger = logging.getLogger(__name__)

BYTE_TOKENIZER_FILE = "tokenizer.json"
BYTE_TOKENIZER_VERSION = 1
N_BYTES = 256
# Special names treated as end-of-sequence when present; "<eot>" is deliberately absent
# because in CODI it means end-of-thought, not end-of-text.
EOS_NAMES = ("<eos>", "<|endoftext|>", "</s>")
# Files whose presence marks a directory as holding a Hugging Face tokenizer.
HF_TOKENIZER_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
)


@runtime_checkable
class Tokenizer(Protocol):
    """What evaluation and training need from any tokenizer."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def n_bytes(self, text: str) -> int: ...

    def special_id(self, name: str) -> int: ...

    def save(self, directory: str | Path) -> Path: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then one id per special string (256, 257, ...)."""

    def __init__(self, specials: Sequence[str] = ()) -> None:
        specials = tuple(specials)
        for name in specials:
            if not isinstance(name, str) or not name:
                raise AblateError(
                    f"Byte tokenizer special {name!r} is not a non-empty string; "
                    "pass names like '<pad>', '<bot>', '<eot>'"
                )
        if len(set(specials)) != len(specials):
            raise AblateError(
                f"Byte tokenizer specials {list(specials)} contain duplicates; list each once"
            )
        self.specials: tuple[str, ...] = specials
        self._ids = {name: N_BYTES + i for i, name in enumerate(specials)}
        # Longest first, so a special that is a prefix of another cannot shadow it.
        ordered = sorted(specials, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if specials else None

    @property
    def vocab_size(self) -> int:
        return N_BYTES + len(self.specials)

    @property
    def eos_id(self) -> int | None:
        for name in EOS_NAMES:
            if name in self._ids:
                return self._ids[name]
        return None

    def special_id(self, name: str) -> int:
        if name not in self._ids:
            raise unknown_name_error("special token", name, self.specials)
        return self._ids[name]

    def encode(self, text: str) -> list[int]:
        """UTF-8 bytes of ``text``; literal special strings become their special id."""
        if self._pattern is None:
            return list(text.encode("utf-8"))
        ids: list[int] = []
        position = 0
        for match in self._pattern.finditer(text):
            ids.extend(text[position : match.start()].encode("utf-8"))
            ids.append(self._ids[match.group()])
            position = match.end()
        ids.extend(text[position:].encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of ``encode``; invalid UTF-8 becomes U+FFFD, specials their strings."""
        pieces: list[str] = []
        pending = bytearray()
        for raw in ids:
            token = int(raw)
            if 0 <= token < N_BYTES:
                pending.append(token)
                continue
            if not N_BYTES <= token < self.vocab_size:
                raise AblateError(
                    f"Token id {token} is outside the byte tokenizer's vocabulary "
                    f"[0, {self.vocab_size}); decode ids produced by a model with this vocab"
                )
            pieces.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            pieces.append(self.specials[token - N_BYTES])
        pieces.append(pending.decode("utf-8", errors="replace"))
        return "".join(pieces)

    def n_bytes(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        return {"type": "byte", "specials": list(self.specials), "version": BYTE_TOKENIZER_VERSION}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> ByteTokenizer:
        if data.get("type") != "byte":
            raise AblateError(
                f"{source}: tokenizer type {data.get('type')!r} is not 'byte'; "
                "write it with ByteTokenizer.save"
            )
        if data.get("version") != BYTE_TOKENIZER_VERSION:
            raise AblateError(
                f"{source}: byte tokenizer version {data.get('version')!r} is not supported "
                f"(expected {BYTE_TOKENIZER_VERSION}); re-save it with this version of ablate"
            )
        unknown = sorted(set(data) - {"type", "specials", "version"})
        if unknown:
            raise AblateError(
                f"{source}: unknown byte tokenizer keys {unknown}; allowed: type, specials, version"
            )
        specials = data.get("specials", [])
        if not isinstance(specials, list):
            raise AblateError(f"{source}: 'specials' must be a list of strings, got {specials!r}")
        return cls(tuple(specials))

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json``; returns its path."""
        path = Path(directory) / BYTE_TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ByteTokenizer:
        """Read ``directory/tokenizer.json`` (or that file itself) written by ``save``."""
        path = Path(directory)
        if path.is_dir():
            path = path / BYTE_TOKENIZER_FILE
        if not path.is_file():
            raise AblateError(
                f"No byte tokenizer at {path}; write one with ByteTokenizer(...).save(directory)"
            )
        return cls.from_json(_read_json_object(path), str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer) and other.specials == self.specials

    def __hash__(self) -> int:
        return hash(("byte", self.specials))

    def __repr__(self) -> str:
        return f"ByteTokenizer(specials={self.specials!r})"


class HuggingFaceTokenizer:
    """A Hugging Face tokenizer seen through the ``Tokenizer`` protocol.

    ``encode`` adds no BOS/EOS and ``decode`` keeps special tokens and spacing, so that
    ``decode(encode(text)) == text`` for byte-level BPE (GPT-2).
    """

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf_tokenizer = hf_tokenizer

    @property
    def vocab_size(self) -> int:
        # len() counts added tokens (GPT-2 + CODI's 3 specials = 50260); .vocab_size does not.
        return len(self.hf_tokenizer)

    @property
    def eos_id(self) -> int | None:
        return self.hf_tokenizer.eos_token_id

    def special_id(self, name: str) -> int:
        vocab = self.hf_tokenizer.get_vocab()
        if name not in vocab:
            specials = [t for t in self.hf_tokenizer.all_special_tokens if t in vocab]
            raise unknown_name_error("special token", name, specials)
        return int(vocab[name])

    def encode(self, text: str) -> list[int]:
        return list(self.hf_tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf_tokenizer.decode(
            [int(i) for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def n_bytes(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.hf_tokenizer.save_pretrained(str(path))
        return path

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({type(self.hf_tokenizer).__name__}, vocab={self.vocab_size})"


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved in ``directory``: a byte tokenizer's JSON or Hugging Face files.

    Hugging Face tokenizers are read from local files only and never run remote code.
    """
    path = Path(directory)
    if not path.exists():
        raise AblateError(
            f"Tokenizer directory {path} does not exist; pass the checkpoint directory "
            "that holds tokenizer.json or the Hugging Face tokenizer files"
        )
    if path.is_file():
        if path.suffix != ".json":
            raise AblateError(
                f"{path} is not a tokenizer: pass its directory or a byte tokenizer .json file"
            )
        return ByteTokenizer.from_json(_read_json_object(path), str(path))
    byte_file = path / BYTE_TOKENIZER_FILE
    if byte_file.is_file():
        data = _read_json_object(byte_file)
        # A Hugging Face tokenizer.json has no top-level "type"; ours always does.
        if "type" in data:
            return ByteTokenizer.from_json(data, str(byte_file))
    if not any((path / name).is_file() for name in HF_TOKENIZER_FILES):
        raise AblateError(
            f"No tokenizer in {path}: expected {BYTE_TOKENIZER_FILE} with type 'byte' "
            f"(ByteTokenizer.save) or Hugging Face files ({', '.join(HF_TOKENIZER_FILES)}); "
            "save one with tokenizer.save(directory)"
        )
    # Imported here: transformers takes seconds to import and byte models never need it.
    from transformers import AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AblateError(
            f"Could not load the Hugging Face tokenizer in {path}: {first_line}; "
            "re-save it with tokenizer.save_pretrained(directory)"
        ) from err
    logger.info("loaded Hugging Face tokenizer %s from %s", type(hf_tokenizer).__name__, path)
    return HuggingFaceTokenizer(hf_tokenizer)


def check_encodable(
    tokenizer: Tokenizer, text: str, source: str, *, vocab_size: int | None = None
) -> list[int]:
    """The ids of ``text``, after checking they fit the model and decode back to ``text``.

    ``vocab_size`` is the model's vocabulary (defaults to the tokenizer's); a model with
    256 ids cannot read the byte tokenizer's specials. ``source`` names where the text
    came from (file and line, item id) so the error points at it.
    """
    try:
        ids = tokenizer.encode(text)
    except UnicodeEncodeError as err:  # lone surrogates, e.g. from "\ud800" escapes in JSON
        raise AblateError(
            f"{source}: text is not encodable as UTF-8 at character {err.start} "
            f"({text[err.start : err.end]!r}); fix or drop that character in the source"
        ) from err
    limit = tokenizer.vocab_size if vocab_size is None else vocab_size
    bad = [i for i in ids if not 0 <= i < limit]
    if bad:
        raise AblateError(
            f"{source}: text encodes to token id {max(bad)} but the model has {limit} ids; "
            "use the tokenizer the model was trained with, or remove special strings "
            "from the text"
        )
    decoded = tokenizer.decode(ids)
    if decoded != text:
        position = next(
            (i for i, (a, b) in enumerate(zip(decoded, text, strict=False)) if a != b),
            min(len(decoded), len(text)),
        )
        snippet = text[max(0, position - 10) : position + 10]
        raise AblateError(
            f"{source}: text does not survive encode/decode (first difference at character "
            f"{position}, near {snippet!r}); use a tokenizer that covers this text"
        )
    return ids


def _read_json_object(path: Path) -> dict[str, Any]:
    return read_json_object(path, "re-save the tokenizer")
