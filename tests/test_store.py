"""Run directories: atomic record files, lock, manifest, config-hash refusal, reading back."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

from ablate.errors import AblateError
from ablate.store import (
    LIBRARIES,
    MANIFEST,
    OWNER,
    RECORDS,
    RunStore,
    finished_jobs,
    missing_jobs,
    read_manifest,
    read_records,
)

CONFIG = {"version": 1, "name": "unit"}
HASH = "a" * 64
JOBS = ["job-a", "job-b", "job-c"]


def frame(job_id: str, n: int = 3, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "job_id": [job_id] * n,
        "item_id": [f"i{offset + i}" for i in range(n)],
        "k": pd.array([1, None, 4][:n], dtype="Int64"),
        "correct": [float(i % 2) for i in range(n)],
        "erank_per_iter": [[1.0, 1.5 + i] for i in range(n)],
    })


def open_store(run_dir, config_hash: str = HASH) -> RunStore:
    return RunStore.open(run_dir, config=CONFIG, config_hash=config_hash, job_ids=JOBS)


def test_records_read_back_sorted_by_job_then_row_order_with_dtypes(tmp_path):
    with open_store(tmp_path / "run") as store:
        store.write("job-b", frame("job-b", offset=10))
        store.write("job-a", frame("job-a"))
    records = read_records(tmp_path / "run")
    expected = pd.concat([frame("job-a"), frame("job-b", offset=10)], ignore_index=True)
    pd.testing.assert_frame_equal(records, expected)
    # Only job-c is missing, and the reader says so rather than failing.
    assert records.attrs["missing_jobs"] == ["job-c"]
    assert missing_jobs(tmp_path / "run") == ["job-c"]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    # Atomicity: a write that fails half-way never replaces or truncates the old file.
    run_dir = tmp_path / "run"
    with open_store(run_dir) as store:
        store.write("job-a", frame("job-a"))
        bad = frame("job-a").assign(item_id=[object(), object(), object()])
        with pytest.raises(pa.ArrowException):  # pyarrow cannot serialise plain objects
            store.write("job-a", bad)
    assert sorted(p.name for p in (run_dir / RECORDS).iterdir()) == ["job-a.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / RECORDS / "job-a.parquet"),
                                  frame("job-a"))


def test_leftover_temp_file_is_not_a_finished_job_and_is_cleaned(tmp_path):
    run_dir = tmp_path / "run"
    open_store(run_dir).close()
    temp = run_dir / RECORDS / ".job-b.12345.tmp"
    temp.write_bytes(b"PAR1 half a file")  # what a SIGKILL during a write leaves behind
    assert finished_jobs(run_dir) == set()
    with open_store(run_dir) as store:
        assert store.finished() == set()
    assert not temp.exists()


def test_second_open_is_refused_while_locked_and_allowed_after_close(tmp_path):
    run_dir = tmp_path / "run"
    store = open_store(run_dir)
    with pytest.raises(AblateError, match="in use by another ablate run") as err:
        open_store(run_dir)
    message = str(err.value)
    assert str(run_dir) in message and "--out" in message and "\n" not in message
    assert f"process {json.loads((run_dir / OWNER).read_text())['pid']}" in message
    store.close()
    assert not (run_dir / OWNER).exists()
    open_store(run_dir).close()


def test_lock_left_by_dead_process_is_taken_over_with_a_note(tmp_path, caplog):
    run_dir = tmp_path / "run"
    open_store(run_dir).close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / OWNER).write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "t"}))
    with caplog.at_level(logging.WARNING, logger="ablate.store"), open_store(run_dir) as store:
        assert json.loads((run_dir / OWNER).read_text())["pid"] != dead.pid
        store.write("job-a", frame("job-a"))
    assert f"taking over from process {dead.pid}" in caplog.text


def test_different_config_hash_is_refused_and_nothing_is_lost(tmp_path):
    run_dir = tmp_path / "run"
    with open_store(run_dir) as store:
        store.write("job-a", frame("job-a"))
    before = (run_dir / MANIFEST).read_text()
    with pytest.raises(AblateError, match="different experiment config") as err:
        open_store(run_dir, config_hash="b" * 64)
    assert "new --out" in str(err.value) and "delete" in str(err.value)
    assert (run_dir / MANIFEST).read_text() == before
    assert finished_jobs(run_dir) == {"job-a"}
    open_store(run_dir).close()  # the refusal released the lock


def test_foreign_nonempty_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AblateError, match="not an ablate run directory"):
        open_store(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_manifest_records_config_environment_and_sessions(tmp_path):
    run_dir = tmp_path / "run"
    open_store(run_dir).close()
    open_store(run_dir).close()
    manifest = read_manifest(run_dir)
    assert manifest["config"] == CONFIG and manifest["config_hash"] == HASH
    assert manifest["jobs"] == JOBS
    assert set(manifest["libraries"]) == set(LIBRARIES)
    assert manifest["libraries"]["pandas"] == pd.__version__
    assert manifest["python"] == sys.version.split()[0]
    for key in ("ablate_version", "git", "platform", "created"):
        assert key in manifest
    assert len(manifest["sessions"]) == 2  # one per open: a resumed run says so


def test_reading_a_directory_without_manifest_is_a_one_line_error(tmp_path):
    with pytest.raises(AblateError, match="not an ablate run directory"):
        read_records(tmp_path)
