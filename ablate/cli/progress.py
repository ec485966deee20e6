"""Progress of a run (``ablate run``, ``ablate codi study``): jobs done of the total, records
(item x condition evaluations) of the current job, records per second and an ETA.

On a terminal it is a live rich display whose columns say what they count; anywhere else
(a log file, a cluster job's output) it prints plain lines, at most one per ``interval``
seconds, plus one when the last job finishes, so logs show counts and an ETA instead of
bar characters.

    >>> with RunDisplay(Console(stderr=True)) as progress:        # doctest: +SKIP
    ...     run_experiment(experiment, run_dir, progress=progress)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

PLAIN_INTERVAL_S = 30.0  # seconds between plain lines (a finished run always prints one)


def duration(seconds: float) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class RunEstimate:
    """Counts of one session of a run and the ETA they imply: the jobs left to run times
    the time per job so far, where the job in progress counts by its share of records."""

    def __init__(self, n_jobs: int, n_finished: int, now: float) -> None:
        self.n_jobs, self.n_finished_before = n_jobs, n_finished
        self.jobs_done = n_finished
        self.records_done = self.records_total = 0
        self.records_session = 0  # records evaluated in this session, for the rate
        self.current = ""
        self.started = now

    @property
    def n_todo(self) -> int:
        return self.n_jobs - self.n_finished_before

    def records(self, job_id: str, done: int, total: int) -> None:
        if job_id != self.current:
            self.current, self.records_done = job_id, 0
        self.records_session += max(0, done - self.records_done)
        self.records_done, self.records_total = done, total

    def job(self) -> None:
        self.jobs_done += 1
        self.current, self.records_done, self.records_total = "", 0, 0

    def fraction(self) -> float:
        """Share of this session's jobs done, the current one by its records."""
        if self.n_todo <= 0:
            return 1.0
        partial = self.records_done / self.records_total if self.records_total else 0.0
        return min(1.0, (self.jobs_done - self.n_finished_before + partial) / self.n_todo)

    def eta(self, now: float) -> float:
        fraction = self.fraction()
        if fraction >= 1.0:
            return 0.0
        return (now - self.started) * (1 - fraction) / fraction if fraction > 0 else math.nan

    def rate(self, now: float) -> float:
        """Records per second in this session (NaN before the first records)."""
        elapsed = now - self.started
        return self.records_session / elapsed if elapsed > 0 and self.records_session else \
            math.nan

    def line(self, now: float) -> str:
        """One plain progress line."""
        parts = [f"jobs {self.jobs_done}/{self.n_jobs}"]
        if self.n_finished_before:
            parts[0] += f" ({self.n_finished_before} finished earlier)"
        if self.records_total:
            parts.append(f"records {self.records_done}/{self.records_total} of {self.current}")
        rate = self.rate(now)
        parts.append(f"{rate:,.0f} records/s" if math.isfinite(rate) else "- records/s")
        parts.append(f"elapsed {duration(now - self.started)}")
        parts.append(f"ETA {duration(self.eta(now))}")
        return "progress: " + " | ".join(parts)


class RunDisplay:
    """``ablate.executors.RunProgress`` for the CLI: live on a terminal, plain lines
    otherwise. Nothing shows until ``start`` (the run directory is open), so a refusal
    prints only its error line."""

    def __init__(self, console: Console, *, interval: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.interval, self.clock = console, interval, clock
        self.live = console.is_terminal
        self.estimate: RunEstimate | None = None
        self.last_line = -math.inf
        self.bar: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RunDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, n_jobs: int, n_finished: int) -> None:
        self.estimate = RunEstimate(n_jobs, n_finished, self.clock())
        if not self.live:
            self._print_line(force=True)
            return
        self.bar = Progress(
            TextColumn("{task.description:<7}"), BarColumn(bar_width=30),
            TextColumn("{task.fields[count]}"), TextColumn("{task.fields[detail]}"),
            console=self.console, refresh_per_second=4)
        self.bar.start()
        self.tasks["jobs"] = self.bar.add_task("jobs", total=max(n_jobs, 1),
                                               completed=n_finished, count="", detail="")
        self.tasks["records"] = self.bar.add_task("records", total=None, count="", detail="")
        self._refresh()

    def records_done(self, job: Any, done: int, total: int) -> None:
        assert self.estimate is not None, "start() first"
        self.estimate.records(job.job_id, done, total)
        self._update()

    def job_done(self, job: Any) -> None:
        assert self.estimate is not None, "start() first"
        self.estimate.job()
        last = self.estimate.jobs_done >= self.estimate.n_jobs
        self._update(force=last)

    def _update(self, *, force: bool = False) -> None:
        if self.live:
            self._refresh()
        else:
            self._print_line(force=force)

    def _print_line(self, *, force: bool = False) -> None:
        now = self.clock()
        if force or now - self.last_line >= self.interval:
            assert self.estimate is not None
            self.console.print(self.estimate.line(now), markup=False, highlight=False,
                               soft_wrap=True)
            self.last_line = now

    def _refresh(self) -> None:
        assert self.bar is not None and self.estimate is not None
        estimate, now = self.estimate, self.clock()
        earlier = (f", {estimate.n_finished_before} finished earlier"
                   if estimate.n_finished_before else "")
        self.bar.update(self.tasks["jobs"], completed=estimate.jobs_done,
                        count=f"{estimate.jobs_done}/{estimate.n_jobs} jobs{earlier}",
                        detail=f"elapsed {duration(now - estimate.started)}  "
                               f"ETA {duration(estimate.eta(now))}")
        rate = estimate.rate(now)
        speed = f"{rate:,.0f} records/s" if math.isfinite(rate) else ""
        self.bar.update(self.tasks["records"], completed=estimate.records_done,
                        total=estimate.records_total or None,
                        count=(f"{estimate.records_done}/{estimate.records_total} records"
                               if estimate.records_total else ""),
                        detail=f"{speed}  {estimate.current}".strip())
