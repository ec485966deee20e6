"""The report's account of what was run (config hash, checkpoints, seeds, items, versions,
git state, statistics settings, where each fact the checkpoints' weights do not give came
from) and of what is missing or assumed, from the manifest and records.

    >>> blocks = provenance_blocks(run)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablate.intervention_kinds import NONE
from ablate.questions.blocks import Block, Bullets, Heading, Note, Paragraph, Table, TableView
from ablate.questions.power import RECOMMENDED_SEEDS
from ablate.report.run import RunAnalysis
from ablate.tasks.outcomes import CODI_TEXT, scoring_text

OUTCOME_COLUMNS = ("correct_strict", "correct_flexible", "correct_numeric")

MAX_LISTED_JOBS = 25
# ablate.checkpoint.settings.FACTS: what changes a checkpoint's function but not its
# weights (the default T and dropout, also recorded, leave the evaluated function alone).
CHECKPOINT_FACTS = ("n_heads", "attention", "embedding")


def _intervention_text(spec: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{key}={value}" for key, value in spec.items() if key != "name")
    return f"`{spec.get('name')}`" + (f" ({rest})" if rest else "")


def _task_text(task: Mapping[str, Any], codi: bool = False) -> str:
    text = f"`{task.get('name')}` {task.get('split', '')} split, {task.get('mode', '')}"
    if task.get("few_shot"):
        text += f", {task['few_shot']}-shot"
    if task.get("limit"):
        text += f", first {task['limit']} items"
    return f"{text} ({scoring_text(task, codi=codi)})"


def is_codi(config: Mapping[str, Any]) -> bool:
    """Whether a run's config is of CODI checkpoints (a grid's or a CODI study's)."""
    return ("checkpoint" in config or "codi_study" in config
            or any(c.get("model") == "codi" for c in config.get("checkpoints") or []))


def _grid_facts(config: Mapping[str, Any]) -> list[str]:
    """Tasks (each with its outcome and stop sequences), interventions, T (CODI: numbers
    of latents) and eval seeds of an ``ablate run`` grid."""
    axis = (f"Numbers of latents: {config['n_latents']} (0 = no thoughts; each CODI model "
            "runs with its own T)" if "n_latents" in config
            else f"Iterations T: {config.get('iterations', 'unknown')}")
    codi = is_codi(config)
    return [
        "Tasks: " + ("; ".join(_task_text(t, codi) for t in config.get("tasks", []))
                     or "unknown"),
        "Interventions: " + ("; ".join(_intervention_text(i)
                                       for i in config.get("interventions", [])) or "none"),
        f"{axis}; eval seeds: {config.get('eval_seeds', 'unknown')}",
    ]


def _study_facts(config: Mapping[str, Any]) -> list[str]:
    """The same facts for the run of a CODI study file (its table: ablate.codi.study_file)."""
    task = config.get("task", {})
    options = ", ".join(f"{k}={v}" for k, v in (task.get("options") or {}).items())
    checkpoint = config.get("checkpoint", {})
    targets = ", ".join("every latent" if t == "all" else f"latent.{t}"
                        for t in config.get("targets", []))
    return [
        f"Matrix-CODI study of `{checkpoint.get('label')}` ({checkpoint.get('kind')} "
        f"checkpoint), greedy decoding; {CODI_TEXT}",
        f"Task: `{task.get('name')}` {task.get('split', '')} split"
        + (f", first {task['limit']} items" if task.get("limit") else "")
        + (f" ({options})" if options else ""),
        f"Numbers of latents: {config.get('n_latents')} (0 = no thoughts); cuts: `svd_rank_k` "
        f"and {config.get('random_draws', 0)} `random_rank_k` draw(s) for k in "
        f"{config.get('ks')} on {targets or 'no latent'}",
        f"Eval seeds: {config.get('eval_seeds', 'unknown')}",
    ]


def group_sizes(run: RunAnalysis) -> TableView:
    """Per group: seeds, items, conditions and records actually analysed."""
    records = run.records
    keys = ["config_label", "task", "mode", "n_iterations"]
    rows = []
    for key, rows_of in records.groupby(keys, sort=True):
        label, task, mode, t = key
        seeds = sorted(int(s) for s in rows_of["train_seed"].unique())
        rows.append((str(label), f"{task} {mode}", str(t), ", ".join(map(str, seeds)),
                     str(rows_of["item_id"].nunique()), str(rows_of["condition"].nunique()),
                     f"{len(rows_of):,}"))
    return TableView("groups", "Groups analysed (head x task x mode x T)",
                     ("head", "task / mode", "T", "train seeds", "items", "conditions",
                      "records"), tuple(rows))


def outcome_view(run: RunAnalysis) -> TableView | None:
    """Per group of generative records: the unablated condition's accuracy (%, mean over
    seeds and problems) under the primary outcome (``correct``) and under each named
    outcome beside it, so a reader sees what the choice of outcome changes; None when
    the run has no generative records with those columns."""
    records = run.records
    needed = {"mode", "condition", "correct", *OUTCOME_COLUMNS}
    if not needed <= set(records.columns):
        return None
    plain = records[(records["mode"] == "generative") & (records["condition"] == NONE)]
    if plain.empty:
        return None
    keys = ["config_label", "task", "n_iterations"]
    keys += ["n_latents"] if "n_latents" in plain and plain["n_latents"].notna().any() else []
    rows = []
    for key, part in plain.groupby(keys, sort=True, dropna=False):
        cells = [part[c].astype("Float64").mean() for c in ("correct", *OUTCOME_COLUMNS)]
        rows.append((*(str(k) for k in key), f"{len(part):,}",
                     *(f"{100 * float(v):.1f}" for v in cells)))
    columns = ("head", "task", "T", *(("latents",) if len(keys) == 4 else ()), "records",
               "accuracy (primary)", "strict", "flexible", "numeric")
    return TableView("outcomes", "Unablated accuracy (%) under each outcome: the primary "
                     "one (as under Tasks above) and lm-eval strict, lm-eval flexible and "
                     "numeric match within 1e-4, generative records",
                     columns, tuple(rows))


def one_seed_groups(run: RunAnalysis) -> list[str]:
    counts = run.records.groupby(["config_label", "task", "mode", "n_iterations"],
                                 sort=True)["train_seed"].nunique()
    return [f"{label} ({task} {mode} T={t})" for (label, task, mode, t), n in counts.items()
            if n < 2]


def _setting_text(name: str, setting: Mapping[str, Any]) -> str:
    how, source = setting.get("how"), setting.get("source")
    where = {"stated": f"from {source}", "assumed": f"assumed: {source}"}.get(how, source)
    return f"{name} = {setting.get('value')} ({where})"


def checkpoint_facts(manifest: Mapping[str, Any]) -> list[str]:
    """One line per distinct set of checkpoint settings (``manifest["checkpoints"]``):
    "3 checkpoints (multiprobe): n_heads = 8 (from the n_heads override), ..."."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for entry in manifest.get("checkpoints") or []:
        settings = entry.get("settings") or {}
        text = ", ".join(_setting_text(name, settings[name]) for name in CHECKPOINT_FACTS
                         if name in settings)
        groups.setdefault(text, []).append(entry)
    lines = []
    for text, entries in groups.items():
        labels = ", ".join(sorted({str(e.get("label")) for e in entries}))
        count = f"{len(entries)} checkpoint{'s' if len(entries) > 1 else ''}"
        lines.append(f"{count} ({labels}): {text or 'no settings recorded'}")
    return lines


def assumed_note(manifest: Mapping[str, Any]) -> Note | None:
    """A warning when a checkpoint's config rests on research defaults nobody stated."""
    assumed = [e for e in manifest.get("checkpoints") or [] if e.get("assumed")]
    if not assumed:
        return None
    facts = sorted({name for e in assumed for name in e["assumed"]})
    values = "; ".join(sorted({_setting_text(name, e["settings"][name])
                               for e in assumed for name in e["assumed"]}))
    return Note(
        f"Assumed, not stated: {' and '.join(facts)} of {len(assumed)} checkpoint(s) came "
        f"from research defaults (assume_research_defaults), not from the checkpoints or "
        f"their runs: {values}. The weights cannot confirm them; if the runs used other "
        "values, every result below describes other models.", "warning")


def partial_banner(run: RunAnalysis) -> list[Block]:
    """The banner that opens the report of an incomplete run ("partial: 5 of 12 jobs")."""
    blocks: list[Block] = []
    if run.partial_text:
        experiment = run.manifest.get("experiment_file") or "<experiment.toml>"
        blocks.append(Note(
            f"**{run.partial_text}.** {len(run.missing_jobs)} of {run.n_jobs} jobs have no "
            "records yet. Everything below describes the finished jobs only; seeds or "
            "conditions of the missing jobs are absent from every estimate. Finish the run "
            f"with `ablate run {experiment} --out {run.run_dir}` (it resumes) and regenerate "
            "this report. Missing jobs are listed under \"What was run\".", "warning"))
    return blocks


def smoke_banner(run: RunAnalysis) -> list[Block]:
    """The banner of a smoke run: fewer bootstrap replicates than the protocol's minimum."""
    if not run.settings.smoke:
        return []
    return [Note(f"**Smoke run: {run.settings.n_boot} bootstrap replicates** ({run.settings.source}"
                 "), below the protocol's minimum of 2000. Intervals and p-values are rough: "
                 "this report checks that the pipeline runs, and is not for reporting. Rerun "
                 "the statistics with n_boot >= 2000 ([stats] of the experiment file).",
                 "warning")]


def status_notes(run: RunAnalysis) -> list[Block]:
    """Warnings that change how everything below reads (after the partial banner):
    assumed checkpoint settings, one seed, the eval seeds analysed, and the analysis's own
    run-wide notes."""
    blocks: list[Block] = []
    assumed = assumed_note(run.manifest)
    if assumed is not None:
        blocks.append(assumed)
    single = one_seed_groups(run)
    if single:
        blocks.append(Note(
            f"One training seed for {', '.join(single)}: these results describe these "
            "checkpoints only (E1). Nothing is inferred about a new training run, because "
            "one seed gives no estimate of the seed-to-seed spread, so the E3 interval is "
            f"undefined. Train at least {RECOMMENDED_SEEDS} seeds for across-seed claims.",
            "warning"))
    if run.eval_seed is not None:
        blocks.append(Note(f"The run has several eval seeds; this report analyses eval seed "
                           f"{run.eval_seed} only (--eval-seed)."))
    if run.eval_seeds:
        blocks.append(Note(
            f"Eval seeds {list(run.eval_seeds)} are analysed together: each problem's outcome "
            "is its mean over the eval seeds within its training seed (for a 0/1 outcome, the "
            "share of eval seeds that got it right), so eval seeds are neither counted as "
            "extra problems nor as extra seeds (see docs/statistics.md). `--eval-seed` "
            "analyses one."))
    for note in run.analysis.get("notes", []):
        blocks.append(Note(f"From the analysis: {note}."))
    return blocks


def threads_facts(threads: Mapping[str, list[int]]) -> list[str]:
    """What the jobs' torch thread counts were (job id -> counts, from their record
    files); nothing for runs that did not keep them."""
    if not threads:
        return []
    counts = sorted({n for used in threads.values() for n in used})
    changed = sum(len(set(used)) > 1 for used in threads.values())
    jobs = {n: sum(n in used for used in threads.values()) for n in counts}
    fact = "Torch threads per job: " + ", ".join(
        f"{n} ({k} job{'s' if k != 1 else ''})" for n, k in jobs.items())
    if changed:
        fact += (f"; {changed} of {len(threads)} jobs changed count between batches (the "
                 "thread policy follows the load)")
    if counts != [1]:
        fact += ("; more than one thread may round some products differently in the last "
                 "bits, and `ablate run --threads 1` keeps records bit-identical whatever "
                 "the load")
    return [fact]


def provenance_blocks(run: RunAnalysis) -> list[Block]:
    """The "What was run" section."""
    manifest = run.manifest
    config = manifest.get("config") or {}
    # A CODI study file's run: the study table (translated runs record it beside the
    # experiment; runs of ablate before the translation recorded only it).
    study = config.get("codi_study") or (config if "checkpoint" in config else None)
    git = manifest.get("git") or {}
    commit = git.get("commit")
    git_text = (f"`{commit}`" + (" (working tree had uncommitted changes)"
                                 if git.get("dirty") else " (clean)")) if commit else \
        "unknown (not run from a git checkout)"
    libraries = ", ".join(f"{name} {version}" for name, version in
                          (manifest.get("libraries") or {}).items() if version)
    settings = run.settings
    alpha = run.analysis.get("settings", {}).get("alpha")
    margin = ("none" if settings.tost_margin_pp is None
              else f"{settings.tost_margin_pp:g} pp of accuracy")
    facts = [
        f"Experiment `{run.name}`" + (f": {config['description']}"
                                      if config.get("description") else ""),
        f"Run directory `{run.run_dir}`, created {manifest.get('created', 'unknown')}, "
        f"{len(manifest.get('sessions', []))} session(s); experiment file "
        f"`{manifest.get('experiment_file') or 'unknown'}`",
        f"Config hash `{manifest.get('config_hash', 'unknown')}`",
        f"ablate {manifest.get('ablate_version', 'unknown')}, git commit {git_text}",
        f"Python {manifest.get('python', 'unknown')} on {manifest.get('platform', 'unknown')}"
        + (f"; {libraries}" if libraries else ""),
        f"Jobs: {run.n_jobs - len(run.missing_jobs)} of {run.n_jobs} finished",
        *threads_facts(run.records.attrs.get("torch_threads") or {}),
        *(_study_facts(study) if study else _grid_facts(config)),
        f"Statistics: {settings.level:.0%} intervals, {settings.n_boot} bootstrap replicates"
        + (" (a smoke run)" if settings.smoke else "")
        + f", alpha {alpha}, equivalence margin {margin}, generator seed {settings.seed} "
        f"(from {settings.source})",
    ]
    blocks: list[Block] = [Heading(2, "What was run"), Bullets(tuple(facts))]
    listed = config.get("checkpoints") or ([config["checkpoint"]] if "checkpoint" in config
                                           else [])
    checkpoints = [(str(c.get("label")), str(c.get("train_seed", "")), f"{c.get('path')}")
                   for c in listed]
    if checkpoints:
        blocks.append(Table(TableView("checkpoints", "Checkpoints (from the resolved config)",
                                      ("head", "train seed", "path"), tuple(checkpoints))))
    facts = checkpoint_facts(manifest)
    if facts:
        blocks += [Paragraph("What the weights do not give, and where each value came from:"),
                   Bullets(tuple(facts))]
    blocks.append(Table(group_sizes(run)))
    outcomes = outcome_view(run)
    if outcomes is not None:
        blocks.append(Table(outcomes))
    if run.missing_jobs:
        shown = [f"`{job}`" for job in run.missing_jobs[:MAX_LISTED_JOBS]]
        if len(run.missing_jobs) > MAX_LISTED_JOBS:
            shown.append(f"... and {len(run.missing_jobs) - MAX_LISTED_JOBS} more: the jobs "
                         "of manifest.json without a file in records/")
        blocks += [Paragraph(f"Missing jobs ({len(run.missing_jobs)}):"), Bullets(tuple(shown))]
    return blocks
