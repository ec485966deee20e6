"""A run directory read for statistics: its records, checked for mixing, the analysis
settings from the run's resolved config, and the analysis itself.

The settings come from the ``[stats]`` table (``ablate.experiment``: tost_margin as a
fraction, level, n_boot, seed, smoke) of the run's experiment file when that file still names this
experiment and its table changed after the run (with a notice), else from the manifest's
copy; command-line values override both. Several eval seeds are averaged per problem
within each training seed (``ablate.stats.frames.average_eval_seeds``) unless one is
chosen. The same run directory and settings give byte-identical JSON (``analysis_json``).

    >>> run = analyze_run("runs/quickstart")  # doctest: +SKIP
    >>> run.analysis["q1"][0]["claims"][0]["e3"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ablate.errors import AblateError
from ablate.experiment import StatsSettings, read_stats_table, stats_changes
from ablate.questions import analyze_records
from ablate.stats.frames import average_eval_seeds
from ablate.stats.pvalues import MIN_N_BOOT
from ablate.store import read_manifest, read_records

logger = logging.getLogger(__name__)

# Defaults of the experiment file's [stats] table, for manifests written without one.
DEFAULT_SETTINGS = dict(vars(StatsSettings()))


@dataclass(frozen=True)
class AnalysisSettings:
    """What the analysis ran with; ``tost_margin_pp`` is in percentage points. ``smoke``:
    fewer bootstrap replicates than the protocol's minimum (allowed by [stats] smoke, or
    asked for with --n-boot), so the report is a smoke test, not for reporting."""

    seed: int
    level: float
    n_boot: int
    tost_margin_pp: float | None
    source: str  # where level / n_boot / margin / seed came from, for the report
    smoke: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "level": self.level, "n_boot": self.n_boot,
                "tost_margin_pp": self.tost_margin_pp, "source": self.source,
                "smoke": self.smoke}


@dataclass(frozen=True)
class RunAnalysis:
    """One analysed run: what was read, with which settings, and the analysis dict."""

    run_dir: Path
    name: str
    manifest: dict[str, Any]
    records: pd.DataFrame
    missing_jobs: list[str]
    eval_seed: int | None  # the eval seed analysed when the run has several, else None
    settings: AnalysisSettings
    analysis: dict[str, Any]
    eval_seeds: tuple[int, ...] = ()  # the eval seeds averaged per problem (several), else ()
    # What the command line chose (eval_seed, seed, n_boot; None = not given): the report's
    # identity together with the run, so reports of other options never overwrite it.
    options: dict[str, Any] = field(default_factory=dict)
    notices: tuple[str, ...] = ()  # one-line notices for the command line (e.g. [stats])

    @property
    def n_jobs(self) -> int:
        return len(self.manifest.get("jobs", []))

    @property
    def n_finished(self) -> int:
        return self.n_jobs - len(self.missing_jobs)

    @property
    def partial_text(self) -> str | None:
        """"partial: 5 of 12 jobs" for an incomplete run, else None."""
        return f"partial: {self.n_finished} of {self.n_jobs} jobs" if self.missing_jobs else None


def analysis_settings(manifest: Mapping[str, Any], *, seed: int | None = None,
                      n_boot: int | None = None, table: Mapping[str, Any] | None = None,
                      table_source: str | None = None) -> AnalysisSettings:
    """Settings from ``table`` (a [stats] table read elsewhere, named by ``table_source``),
    else from the manifest's resolved config ``stats`` table (defaults where the table or
    a key is absent); ``seed`` and ``n_boot`` override it."""
    if table is not None:
        source = table_source or "a [stats] table"
    else:
        table = (manifest.get("config") or {}).get("stats")
        source = ("the run's [stats] table" if table
                  else "defaults (the run config has no [stats])")
    values = {**DEFAULT_SETTINGS, **(table or {})}
    overrides = [name for name, value in (("--seed", seed), ("--n-boot", n_boot))
                 if value is not None]
    if overrides:
        source += f", overridden by {' and '.join(overrides)}"
    if n_boot is not None and n_boot < 10:
        raise AblateError(f"--n-boot {n_boot} is too small: use >= 2000 (>= 10 for a quick look)")
    margin = values.get("tost_margin")
    replicates = int(values["n_boot"] if n_boot is None else n_boot)
    return AnalysisSettings(
        seed=int(values["seed"] if seed is None else seed),
        level=float(values["level"]),
        n_boot=replicates,
        # The config states the margin as a fraction of accuracy; the analysis works in pp.
        tost_margin_pp=None if margin is None else 100.0 * float(margin),
        source=source, smoke=replicates < MIN_N_BOOT)


def model_dims(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Head (config_label) -> matrix size d of its checkpoints, from the manifest's
    checkpoint entries (runs since d was recorded); a head whose checkpoints disagree, or
    whose d is unknown, is left out."""
    found: dict[str, set[int]] = {}
    for entry in manifest.get("checkpoints") or []:
        label, d = entry.get("label"), entry.get("d")
        found.setdefault(str(label), set()).add(d if isinstance(d, int) else -1)
    return {label: values.pop() for label, values in sorted(found.items())
            if len(values) == 1 and min(values) > 0}


def file_stats_table(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """(the [stats] table, a notice) when the run's experiment file still names this
    experiment and its [stats] differs from the one the run recorded; else None.

    [stats] is not part of the config hash: it changes how records are analysed, not
    which exist, so an edited table applies to an existing run without rerunning it."""
    path = manifest.get("experiment_file")
    if not path or not Path(path).is_file():
        return None
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None  # not readable as an experiment now: the run's own table applies
    if data.get("name") != manifest.get("name") or data.get("kind") == "codi_study":
        return None
    table = dict(vars(read_stats_table(path)))
    changes = stats_changes((manifest.get("config") or {}).get("stats"), table)
    if not changes:
        return None
    return table, (f"note: using [stats] of {path}, changed since the run "
                   f"({'; '.join(changes)}); records are unchanged")


def load_records(run_dir: str | Path, *, eval_seed: int | None = None
                 ) -> tuple[dict[str, Any], pd.DataFrame, list[str], int | None]:
    """(manifest, records, missing job ids, eval seed chosen) of a run, refusing records
    that mix configs: files of jobs the manifest does not list, or two checkpoints under
    one (config_label, train_seed). With several eval seeds, ``eval_seed`` picks one;
    without it each problem's outcomes are averaged over them within its training seed
    (``records.attrs["eval_seeds"]`` lists them)."""
    manifest = read_manifest(run_dir)
    records = read_records(run_dir)
    missing = list(records.attrs.get("missing_jobs", []))
    if records.empty:
        experiment = manifest.get("experiment_file") or "<experiment.toml>"
        raise AblateError(f"{run_dir} has no finished jobs yet (0 of {len(manifest['jobs'])}); "
                          f"run `ablate run {experiment} --out {run_dir}` first")
    foreign = sorted(set(records["job_id"].astype(str)) - set(manifest["jobs"]))
    if foreign:
        raise AblateError(
            f"{run_dir}/records holds {len(foreign)} job(s) its manifest does not list (e.g. "
            f"{foreign[0]}.parquet): records of another experiment config were mixed in; "
            "move those files out, or analyse each run directory separately")
    if "checkpoint" in records.columns:
        per_seed = records.groupby(["config_label", "train_seed"])["checkpoint"].nunique()
        mixed = per_seed[per_seed > 1]
        if not mixed.empty:
            label, seed = mixed.index[0]
            paths = sorted(set(records.loc[(records["config_label"] == label)
                                           & (records["train_seed"] == seed), "checkpoint"]))
            raise AblateError(
                f"{run_dir}: config_label '{label}' train_seed {seed} names {len(paths)} "
                f"checkpoints ({', '.join(map(str, paths[:2]))}); give each checkpoint its own "
                "train_seed or label in the experiment file and run again into a new --out")
    records, chosen = _one_eval_seed(records, eval_seed, run_dir)
    return manifest, records, missing, chosen


def _one_eval_seed(records: pd.DataFrame, eval_seed: int | None,
                   run_dir: str | Path) -> tuple[pd.DataFrame, int | None]:
    if "eval_seed" not in records.columns:
        if eval_seed is not None:
            raise AblateError(f"{run_dir}: records have no eval_seed column; drop --eval-seed")
        return records, None
    seeds = sorted(int(s) for s in records["eval_seed"].dropna().unique())
    if eval_seed is None:
        return average_eval_seeds(records), None
    if eval_seed not in seeds:
        raise AblateError(f"--eval-seed {eval_seed} is not in {run_dir}; its eval seeds are "
                          f"{seeds}")
    chosen = records[records["eval_seed"] == eval_seed].reset_index(drop=True)
    chosen.attrs = dict(records.attrs)
    return chosen, eval_seed


def analyze_run(run_dir: str | Path, *, seed: int | None = None, n_boot: int | None = None,
                eval_seed: int | None = None) -> RunAnalysis:
    """Read a run directory and run every applicable statistics family on it."""
    manifest, records, missing, chosen = load_records(run_dir, eval_seed=eval_seed)
    adopted = file_stats_table(manifest)
    table, notice = adopted if adopted else (None, None)
    settings = analysis_settings(
        manifest, seed=seed, n_boot=n_boot, table=table,
        table_source=f"[stats] of {manifest.get('experiment_file')} (changed after the run)")
    logger.info("analysing %s: %d records, settings %s", run_dir, len(records),
                settings.as_dict())
    analysis = analyze_records(records, rng=np.random.default_rng(settings.seed),
                               level=settings.level, n_boot=settings.n_boot,
                               tost_margin=settings.tost_margin_pp,
                               dims=model_dims(manifest))
    name = str(manifest.get("name") or Path(run_dir).resolve().name)
    return RunAnalysis(run_dir=Path(run_dir), name=name, manifest=manifest, records=records,
                       missing_jobs=missing, eval_seed=chosen, settings=settings,
                       analysis=analysis, eval_seeds=tuple(records.attrs.get("eval_seeds", ())),
                       options={"eval_seed": eval_seed, "seed": seed, "n_boot": n_boot},
                       notices=(notice,) if notice else ())


def analysis_json(analysis: Mapping[str, Any]) -> str:
    """The analysis as JSON text: fixed key order and indentation, so equal analyses give
    equal bytes (the analysis already rounds floats and maps NaN to null)."""
    return json.dumps(analysis, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
