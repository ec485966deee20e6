"""Run progress: plain lines with counts, records/s and an ETA when output is not a
terminal (logs, clusters), at most one per interval; labelled live columns on a terminal;
the CODI study reports through the same display."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from rich.console import Console

from ablate.cli.progress import RunDisplay, RunEstimate, duration


@dataclass(frozen=True)
class FakeJob:
    job_id: str


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain_display(interval: float = 30.0) -> tuple[RunDisplay, io.StringIO, Clock]:
    buffer, clock = io.StringIO(), Clock()
    console = Console(file=buffer, force_terminal=False, width=200)
    return RunDisplay(console, interval=interval, clock=clock), buffer, clock


def test_plain_lines_have_counts_rate_and_eta_at_most_once_per_interval():
    display, buffer, clock = plain_display(interval=30)
    with display:
        display.start(12, 2)  # 10 jobs to run in this session
        for index in range(10):
            job = FakeJob(f"job{index}")
            for done in (50, 100):
                clock.now += 5  # 10 s per job, 100 records per job
                display.records_done(job, done, 100)
            display.job_done(job)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == ("progress: jobs 2/12 (2 finished earlier) | - records/s | "
                        "elapsed 0:00:00 | ETA -:--:--")
    # 100 s of run: a line every 30 s at most, plus the last job's line.
    assert 3 <= len(lines) <= 1 + 100 // 30 + 1, lines
    assert lines[-1] == ("progress: jobs 12/12 (2 finished earlier) | 10 records/s | "
                         "elapsed 0:01:40 | ETA 0:00:00")
    middle = lines[1]
    assert re.fullmatch(r"progress: jobs \d+/12 \(2 finished earlier\) \| records \d+/100 of "
                        r"job\d \| 10 records/s \| elapsed 0:00:\d\d \| ETA 0:0\d:\d\d", middle)
    assert "━" not in buffer.getvalue()


def test_eta_counts_the_running_job_by_its_records():
    estimate = RunEstimate(n_jobs=4, n_finished=0, now=0.0)
    estimate.records("a", 50, 100)  # half of the first of 4 jobs after 10 s
    assert estimate.fraction() == 0.125
    assert estimate.eta(10.0) == 70.0
    assert estimate.rate(10.0) == 5.0
    estimate.job()
    estimate.job()
    assert estimate.fraction() == 0.5 and estimate.eta(20.0) == 20.0
    assert duration(3725) == "1:02:05" and duration(float("nan")) == "-:--:--"


def test_terminal_display_labels_its_columns():
    buffer, clock = io.StringIO(), Clock()
    console = Console(file=buffer, force_terminal=True, width=160)
    with RunDisplay(console, clock=clock) as display:
        display.start(6, 1)
        clock.now += 4
        display.records_done(FakeJob("multiprobe-s0"), 40, 170)
        display.bar.refresh()
    shown = buffer.getvalue()
    for label in ("jobs", "1/6 jobs, 1 finished earlier", "elapsed 0:00:04", "ETA",
                  "records", "40/170 records", "10 records/s", "multiprobe-s0"):
        assert label in shown, label
