"""The report says which outcome every accuracy uses: per task under "What was run" (with
the stop sequences of generative tasks), in the verdict legend and the reading guide, and
a table of the unablated accuracy under every outcome of generative records."""

from __future__ import annotations

import pandas as pd

from ablate.questions.blocks import Bullets, Paragraph, Table
from ablate.report import analyze_run
from ablate.report.assemble import accuracy_name, evidence_of, verdict_blocks
from ablate.report.provenance import outcome_view, provenance_blocks
from ablate.tasks.outcomes import LM_EVAL_STOP
from tests.report.conftest import write_run


def texts(blocks) -> str:
    found = []
    for block in blocks:
        if isinstance(block, Bullets):
            found += block.items
        elif isinstance(block, Paragraph):
            found.append(block.text)
    return "\n".join(found)


def test_a_teacher_forced_run_names_its_exact_match_and_has_no_outcome_table(run):
    assert "teacher-forced exact match (the argmax reproduces every gold answer token" in \
        texts(provenance_blocks(run))
    assert outcome_view(run) is None  # one outcome only: nothing to compare
    assert accuracy_name(run) == "teacher-forced exact match"


def test_a_generative_run_states_outcome_stops_and_unablated_accuracy_per_outcome(tmp_path):
    run_dir = write_run(tmp_path / "gen", seeds=(0, 1), heads=("multiprobe",), n_items=12,
                        ks=(1, 2), n_draws=1, mode="generative",
                        options={"outcome": "strict", "stop": list(LM_EVAL_STOP)})
    run = analyze_run(run_dir)
    blocks = provenance_blocks(run)
    assert ("`gsm8k` test split, generative, first 12 items (accuracy = lm-eval strict-match "
            "exact match (the default); stops `Question:`, `</s>`, `<|im_end|>`)") in \
        texts(blocks)
    view = next(b.view for b in blocks if isinstance(b, Table) and b.view.key == "outcomes")
    assert view.columns[-4:] == ("accuracy (primary)", "strict", "flexible", "numeric")
    plain = run.records[run.records["condition"] == "none"]
    (row,) = view.rows
    assert row[:3] == ("multiprobe", "gsm8k", "3")
    assert row[4:] == tuple(f"{100 * plain[c].astype(float).mean():.1f}" for c in (
        "correct", "correct_strict", "correct_flexible", "correct_numeric"))
    assert float(row[-1]) > float(row[4])  # numeric match is laxer than the primary
    legend = texts(verdict_blocks(evidence_of(run), accuracy=accuracy_name(run)))
    assert "Accuracy: lm-eval strict exact match." in legend


def test_records_without_outcome_columns_give_no_outcome_table(run):
    assert not {"correct_strict", "correct_numeric"} & set(run.records.columns)
    frame = pd.DataFrame({"mode": ["generative"], "condition": ["none"], "correct": [1.0]})
    assert outcome_view(type("R", (), {"records": frame})()) is None
