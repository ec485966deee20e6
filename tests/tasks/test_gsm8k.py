"""Tests for the GSM8K loader: schema, depth counts, file formats and malformed-file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ablate.errors import AblateError
from ablate.tasks.gsm8k import GSM8KTask, count_annotations, count_lines
from ablate.tasks.prompts import teacher_forced_example

RECORDS = [
    {
        "question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
        "answer": "She sold 48/2 = <<48/2=24>>24 in May.\nIn all 48+24 = <<48+24=72>>72.\n#### 72",
    },
    {
        "question": "A plant costs $1,080. What does it cost?",
        "answer": "It costs $1,080.\n\n#### 1,080",
        "extra": "ignored",
    },
]


def write_jsonl(path: Path, rows: list[dict[str, object]] | list[str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_depth_counts_on_hand_written_solutions() -> None:
    assert count_annotations("a <<1+2=3>>3 b <<3*4=12>>12") == 2
    assert count_annotations("<<no equals>> <<x=1>>") == 1
    assert count_annotations("<<a=b>c=d>>") == 0  # no ">" allowed inside
    assert count_annotations("<<1=1>><<2=2>>") == 2  # adjacent, non-overlapping
    assert count_lines("a\n\nb\n   \nc") == 3


def test_jsonl_records_become_items_with_gold_and_depths(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", RECORDS)
    items, report = GSM8KTask().load_with_report("test", path=str(path))
    assert (report.n_records, report.n_items, report.n_excluded) == (2, 2, 0)
    first, second = items
    assert first.solution == "She sold 48/2 = <<48/2=24>>24 in May.\nIn all 48+24 = <<48+24=72>>72."
    assert (first.answer, first.answer_value) == ("72", 72.0)
    assert first.steps == ("<<48/2=24>>", "<<48+24=72>>")
    assert (first.depth_annotations, first.depth_lines) == (2, 2)
    assert (second.answer, second.answer_value) == ("1,080", 1080.0)  # as written; value parsed
    assert (second.depth_annotations, second.depth_lines) == (0, 1)
    assert len({first.doc_hash, second.doc_hash}) == 2 and len(first.doc_hash) == 16


def test_parquet_json_and_directory_give_the_same_items(tmp_path: Path) -> None:
    reference = GSM8KTask().load("test", path=str(write_jsonl(tmp_path / "a.jsonl", RECORDS)))
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "b.parquet")
    (tmp_path / "c.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    directory = tmp_path / "dir"
    directory.mkdir()
    write_jsonl(directory / "test.jsonl", RECORDS)
    for path in (tmp_path / "b.parquet", tmp_path / "c.json", directory):
        assert GSM8KTask().load("test", path=str(path)) == reference


def test_limit_keeps_the_first_items(tmp_path: Path) -> None:
    path = str(write_jsonl(tmp_path / "t.jsonl", RECORDS))
    assert [i.answer for i in GSM8KTask().load("test", path=path, limit=1)] == ["72"]


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"question": "q", "answer": ', "invalid JSON"),
        ('{"question": "q"}', "missing field 'answer'"),
        ('{"question": "q", "answer": "no marker"}', "no '#### <number>'"),
        ('{"question": "q", "answer": "x\\n#### many"}', "no number after"),
        ('{"question": 3, "answer": "#### 1"}', "'question' is int"),
        ("[1, 2]", "not an object"),
    ],
)
def test_malformed_line_error_names_file_line_and_schema(
    tmp_path: Path, second_line: str, message: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [RECORDS[0], second_line])
    with pytest.raises(AblateError) as error:
        GSM8KTask().load("test", path=str(path))
    text = str(error.value)
    assert f"{path}:2:" in text and message in text and "GSM8K schema" in text
    assert "\n" not in text


def test_empty_or_missing_data_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(AblateError, match="no records"):
        GSM8KTask().load("test", path=str(tmp_path / "empty.jsonl"))
    with pytest.raises(AblateError, match="No 'train' data"):
        GSM8KTask().load("train", path=str(tmp_path))
    with pytest.raises(AblateError, match="does not exist"):
        GSM8KTask().load("test", path=str(tmp_path / "nope.jsonl"))
    (tmp_path / "data.csv").write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(AblateError, match="unsupported data file type '.csv'"):
        GSM8KTask().load("test", path=str(tmp_path / "data.csv"))


def test_real_gsm8k_test_split_reconstructs_every_answer_field(shared: Path) -> None:
    root = shared / "data" / "gsm8k"  # the `shared` fixture skips when ../shared is absent
    if not (root / "test.jsonl").is_file():
        pytest.skip(f"GSM8K not found at {root}")
    task = GSM8KTask()
    items = task.load("test", path=str(root))
    raw = [json.loads(line) for line in (root / "test.jsonl").read_text().splitlines() if line]
    assert len(items) == len(raw) == 1319
    for item, record in zip(items, raw, strict=True):
        example = teacher_forced_example(item, task.text_format)
        # The target without its leading space is the original answer field, byte for byte.
        assert example.target[1:] == record["answer"]
        assert example.answer_text == record["answer"].split("#### ")[-1]
        assert item.depth_annotations == record["answer"].count("<<")
    first = items[0]
    assert (first.answer, first.depth_annotations, first.depth_lines) == ("18", 2, 2)
