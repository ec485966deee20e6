"""Reading task records from local files (.jsonl, .json, .parquet) or the Hugging Face hub.

Every record carries a ``location`` ("test.jsonl:3", "test.json[2]", "train.parquet row 3",
"hub:openai/gsm8k[test] row 3"; lines and rows count from 1, list indices from 0) so a
task can name exactly which record is malformed.

    >>> records = read_local_records("data/gsm8k", "test", "GSM8K schema")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.errors import AblateError

logger = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Record:
    fields: dict[str, Any]
    location: str


def resolve_split_files(path: str | Path, split: str) -> list[Path]:
    """The files holding ``split``: ``path`` itself, or inside a directory ``{split}.jsonl``,
    ``{split}.json``, ``{split}.parquet``, or hub-snapshot shards ``**/{split}-*.parquet``."""
    root = Path(path)
    if not root.exists():
        raise AblateError(f"Data path {root} does not exist; pass an existing file or directory")
    if root.is_file():
        if root.suffix not in SUFFIXES:
            raise AblateError(
                f"{root}: unsupported data file type '{root.suffix}'; "
                f"use one of {', '.join(SUFFIXES)}"
            )
        return [root]
    for suffix in SUFFIXES:
        candidate = root / f"{split}{suffix}"
        if candidate.is_file():
            return [candidate]
    shards = sorted(root.glob(f"**/{split}-*.parquet"))
    if shards:
        return shards
    raise AblateError(
        f"No '{split}' data in {root}: expected {split}.jsonl, {split}.json, {split}.parquet "
        f"or {split}-*.parquet shards; pass a file or a directory holding one of these"
    )


def open_records(
    path: str | Path | None,
    split: str,
    schema: str,
    *,
    hub_id: str,
    hub_config: str,
    limit: int | None,
) -> tuple[Iterator[Record], str]:
    """(records, source label) from ``path`` if given, else from the hub dataset."""
    if path is None:
        records = read_hub_records(hub_id, hub_config, split, streaming=limit is not None)
        return records, f"hub:{hub_id}"
    return read_local_records(path, split, schema), str(path)


def read_local_records(path: str | Path, split: str, schema: str) -> Iterator[Record]:
    """Records of ``split`` under ``path`` in file order; ``schema`` describes the expected
    fields in error messages."""
    for file in resolve_split_files(path, split):
        logger.info("reading %s records from %s", split, file)
        if file.suffix == ".jsonl":
            yield from _read_jsonl(file, schema)
        elif file.suffix == ".json":
            yield from _read_json(file, schema)
        else:
            yield from _read_parquet(file, schema)


def read_hub_records(
    hub_id: str, config: str, split: str, *, streaming: bool = False
) -> Iterator[Record]:
    """Records of a Hugging Face hub dataset split, through ``datasets.load_dataset``.

    ``streaming`` reads rows as they arrive instead of downloading the whole split first
    (worth it when only the first few items are wanted from a multi-GB dataset).
    """
    import datasets  # imported here: slow, and only needed without a local path

    try:
        dataset = datasets.load_dataset(hub_id, config, split=split, streaming=streaming)
    except Exception as err:  # network, missing split, bad cache: all surface the same way
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AblateError(
            f"Could not load hub dataset {hub_id} (config '{config}', split '{split}'): "
            f"{message}; check the split name and network, or pass a local file with path="
        ) from err
    for index, row in enumerate(dataset, start=1):
        yield Record(dict(row), f"hub:{hub_id}[{split}] row {index}")


def _read_jsonl(file: Path, schema: str) -> Iterator[Record]:
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            location = f"{file}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AblateError(
                    f"{location}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8"
                ) from err
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise AblateError(
                    f"{location}: invalid JSON ({err.msg}); expected one object per line: {schema}"
                ) from err
            yield Record(_as_object(value, location, schema), location)


def _read_json(file: Path, schema: str) -> Iterator[Record]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AblateError(
            f"{file}: not valid UTF-8 JSON ({err}); expected a list of {schema}"
        ) from err
    if not isinstance(value, list):
        raise AblateError(
            f"{file}: top level is {type(value).__name__}; expected a list of objects {schema}"
        )
    for index, entry in enumerate(value):
        location = f"{file}[{index}]"
        yield Record(_as_object(entry, location, schema), location)


def _read_parquet(file: Path, schema: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as err:
        raise AblateError(
            f"{file}: not a readable Parquet file ({err}); expected {schema}"
        ) from err
    for index, row in enumerate(table.to_pylist(), start=1):
        yield Record(row, f"{file} row {index}")


def _as_object(value: Any, location: str, schema: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AblateError(
            f"{location}: record is {type(value).__name__}, not an object; expected {schema}"
        )
    return value
