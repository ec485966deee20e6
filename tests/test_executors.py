"""Running jobs: the local executor's contract, run_job's records, resume, preflight checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
import torch

from ablate.checkpoint import save_checkpoint
from ablate.errors import AblateError
from ablate.executors import (
    EXECUTORS,
    LocalExecutor,
    check_experiment,
    get_executor,
    run_experiment,
    run_job,
)
from ablate.experiment import load_experiment
from ablate.grid import expand_jobs
from ablate.schema import JOB_COLUMNS
from ablate.store import read_records
from ablate.tokenizer import ByteTokenizer
from tests.conftest import tiny_model

# The per-item record schema every run must write (docs/architecture.md).
SCHEMA = (
    "job_id", "checkpoint", "config_label", "train_seed", "eval_seed", "task", "split", "mode",
    "n_iterations", "condition", "intervention", "site", "k", "draw", "item_id", "doc_hash",
    "prompt_hash", "target_hash", "depth_annotations", "depth_lines", "n_prompt_tokens",
    "n_target_tokens", "answer_loglik", "solution_nats", "solution_bytes", "bits_per_byte",
    "tf_exact_match", "prediction", "correct_strict", "correct_flexible", "correct_numeric",
    "invalid", "correct", "erank_per_iter", "erank_answer_per_iter",
)

EXPERIMENT = {
    "version": 1,
    "name": "tiny",
    "checkpoints": [{"path": "ckpt/multiprobe-seed*", "label": "multiprobe"}],
    "interventions": [{"name": "svd_rank_k", "k": [1, 2]},
                      {"name": "random_rank_k", "k": [2], "draws": 2}],
    "tasks": [{"name": "synthetic", "split": "test", "limit": 3}],
    "eval_seeds": [0],
    "iterations": [1, 2],
    "batch_size": 4,
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine the threads
    thrash (several times slower); restore the setting for other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_checkpoints(root: Path, heads: tuple[str, ...] = ("multiprobe",),
                     seeds: tuple[int, ...] = (0, 1), **config) -> None:
    """Seeded tiny models (d = 4) saved as native checkpoints root/ckpt/<head>-seed<s>."""
    for head in heads:
        for seed in seeds:
            model = tiny_model(seed, head=head, max_len=256, **config)
            save_checkpoint(model, ByteTokenizer(), root / "ckpt" / f"{head}-seed{seed}",
                            metadata={"command": "test", "seed": seed})


def write_experiment(root: Path, **changes) -> Path:
    """EXPERIMENT with top-level ``changes``, written to root/exp.toml (checkpoints made
    on first use)."""
    if not (root / "ckpt").exists():
        make_checkpoints(root)
    path = root / "exp.toml"
    path.write_text(tomli_w.dumps({**EXPERIMENT, **changes}))
    return path


class RecordingExecutor(LocalExecutor):
    """The local executor, remembering which jobs it was asked to run."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, jobs, job_fn, on_done) -> None:
        self.ran += [job.job_id for job in jobs]
        super().run(jobs, job_fn, on_done)


def test_local_executor_hands_over_finished_jobs_then_raises_the_first_error():
    done = []

    def job_fn(job):
        if job == "boom":
            raise RuntimeError("job failed")
        return pd.DataFrame({"x": [job]})

    with pytest.raises(RuntimeError, match="job failed"):
        LocalExecutor().run(["a", "b", "boom", "never"], job_fn,
                            lambda job, frame: done.append((job, frame["x"].item())))
    assert done == [("a", "a"), ("b", "b")]  # in order; nothing after the failure starts


def test_unknown_executor_lists_the_available_ones():
    with pytest.raises(AblateError, match="Unknown executor 'rey'.*Available: local"):
        get_executor("rey")
    assert isinstance(get_executor("local"), LocalExecutor) and "local" in EXECUTORS


def test_run_job_writes_the_record_schema_one_row_per_item_and_condition(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    job = expand_jobs(experiment)[0]
    calls = []
    frame = run_job(job, progress=lambda j, done, total: calls.append((done, total)))
    missing = [column for column in SCHEMA if column not in frame.columns]
    assert not missing
    assert list(frame.columns[: len(JOB_COLUMNS)]) == list(JOB_COLUMNS)
    # 1 unablated + 2 SVD + 2 random draws = 5 conditions over 3 items.
    assert len(frame) == 15 and frame["condition"].nunique() == 5
    assert (frame["job_id"] == job.job_id).all() and (frame["train_seed"] == 0).all()
    assert (frame["n_iterations"] == 1).all() and (frame["config_label"] == "multiprobe").all()
    assert frame.loc[frame["condition"] == "none", "k"].isna().all()
    assert calls[0] == (0, 15) and calls[-1] == (15, 15)
    # T = 1: the effective-rank trajectory covers M(0) and M(1).
    assert all(len(values) == 2 for values in frame["erank_per_iter"])


def test_second_run_skips_finished_jobs_and_keeps_records(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    first, second = RecordingExecutor(), RecordingExecutor()
    result = run_experiment(experiment, tmp_path / "run", executor=first)
    before = read_records(tmp_path / "run")
    again = run_experiment(experiment, tmp_path / "run", executor=second)
    assert (result.n_run, result.n_skipped, again.n_run, again.n_skipped) == (4, 0, 0, 4)
    assert len(first.ran) == 4 and second.ran == []
    pd.testing.assert_frame_equal(read_records(tmp_path / "run"), before)
    assert before.attrs["missing_jobs"] == []
    assert sorted(before["job_id"].unique()) == sorted(first.ran)


def test_check_counts_jobs_conditions_and_evaluations(tmp_path):
    summary = check_experiment(load_experiment(write_experiment(tmp_path)).resolve())
    # 2 checkpoints x 2 T = 4 jobs; each 3 items x 5 conditions.
    assert (summary.n_jobs, summary.n_conditions, summary.n_evaluations) == (4, 5, 60)
    assert summary.items == [("synthetic/test", 3)]
    assert [c["d"] for c in summary.checkpoints] == [4, 4]
    structural = check_experiment(load_experiment(write_experiment(tmp_path)), checkpoints=False)
    assert structural.n_jobs is None and structural.n_conditions == 5


@pytest.mark.parametrize("changes, fragment", [
    ({"interventions": [{"name": "svd_rank_k", "k": [8]}]}, "k=8 but checkpoint"),
    ({"interventions": [{"name": "svd_rank_k", "k": [1], "site": "iter.1.layer.5"}]},
     "names layer 5 but the model has 2 layers"),
    ({"interventions": [{"name": "svd_rank_k", "k": [1], "site": "iter.3"}]}, "never fires"),
    ({"checkpoints": [{"path": "ckpt/multiprobe-seed0", "label": "collapse"}]},
     "has a multiprobe head"),
])
def test_check_rejects_what_does_not_fit_the_checkpoints(tmp_path, changes, fragment):
    experiment = load_experiment(write_experiment(tmp_path, **changes)).resolve()
    with pytest.raises(AblateError, match=fragment) as err:
        check_experiment(experiment)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("window, noted", [(64, True), (256, False), (None, False)])
def test_check_notes_items_longer_than_the_training_window(tmp_path, window, noted):
    # Positions past the windows a checkpoint was trained on were never trained: say so
    # (once per tokenizer and window), and say nothing when the window is unknown.
    model = tiny_model(0, max_len=256)
    training = {} if window is None else {"training": {"config": {"seq_len": window}}}
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ckpt" / "multiprobe-seed0",
                    metadata={"command": "test", "seed": 0, **training})
    tasks = [{"name": "synthetic", "split": "test", "limit": 3, "mode": "teacher_forced"}]
    summary = check_experiment(load_experiment(write_experiment(tmp_path, tasks=tasks)).resolve())
    notes = [n for n in summary.notes if "out of distribution" in n]
    assert len(notes) == noted
    if noted:
        assert notes[0].startswith("3 of 3 synthetic/test items are longer than the 64-token")


def test_check_rejects_data_the_tokenizer_cannot_encode(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ablate.tokenizer import HuggingFaceTokenizer

    words = ["[UNK]", "Question:", "Answer:", "####", "has", "1", "2", "3"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = HuggingFaceTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend,
                                                             unk_token="[UNK]"))
    model = tiny_model(0, vocab_size=len(words), max_len=256)
    save_checkpoint(model, tokenizer, tmp_path / "ckpt" / "multiprobe-seed0",
                    metadata={"command": "test", "seed": 0})
    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    with pytest.raises(AblateError, match="does not survive encode/decode") as err:
        check_experiment(experiment)
    assert "multiprobe-seed0" in str(err.value) and "\n" not in str(err.value)


def test_openr1_runs_teacher_forced_from_a_local_file_in_the_hub_schema(tmp_path):
    # The shipped OpenR1 experiment's task block, on a local file: numeric golds are
    # scored, a proof problem is excluded, and every record carries the task's name.
    lines = [{"uuid": f"u{i}", "problem": f"Compute {i} + {i}.",
              "solution": f"We add: $\\boxed{{{2 * i}}}$", "answer": str(2 * i)}
             for i in range(1, 4)]
    lines.append({"uuid": "p", "problem": "Prove it.", "solution": "Done.", "answer": "proof"})
    data = tmp_path / "openr1.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    tasks = [{"name": "openr1", "split": "train", "path": str(data), "mode": "teacher_forced",
              "options": {"numeric_only": True}}]
    experiment = load_experiment(write_experiment(tmp_path, tasks=tasks)).resolve()
    frame = run_job(expand_jobs(experiment)[0])
    assert set(frame["task"]) == {"openr1"} and frame["item_id"].nunique() == 3
    assert frame["answer_loglik"].lt(0).all() and frame["bits_per_byte"].gt(0).all()


def research_experiment(root: Path, overrides: dict) -> Path:
    """A d = 16 byte model saved as a bare research best.pt (no sidecar), in an
    experiment with the given [[checkpoints]] overrides."""
    model = tiny_model(0, mat_dim=16, n_heads=2, n_probes=16, n_layers=1, max_len=256)
    folder = root / "research-seed0"
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "best.pt")
    path = root / "exp.toml"
    entry = {"path": "research-seed0/best.pt", "label": "multiprobe", "overrides": overrides}
    path.write_text(tomli_w.dumps({**EXPERIMENT, "checkpoints": [entry], "iterations": [1]}))
    return path


def test_a_research_checkpoint_with_unstated_facts_is_refused_naming_the_overrides(tmp_path):
    experiment = load_experiment(research_experiment(tmp_path, {})).resolve()
    with pytest.raises(AblateError) as err:
        check_experiment(experiment)
    assert str(err.value).endswith(
        'n_heads and attention are not in the weights and nothing states them; pass '
        'n_heads = H and attention = "frobenius"|"matrix3d" to its [[checkpoints]] overrides, '
        "or assume_research_defaults = true to assume run_byte_matrix.py's 4 heads, "
        "frobenius attention")


@pytest.mark.parametrize(("overrides", "source", "assumed"), [
    ({"n_heads": 2, "attention": "frobenius"}, "the n_heads override", []),
    ({"assume_research_defaults": True}, "research default of run_byte_matrix.py at d=16",
     ["n_heads", "attention"]),
])
def test_the_manifest_records_where_each_fact_came_from(tmp_path, overrides, source, assumed):
    from ablate.report.provenance import assumed_note, checkpoint_facts
    from ablate.store import read_manifest

    experiment = load_experiment(research_experiment(tmp_path, overrides)).resolve()
    notes = [n for n in check_experiment(experiment).notes if "ASSUMED" in n]
    assert len(notes) == bool(assumed)  # `ablate run` prints these as warnings
    run_experiment(experiment, tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    entry = manifest["checkpoints"][0]
    assert entry["path"] == experiment.checkpoints[0].path and entry["format"] == "research"
    assert entry["settings"]["n_heads"]["source"] == source and entry["assumed"] == assumed
    # d lets the statistics tell rank cuts that keep the states (k >= d) from real ones.
    assert entry["d"] == 16  # research_experiment's d = 16 file
    facts = checkpoint_facts(manifest)
    assert len(facts) == 1 and facts[0].startswith("1 checkpoint (multiprobe): n_heads = ")
    note = assumed_note(manifest)
    assert (note is not None) == bool(assumed)
    if note is not None:
        assert note.kind == "warning" and note.text.startswith(
            "Assumed, not stated: attention and n_heads of 1 checkpoint(s)")


def test_experiment_overrides_take_assume_research_defaults_as_a_boolean(tmp_path):
    with pytest.raises(AblateError, match="'assume_research_defaults' must be bool"):
        load_experiment(research_experiment(tmp_path, {"assume_research_defaults": "yes"}))
