"""Check that a code change leaves an experiment's records unchanged.

Runs an experiment file (or a matrix-CODI study file) through ``python -m ablate.cli run``
into a temporary run directory, with the ``ablate`` package of this checkout or of any
git revision, and reduces the records to a *digest*: one row per record, keyed by
(checkpoint name, config label, seeds, task, mode, T, condition, item), holding every
outcome flag, the prediction text and every float metric. Two digests agree when

* every boolean column and the prediction text are identical, and
* every float (and every entry of a float list such as ``erank_per_iter``) agrees within
  ``|a - b| <= 1e-5 * max(|a|, |b|) + 1e-9`` (relative 1e-5; the tiny absolute floor only
  matters for values that are 0 up to round-off),

with the same set of keys. The comparison is "before vs after on the same checkpoints":
the digest file name carries a hash of the checkpoint files the experiment reads, so a
digest made before the checkpoints were retrained is never compared with records of the
new ones (the script says so, and ``--before REV`` regenerates the baseline).

    # before a change: store the current records' digest (bench/results/digests/)
    $ python -m bench.record_digest record experiments/quickstart.toml
    # after it: run this checkout and compare with the stored digest for these checkpoints
    $ python -m bench.record_digest compare experiments/quickstart.toml
    # or compare two code versions directly, on the checkpoints of this checkout
    $ python -m bench.record_digest compare experiments/quickstart.toml --before main
    $ python -m bench.record_digest compare experiments/codi_rank_dynamics.toml --before 12ac22e

``--code REV`` / ``--before REV`` check REV out into a temporary ``git worktree`` and put
it first on ``PYTHONPATH``; the experiment file and its checkpoints are always this
checkout's. Only the CLI (``ablate run FILE --out DIR``) and the run directory's
``records/*.parquet`` files are relied on, so the script also works across redesigns of
the package's Python API. Exit code 0: records agree; 1: they differ; 2: usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DIGESTS = ROOT / "bench" / "results" / "digests"
RTOL = 1e-5
ATOL = 1e-9
# Columns that identify a record across code versions (the job id carries a config hash,
# and the checkpoint path the checkout's location, so neither is used as it is).
KEY = ["checkpoint", "config_label", "train_seed", "eval_seed", "task", "split", "mode",
       "n_iterations", "condition", "item_id"]
# Columns describing the job or item, not outcomes: left out of the digest.
DESCRIPTIVE = {"job_id", "intervention", "site", "k", "draw", "doc_hash", "prompt_hash",
               "target_hash", "model_kind", "n_latents", "latent_index"}


# --- checkpoints ----------------------------------------------------------------------

def checkpoint_paths(experiment: Path) -> list[Path]:
    """Every checkpoint file or directory the experiment (or CODI study) names."""
    data = tomllib.loads(experiment.read_text(encoding="utf-8"))
    entries = list(data.get("checkpoints", []))
    if isinstance(data.get("checkpoint"), dict):
        entries.append(data["checkpoint"])
    paths: list[Path] = []
    for entry in entries:
        pattern = str((experiment.parent / entry["path"]).resolve())
        matches = sorted(glob.glob(pattern)) or [pattern]
        paths += [Path(p) for p in matches]
    return paths


def checkpoints_hash(experiment: Path) -> str:
    """sha256[:12] over the names and bytes of every file of every checkpoint."""
    digest = hashlib.sha256()
    for path in checkpoint_paths(experiment):
        if not path.exists():
            raise SystemExit(f"checkpoint {path} named by {experiment} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{path.name}/{file.relative_to(path) if path.is_dir() else ''}"
                          .encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def stored_digest_path(experiment: Path, limit: int | None) -> Path:
    suffix = f"__limit{limit}" if limit else ""
    return DIGESTS / f"{experiment.stem}__ckpt-{checkpoints_hash(experiment)}{suffix}.parquet"


# --- running --------------------------------------------------------------------------

@contextlib.contextmanager
def code_at(revision: str | None) -> Iterator[Path]:
    """The root of a checkout whose ``ablate`` package is at ``revision`` (None: this one)."""
    if revision is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="ablate-code-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                        str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)


def run_records(experiment: Path, code: Path, limit: int | None) -> pd.DataFrame:
    """The records of ``experiment`` run by the ``ablate`` package under ``code``."""
    with tempfile.TemporaryDirectory(prefix="ablate-digest-") as scratch:
        run_dir = Path(scratch) / "run"
        command = [sys.executable, "-m", "ablate.cli", "run", str(experiment),
                   "--out", str(run_dir)]
        if limit:
            command += ["--limit", str(limit)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(code), *filter(None, [os.environ.get("PYTHONPATH")])])}
        probe = subprocess.run([sys.executable, "-c", "import ablate; print(ablate.__file__)"],
                               env=env, capture_output=True, text=True, check=True, cwd=scratch)
        used = Path(probe.stdout.strip()).resolve()
        if not used.is_relative_to(code.resolve()):
            raise SystemExit(f"`import ablate` resolved to {used}, not under {code}")
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=scratch, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
        print(f"  ran {experiment.name} with the code of {code} in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        files = sorted((run_dir / "records").glob("*.parquet"))
        if not files:
            raise SystemExit(f"{experiment}: the run wrote no records")
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def digest(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record: the key columns, then the outcome columns (sorted by key)."""
    frame = records.copy()
    frame["checkpoint"] = frame["checkpoint"].map(lambda p: Path(str(p)).name)
    keep = [c for c in frame.columns if c not in DESCRIPTIVE]
    frame = frame[keep].sort_values(KEY, kind="stable").reset_index(drop=True)
    duplicated = frame.duplicated(KEY)
    if duplicated.any():
        raise SystemExit(f"{int(duplicated.sum())} records share a key {KEY}; cannot digest")
    return frame


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """The digest with floats stored as float32 (relative error <= 6e-8, far inside the
    1e-5 tolerance), which halves the stored files."""
    frame = frame.copy()
    for column in frame.columns:
        if str(frame[column].dtype) == "float64":
            frame[column] = frame[column].astype("float32")
        elif frame[column].dtype == object:
            values = frame[column].tolist()
            if all(isinstance(v, (list, np.ndarray)) and all(isinstance(x, float) for x in v)
                   for v in values if v is not None):
                frame[column] = [None if v is None else np.asarray(v, dtype=np.float32)
                                 for v in values]
    return frame


def make_digest(experiment: Path, revision: str | None, limit: int | None) -> pd.DataFrame:
    with code_at(revision) as code:
        return digest(run_records(experiment, code, limit))


# --- comparing ------------------------------------------------------------------------

def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _is_numeric_column(series: pd.Series) -> bool:
    """Float columns, and object columns whose values are lists of numbers (or missing)."""
    if str(series.dtype).lower().startswith("float"):
        return True
    if series.dtype != object:
        return False
    values = [v for v in series.tolist() if not _missing(v)]
    return bool(values) and all(
        isinstance(v, (list, tuple, np.ndarray))
        and all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in v)
        for v in values)


def _close(x: object, y: object) -> tuple[bool, float]:
    """(x and y agree within tolerance, largest relative difference) for a number or a
    list of numbers; missing values (None, NaN) agree only with missing values."""
    if _missing(x) or _missing(y):
        return _missing(x) and _missing(y), 0.0
    a = [float(v) for v in x] if isinstance(x, (list, tuple, np.ndarray)) else [float(x)]
    b = [float(v) for v in y] if isinstance(y, (list, tuple, np.ndarray)) else [float(y)]
    if len(a) != len(b):
        return False, math.inf
    worst, ok = 0.0, True
    for u, v in zip(a, b, strict=True):
        if math.isnan(u) or math.isnan(v):
            ok &= math.isnan(u) and math.isnan(v)
            continue
        diff, scale = abs(u - v), max(abs(u), abs(v))
        worst = max(worst, diff / scale if scale else 0.0)
        ok &= diff <= RTOL * scale + ATOL
    return ok, worst


def _same(x: object, y: object) -> bool:
    if _missing(x) or _missing(y):
        return _missing(x) and _missing(y)
    return bool(x == y)


def compare(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """Differences as lines (empty: the digests agree); agreeing columns go to stderr."""
    problems: list[str] = []
    agreed: list[str] = []
    left, right = before.set_index(KEY), after.set_index(KEY)
    only_before = left.index.difference(right.index)
    only_after = right.index.difference(left.index)
    if len(only_before) or len(only_after):
        example = list(only_before[:1]) or list(only_after[:1])
        problems.append(f"keys differ: {len(only_before)} records only before, "
                        f"{len(only_after)} only after (e.g. {example})")
    common = left.index.intersection(right.index)
    left, right = left.loc[common], right.loc[common]
    for column in sorted(set(left.columns) | set(right.columns)):
        if column not in left or column not in right:
            problems.append(f"column {column} only {'after' if column in right else 'before'}")
            continue
        pairs = list(zip(left[column].tolist(), right[column].tolist(), strict=True))
        if _is_numeric_column(left[column]) or _is_numeric_column(right[column]):
            results = [_close(x, y) for x, y in pairs]
            bad = sum(not ok for ok, _ in results)
            worst = max((w for _, w in results), default=0.0)
            if bad:
                problems.append(f"{column}: {bad} of {len(pairs)} values differ beyond relative "
                                f"{RTOL:g} (largest relative difference {worst:.3g})")
            else:
                agreed.append(f"{column} ({worst:.1g})")
            continue
        differing = [(x, y) for x, y in pairs if not _same(x, y)]
        if differing:
            x, y = differing[0]
            problems.append(f"{column}: {len(differing)} of {len(pairs)} values differ "
                            f"(e.g. {x!r} -> {y!r})")
        else:
            agreed.append(column)
    print(f"  {len(common)} common records; agreeing columns (largest relative difference): "
          + ", ".join(agreed), file=sys.stderr)
    return problems


# --- command line ---------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="run FILE and write its digest")
    record.add_argument("file", type=Path)
    record.add_argument("--code", default=None, help="git revision whose ablate runs it "
                        "(default: this checkout)")
    record.add_argument("--limit", type=int, default=None, help="items per task (--limit)")
    record.add_argument("--out", type=Path, default=None,
                        help="digest file (default: bench/results/digests/<name>__ckpt-<hash>)")
    check = sub.add_parser("compare", help="run FILE and compare with a baseline digest")
    check.add_argument("file", type=Path)
    check.add_argument("--before", default=None,
                       help="git revision to run now as the baseline (same checkpoints)")
    check.add_argument("--digest", type=Path, default=None,
                       help="stored baseline digest (default: the one for these checkpoints)")
    check.add_argument("--after", default=None, help="git revision to check "
                       "(default: this checkout)")
    check.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    experiment = args.file.resolve()
    if not experiment.is_file():
        parser.error(f"{args.file} is not a file")
    if args.command == "record":
        out = args.out or stored_digest_path(experiment, args.limit)
        frame = make_digest(experiment, args.code, args.limit)
        out.parent.mkdir(parents=True, exist_ok=True)
        compact(frame).to_parquet(out, compression="zstd", index=False)
        print(f"wrote {out} ({len(frame)} records, {out.stat().st_size // 1024} KiB)")
        return 0
    if args.before is not None and args.digest is not None:
        parser.error("give --before REV or --digest FILE, not both")
    if args.before is not None:
        before = make_digest(experiment, args.before, args.limit)
        baseline = f"the code of {args.before}"
    else:
        path = args.digest or stored_digest_path(experiment, args.limit)
        if not path.exists():
            print(f"no digest {path}: none was stored for these checkpoint files (hash "
                  f"{checkpoints_hash(experiment)}); compare with a code revision instead, "
                  "e.g. --before main", file=sys.stderr)
            return 2
        before = pd.read_parquet(path)
        baseline = str(path)
    after = make_digest(experiment, args.after, args.limit)
    problems = compare(before, after)
    name = args.after or "this checkout"
    if problems:
        print(f"{args.file}: records of {name} DIFFER from {baseline}:")
        for line in problems:
            print(f"  {line}")
        return 1
    print(f"{args.file}: {len(after)} records of {name} agree with {baseline} (flags and "
          f"predictions identical, floats within relative {RTOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
