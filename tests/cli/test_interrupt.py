"""Ctrl-C during ``ablate run``: a real SIGINT to a real run exits 130 with one line that
says how many jobs finished and that the same command resumes; the finished jobs are kept
and rerunning finishes the rest. With output redirected, progress is plain lines. (What
`ablate stats`/`report` do with the partial run: tests/cli/test_report_cmd.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ablate.cli import main
from ablate.store import OWNER, RECORDS, finished_jobs, read_records
from tests.test_executors import one_torch_thread, write_experiment  # noqa: F401

# Many small jobs (2 seeds x 4 T x 6 eval seeds), so the run is still going when the
# signal arrives after its first job.
GRID = {"iterations": [1, 2, 3, 4], "eval_seeds": list(range(6)),
        "interventions": [{"name": "svd_rank_k", "k": [1, 2]}]}
N_JOBS = 2 * 4 * 6
INTERRUPTED = re.compile(r"^interrupted: (\d+) of (\d+) jobs finished in (.+) \(kept\); run the "
                         r"same command to resume$")


@pytest.mark.parametrize("threads", [[], ["--threads", "2"]], ids=["default", "two-threads"])
def test_sigint_exits_130_with_one_line_and_the_same_command_resumes(tmp_path, capsys, threads):
    # With 2 torch threads the rank spectra run on 2 Python threads: a Ctrl-C must not
    # leave one of them inside LAPACK while the interpreter exits (that aborted, -6,
    # when it came while a thread started: tests/test_rank.py checks that case).
    path, run_dir = write_experiment(tmp_path, **GRID), tmp_path / "run"
    command = [sys.executable, "-m", "ablate.cli", "run", str(path), "--out", str(run_dir),
               *threads]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while (not list((run_dir / RECORDS).glob("*.parquet")) and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    match = INTERRUPTED.match(last)
    assert match, err
    finished = int(match.group(1))
    assert 1 <= finished < N_JOBS and int(match.group(2)) == N_JOBS
    assert finished == len(finished_jobs(run_dir))
    assert "Traceback" not in err and "results:" not in out
    # Redirected output: plain progress lines with counts, not bar characters.
    assert re.search(rf"^progress: jobs 0/{N_JOBS} \|", err, flags=re.MULTILINE), err
    assert "━" not in err
    # Nothing half-written, the lock released; the same command finishes the rest.
    assert not list((run_dir / RECORDS).glob(".*.tmp")) and not (run_dir / OWNER).exists()
    assert main(["run", str(path), "--out", str(run_dir)]) == 0
    assert f"{N_JOBS} jobs, {finished} finished earlier" in capsys.readouterr().out
    assert read_records(run_dir).attrs["missing_jobs"] == []
