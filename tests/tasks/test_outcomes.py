"""The primary outcome of generative GSM8K-format tasks is lm-evaluation-harness's strict
exact match unless a task option names another; numeric match stays a named secondary
column; the scoring options are refused where nothing is generated, and enter the
config hash of generative experiments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from ablate.errors import AblateError
from ablate.experiment import Experiment
from ablate.tasks import get_task
from ablate.tasks.base import Item
from ablate.tasks.outcomes import LM_EVAL_STOP, scoring_text

REPO = Path(__file__).resolve().parents[2]


def item(answer: str) -> Item:
    return Item(item_id="x", question="q", solution="s", answer=answer, answer_value=None,
                steps=(), depth_annotations=None, depth_lines=None, doc_hash="0" * 16)


def lm_eval_exact_match(generation: str, gold: str) -> bool:
    """A from-the-yaml reading of lm-eval's GSM8K ``exact_match,strict-match``: the first
    "#### (number)" group (else "[invalid]"), then the regexes_to_ignore removed in order
    from prediction and reference, then lower case, then string equality."""
    found = re.findall(r"#### (\-?[0-9\.\,]+)", generation)
    prediction = found[0].strip() if found else "[invalid]"
    for pattern in (",", r"\$", r"(?s).*#### ", r"\.$"):
        prediction, gold = re.sub(pattern, "", prediction), re.sub(pattern, "", gold)
    return prediction.lower() == gold.lower()


# (generation, gold, lm-eval's exact match, numeric match within 1e-4)
CASES = [
    ("#### 42.0", "42", False, True),
    ("#### 042", "42", False, True),
    ("#### 3.1416", "3.14159", False, True),
    ("#### 10..", "10", False, True),
    ("#### 1,000", "1000", True, True),  # "," is ignored on both sides
    ("#### 1000", "1,000", True, True),
    ("#### 18.", "18", True, True),  # one trailing "." is ignored
    ("#### -7", "-7", True, True),
    ("#### 7\n#### 8", "8", False, False),  # the first "#### N" counts
    ("the answer is 42", "42", False, False),  # no "#### N": invalid
]


@pytest.mark.parametrize(("generation", "gold", "exact", "numeric"), CASES)
@pytest.mark.parametrize("task", ["gsm8k", "synthetic"])
def test_correct_is_lm_eval_strict_exact_match_by_default(task, generation, gold, exact,
                                                          numeric):
    score = get_task(task).score(" s\n" + generation, item(gold))
    assert lm_eval_exact_match(" s\n" + generation, gold) == exact  # the reference agrees
    assert score.correct == exact == score.correct_strict
    assert score.correct_numeric == numeric  # the secondary outcome keeps today's rule
    assert score.primary == "strict"


@pytest.mark.parametrize(("outcome", "column"), [("strict", "correct_strict"),
                                                 ("flexible", "correct_flexible"),
                                                 ("numeric", "correct_numeric")])
def test_the_outcome_option_names_the_column_correct_copies(outcome, column):
    task = get_task("gsm8k", outcome=outcome)
    for generation, gold, *_ in CASES + [("it is 42 in all", "42", False, False)]:
        score = task.score(generation, item(gold))
        assert score.correct == getattr(score, column)
        assert score.primary == outcome


def test_the_rule_a_caller_names_keeps_its_own_primary():
    # CODI answers are scored by CODI's rule even when the task's outcome is strict.
    score = get_task("synthetic").score(" 7.0", item("7"), rule="codi")
    assert score.primary == "numeric" and score.correct and not score.correct_strict
    assert get_task("openr1").score("\\boxed{0.50}", item("1/2")).correct


def test_an_unknown_outcome_is_a_one_line_error_with_a_suggestion():
    with pytest.raises(AblateError, match="outcome='strcit'.*Did you mean 'strict'") as err:
        get_task("gsm8k", outcome="strcit")
    assert "\n" not in str(err.value)
    with pytest.raises(AblateError, match="Unknown option.*outcome"):
        get_task("openr1", outcome="strict")  # boxed math equality is its only outcome


@pytest.mark.parametrize("stop", ["Question:", [""], ["a", 3], 5])
def test_stop_must_be_a_list_of_non_empty_strings(stop):
    with pytest.raises(AblateError, match="stop=.*list of non-empty strings"):
        get_task("synthetic", stop=stop)


def test_stop_defaults_to_lm_eval_and_takes_a_list():
    assert LM_EVAL_STOP == ("Question:", "</s>", "<|im_end|>")
    assert get_task("gsm8k").stop == LM_EVAL_STOP
    assert get_task("gsm8k", stop=["\n\n", "Question:"]).stop == ("\n\n", "Question:")
    assert get_task("gsm8k", stop=[]).generation_format.stop_sequences == ()


def quickstart(**task: object) -> dict:
    data = tomllib.loads((REPO / "experiments" / "quickstart.toml").read_text())
    data["tasks"][0].update(task)
    return data


def test_generative_tasks_record_their_scoring_options_and_hash_them():
    default = Experiment.from_dict(quickstart(mode="generative"))
    assert default.tasks[0].options == {"max_value": 5, "max_total": 10, "outcome": "strict",
                                        "stop": list(LM_EVAL_STOP)}
    explicit = Experiment.from_dict(quickstart(mode="generative", options={
        "max_value": 5, "max_total": 10, "outcome": "strict", "stop": list(LM_EVAL_STOP)}))
    assert explicit.config_hash() == default.config_hash()
    numeric = Experiment.from_dict(quickstart(mode="generative", options={
        "max_value": 5, "max_total": 10, "outcome": "numeric"}))
    stops = Experiment.from_dict(quickstart(mode="generative", options={
        "max_value": 5, "max_total": 10, "stop": ["\n\n"]}))
    assert len({default.config_hash(), numeric.config_hash(), stops.config_hash()}) == 3
    # Teacher-forced tasks extract nothing: their options (and hash) stay as written.
    assert Experiment.from_dict(quickstart()).tasks[0].options == {"max_value": 5,
                                                                   "max_total": 10}


def test_a_bad_scoring_option_in_an_experiment_names_the_file_and_table():
    with pytest.raises(AblateError, match=r"x.toml: \[\[tasks\]\] #1: 'options' .*"
                                          "outcome='numric'.*Did you mean 'numeric'"):
        Experiment.from_dict(quickstart(mode="generative", options={"outcome": "numric"}),
                             source="x.toml")
    with pytest.raises(AblateError, match="x.toml: .*stop='Question:' must be a list"):
        Experiment.from_dict(quickstart(mode="generative", options={"stop": "Question:"}),
                             source="x.toml")


@pytest.mark.parametrize("key", ["outcome", "stop"])
def test_scoring_options_are_refused_in_teacher_forced_mode(key):
    value = "numeric" if key == "outcome" else ["\n\n"]
    with pytest.raises(AblateError, match=f"x.toml: .*'options' sets {key}, which "
                                          "teacher_forced mode does not use"):
        Experiment.from_dict(quickstart(options={key: value}), source="x.toml")


def test_scoring_options_are_refused_for_codi_checkpoints():
    data = quickstart(mode="generative", options={"outcome": "strict"})
    data["checkpoints"] = [{"path": "x", "label": "codi", "model": "codi"}]
    data["n_latents"] = data.pop("iterations")
    data["interventions"] = [{"name": "svd_rank_k", "site": "latent", "k": [1]}]
    with pytest.raises(AblateError, match="sets outcome, which CODI checkpoints do not take"):
        Experiment.from_dict(data, source="x.toml")
    del data["tasks"][0]["options"]
    assert Experiment.from_dict(data).tasks[0].options == {}  # CODI's rule, not filled in


def test_the_report_names_each_tasks_outcome_and_stops():
    generative = {"name": "gsm8k", "mode": "generative",
                  "options": {"outcome": "strict", "stop": list(LM_EVAL_STOP)}}
    assert scoring_text(generative) == (
        "accuracy = lm-eval strict-match exact match (the default); stops `Question:`, "
        "`</s>`, `<|im_end|>`")
    assert "numeric match" in scoring_text({**generative, "options": {"outcome": "numeric"}})
    assert "teacher-forced exact match" in scoring_text({"name": "gsm8k",
                                                         "mode": "teacher_forced"})
    assert "\\boxed{}" in scoring_text({"name": "openr1", "mode": "generative",
                                        "options": {"stop": ["\n\nQuestion:"]}})
    assert "`\\n\\nQuestion:`" in scoring_text({"name": "openr1", "mode": "generative",
                                               "options": {"stop": ["\n\nQuestion:"]}})
    assert "CODI's rule" in scoring_text(generative, codi=True)
    assert "not recorded" in scoring_text({"name": "gsm8k", "mode": "generative"})
