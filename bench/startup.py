"""Start-up time of the command line, as ratios against what any typer CLI pays.

Baseline: ``python -c "import typer, rich"`` in a fresh interpreter. Measured the same way
(a fresh process each time, best of several): ``ablate --help``, ``ablate validate
experiments/quickstart.toml --no-checkpoints``, and, for scale, ``import torch`` (what
every command paid before commands imported their modules lazily).

    $ python -m bench.startup
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = [sys.executable, "-c", "import typer, rich"]


def _best_of(argv: list[str], repeats: int) -> float:
    """Shortest wall time of ``repeats`` fresh runs of ``argv`` (after one warm-up run
    that fills the file cache); a failing command is an error, not a time."""
    times = []
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if attempt:
            times.append(time.perf_counter() - start)
    return min(times)


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    repeats = 3 if quick else 10
    cli = [sys.executable, "-m", "ablate.cli"]
    baseline = _best_of(BASELINE, repeats)
    cases = [
        ("cli start-up: --help", "ablate --help", [*cli, "--help"]),
        ("cli start-up: validate --no-checkpoints",
         "ablate validate experiments/quickstart.toml --no-checkpoints",
         [*cli, "validate", "experiments/quickstart.toml", "--no-checkpoints"]),
        ("import torch (for scale)", "python -c 'import torch'",
         [sys.executable, "-c", "import torch"]),
    ]
    rows = []
    for name, method, argv in cases:
        seconds = _best_of(argv, repeats)
        rows.append({"benchmark": name, "method": method,
                     "baseline": "python -c 'import typer, rich'", "ratio": seconds / baseline,
                     "detail": f"{seconds:.3f} s vs {baseline:.3f} s, best of {repeats} fresh "
                               "processes"})
    return rows


if __name__ == "__main__":
    from bench.run_all import print_rows

    print_rows(run(quick="--quick" in sys.argv))
