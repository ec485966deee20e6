"""Research checkpoints: the reference cases, wrapped/prefixed dicts, settings precedence,
and every kind of bad input becoming one AblateError line that names the file."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest
import torch

from ablate.checkpoint import load_checkpoint
from ablate.errors import AblateError
from ablate.model import MatrixThinker
from ablate.tokenizer import ByteTokenizer
from tests.checkpoint.research_files import (
    BAD_INPUTS,
    REFERENCE_CASES,
    TINY_SIDECAR,
    expected_name,
    max_rel,
    spec_param_count,
    spec_state_dict,
    tiny_research,
    write_research,
)
from tests.conftest import tiny_model

IDS = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(3))
ATTENTION = {"frobenius_sdpa": "frobenius", "matrix_product_3d": "matrix3d"}


def _logits(model: MatrixThinker, T: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS, T).logits


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_reference_case_loads_and_reproduces_expected_logits(reference, case):
    # Invariant: load_checkpoint on the research directory rebuilds the research model:
    # logits within 1e-4 at T = 0, 1, 8 (tests/model checks every output; this checks the
    # loader), settings from the sidecar, the spec §5 parameter count.
    root = reference / case
    sidecar = json.loads((root / "config.json").read_text())
    model, tokenizer, info = load_checkpoint(root)
    assert info.format == "research" and info.variant == sidecar["variant"]
    assert info.config["attention"] == ATTENTION[sidecar["attention"]]
    assert info.config["n_heads"] == sidecar["n_heads"]
    assert info.n_params == spec_param_count(model.config)
    assert tokenizer.vocab_size == sidecar["vocab_size"]
    assert not model.training
    ids = torch.load(root / "inputs.pt", weights_only=True)["L16"]
    expected = torch.load(root / "expected.pt", weights_only=True)["L16"]
    with torch.no_grad():
        for T in (0, 1, 8):
            assert max_rel(model(ids, T).logits, expected[f"logits_T{T}"]) <= 1e-4


@pytest.mark.parametrize(
    ("wrapper", "prefix"),
    [(None, ""), ("model_state_dict", "module."), ("model", "_orig_mod."),
     ("state_dict", "module._orig_mod."), (None, "module.")],
)
def test_wrapped_and_prefixed_state_dicts_load_bit_identically(tmp_path, wrapper, prefix):
    model = tiny_model(1)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    saved = state if wrapper is None else {"step": 500, wrapper: state, "config": {"lr": 3e-4}}
    path = write_research(tmp_path, saved, sidecar=TINY_SIDECAR)
    loaded = load_checkpoint(path)
    assert torch.equal(_logits(loaded.model), _logits(model))
    assert any("prefix" in note for note in loaded.info.notes) == bool(prefix)


def test_prefix_on_only_some_keys_is_kept_and_reported(tmp_path):
    state = tiny_model().state_dict()
    state["module.final_norm.weight"] = state.pop("final_norm.weight")
    path = write_research(tmp_path, state, sidecar=TINY_SIDECAR)
    with pytest.raises(AblateError, match=r"missing keys final_norm\.weight.*unexpected keys "
                                          r"module\.final_norm\.weight") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_sidecar_attention_selects_3d_attention(tmp_path):
    model = tiny_model(2, attention="matrix3d")
    path = write_research(tmp_path, model.state_dict(),
                          sidecar={"attention": "matrix_product_3d", "n_heads": 2})
    loaded = load_checkpoint(path)
    assert loaded.info.config["attention"] == "matrix3d"
    assert torch.equal(_logits(loaded.model), _logits(model))
    assert not any("assumed" in note for note in loaded.info.notes)


def test_results_json_config_and_experiment_name_supply_settings(tmp_path):
    # Research CONFIG keys (n_thinking_layers, n_iterations) are read; the research
    # experiment name exp_3d_attn states 3D attention, and the settings say where from.
    model = tiny_model(3, attention="matrix3d")
    results = {"experiment": "exp_3d_attn", "params": 1234,
               "final_evals": {"T8": {"val_loss": 4.0}},
               "config": {"mat_dim": 4, "n_thinking_layers": 2, "n_heads": 2, "n_iterations": 4,
                          "vocab_size": 256, "max_len": 64, "lr": 3e-4}}
    path = write_research(tmp_path / "run", model.state_dict(), results=results)
    info = load_checkpoint(path).info
    assert info.config["attention"] == "matrix3d" and info.config["n_iterations"] == 4
    assert info.settings["attention"] == {"value": "matrix3d", "how": "stated",
                                          "source": "results.json (experiment 'exp_3d_attn')"}
    assert info.settings["n_heads"]["source"] == "results.json (config)"
    assert info.metadata["experiment"] == "exp_3d_attn" and info.assumed == []
    assert torch.equal(_logits(load_checkpoint(path).model), _logits(model))


def test_copied_script_defining_3d_attention_selects_it(tmp_path):
    model = tiny_model(4, attention="matrix3d")
    path = write_research(tmp_path / "run", model.state_dict(), sidecar={"n_heads": 2},
                          script="class Matrix3DAttention(nn.Module):\n    pass\n")
    info = load_checkpoint(path).info
    assert info.config["attention"] == "matrix3d"
    assert info.settings["attention"]["source"] == "script.py (defines Matrix3DAttention)"


def test_overrides_that_repeat_the_sidecars_load(tmp_path):
    path = tiny_research(tmp_path, sidecar={"attention": "frobenius_sdpa", "n_heads": 2})
    info = load_checkpoint(path, overrides={"attention": "frobenius", "n_heads": 2}).info
    assert (info.config["attention"], info.config["n_heads"]) == ("frobenius", 2)
    assert info.settings["n_heads"]["source"] == "the n_heads override"


@pytest.mark.parametrize(("overrides", "fact", "values"), [
    ({"n_heads": 4}, "n_heads", ("4 by the n_heads override", "2 by config.json")),
    ({"attention": "matrix3d"}, "attention",
     ("matrix3d by the attention override", "frobenius by config.json")),
    ({"variant": "attn3d_multiprobe"}, "attention",
     ("matrix3d by the variant override (attn3d_multiprobe)", "frobenius by config.json")),
])
def test_an_override_contradicting_a_sidecar_is_refused_naming_both(tmp_path, overrides, fact,
                                                                    values):
    # Trap: --n-heads 4 where the run's files say otherwise used to load the wrong model.
    path = tiny_research(tmp_path, sidecar={"attention": "frobenius_sdpa", "n_heads": 2})
    with pytest.raises(AblateError) as err:
        load_checkpoint(path, overrides=overrides)
    message = str(err.value)
    assert f"{fact} is {values[0]} but {values[1]}" in message and "\n" not in message


def test_sidecars_that_disagree_with_each_other_are_refused(tmp_path):
    model = tiny_model(4, attention="matrix3d")
    path = write_research(tmp_path / "run", model.state_dict(), sidecar=TINY_SIDECAR,
                          script="class Matrix3DAttention(nn.Module):\n    pass\n")
    with pytest.raises(AblateError, match=r"attention is frobenius by config.json but matrix3d "
                                          r"by script.py \(defines Matrix3DAttention\)"):
        load_checkpoint(path)


def test_script_defaults_are_assumed_only_on_request_and_reported(tmp_path):
    # Spec §3.6 and §7.4: a bare d = 16 byte file gets run_byte_matrix.py's H = 4 and
    # Frobenius attention only with assume_research_defaults, marked assumed.
    model = tiny_model(5, mat_dim=16, n_heads=4, n_probes=4, n_layers=1, max_len=16)
    path = write_research(tmp_path, model.state_dict())
    with pytest.raises(AblateError, match=r"n_heads and attention are not in the weights.*"
                                          r"assume_research_defaults=True"):
        load_checkpoint(path)
    info = load_checkpoint(path, overrides={"assume_research_defaults": True}).info
    assert (info.config["attention"], info.config["n_heads"]) == ("frobenius", 4)
    assert info.assumed == ["n_heads", "attention"]
    assert info.settings["n_heads"]["source"] == "research default of run_byte_matrix.py at d=16"
    assert any(note.startswith("n_heads = 4 (ASSUMED") for note in info.notes)
    loaded = load_checkpoint(path, overrides={"assume_research_defaults": True})
    assert torch.equal(_logits(loaded.model), _logits(model))


def test_unusual_d_has_no_default_to_assume_and_asks_for_both_facts(tmp_path):
    path = tiny_research(tmp_path, sidecar={})
    with pytest.raises(AblateError, match="n_heads and attention are not in the weights") as err:
        load_checkpoint(path, overrides_from="flags")
    assert str(path) in str(err.value) and "--n-heads H and --attention" in str(err.value)
    with pytest.raises(AblateError, match="no research script has defaults for d=4"):
        load_checkpoint(path, overrides={"assume_research_defaults": True})
    flags = {"n_heads": 2, "attention": "frobenius"}
    assert load_checkpoint(path, overrides=flags).info.config["n_heads"] == 2


def test_sidecar_value_contradicting_shapes_names_file_and_both_values(tmp_path):
    path, _ = BAD_INPUTS["sidecar_shape_disagrees"](tmp_path)
    with pytest.raises(AblateError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith("config.json states") and str(path) in message
    assert "mat_dim=32" in message and "d=4" in message and "correct mat_dim" in message


def test_variant_whose_head_contradicts_the_weights_is_refused(tmp_path):
    path = tiny_research(tmp_path, sidecar={"variant": "round1_frobenius_collapse", "n_heads": 2})
    with pytest.raises(AblateError, match=r"variant round1_frobenius_collapse\) states "
                                          r"head=collapse.*head=multiprobe"):
        load_checkpoint(path)


def test_unknown_variant_suggests_the_close_name(tmp_path):
    path, overrides = BAD_INPUTS["unknown_variant_flag"](tmp_path)
    with pytest.raises(AblateError, match="Did you mean 'attn3d_multiprobe'"):
        load_checkpoint(path, overrides=overrides)


def test_unknown_override_key_is_refused(tmp_path):
    with pytest.raises(AblateError, match="Unknown checkpoint override 'n_head'"):
        load_checkpoint(tiny_research(tmp_path), overrides={"n_head": 2})


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    path, overrides = BAD_INPUTS[case](tmp_path)
    with pytest.raises(AblateError) as err:
        load_checkpoint(path, overrides=overrides)
    message = str(err.value)
    assert "\n" not in message
    assert expected_name(case, path) in message


def test_nan_error_names_the_first_offending_key(tmp_path):
    path, _ = BAD_INPUTS["nan_weight"](tmp_path)
    with pytest.raises(AblateError, match=r"'layers\.1\.think\.gate_mult_W' has 1 NaN"):
        load_checkpoint(path)


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    path, _ = BAD_INPUTS["whole_pickled_model"](tmp_path)
    with pytest.raises(AblateError, match=r"pickled ablate\.model\.thinker\.MatrixThinker object, "
                                          r"not a state dict.*model\.state_dict\(\)"):
        load_checkpoint(path)
    path, _ = BAD_INPUTS["pickled_os_function"](tmp_path)
    with pytest.raises(AblateError, match=r"\((posix|nt|os)\.system\).*weights_only=True"):
        load_checkpoint(path)


TRIPPED: list[str] = []


def _trip(*args):
    TRIPPED.append("ran")
    return args


class Tripwire:
    """Unpickling this for real would call _trip; the loader must only record it."""

    def __reduce__(self):
        return (_trip, ("payload",))


@dataclass
class RunConfig:
    n_heads: int = 2
    attention: str = "frobenius"
    lr: float = 3e-4


@pytest.mark.parametrize("config", [
    RunConfig(), argparse.Namespace(n_heads=2, attention="frobenius", lr=3e-4),
    {"n_heads": 2, "attention": "frobenius", "hook": Tripwire()},
])
def test_embedded_namespace_dataclass_or_dict_configs_are_read_without_running_code(
        tmp_path, config):
    # A mid-training file: its config (dict, argparse args or a dataclass) states n_heads and
    # attention; the classes are recorded as plain fields, never imported or called.
    model = tiny_model(8)
    saved = {"step": 500, "model_state_dict": model.state_dict(), "config": config,
             "optimizer_state_dict": torch.optim.AdamW(model.parameters()).state_dict(),
             "scheduler_state_dict": {"last_epoch": 500}}
    path = write_research(tmp_path, saved)
    loaded = load_checkpoint(path)
    assert TRIPPED == []
    assert loaded.info.settings["n_heads"] == {"value": 2, "source": "'config' in best.pt",
                                               "how": "stated"}
    assert loaded.info.metadata["embedded_configs"] == ["the checkpoint dict in best.pt",
                                                        "'config' in best.pt"]
    assert torch.equal(_logits(loaded.model), _logits(model))


def test_round2_bpe_checkpoint_from_the_spec_key_table_counts_5155960_parameters(tmp_path):
    # Spec §3.5 keys at d=32, NL=8, K=32, V=50257, P=2048 load strictly; spec §5 count.
    state = spec_state_dict(d=32, n_layers=8, n_probes=32, vocab_size=50257, max_len=2048)
    assert len(state) == 30 * 8 + 8
    loaded = load_checkpoint(write_research(tmp_path, state), require_tokenizer=False,
                             overrides={"assume_research_defaults": True})
    assert loaded.info.n_params == 5_155_960 == spec_param_count(loaded.model.config)
    assert loaded.info.config["n_heads"] == 8
    assert loaded.info.variant == "round2_frobenius_multiprobe"
    assert loaded.tokenizer is None
    assert any("--tokenizer" in note for note in loaded.info.notes)


def test_non_byte_vocabulary_without_tokenizer_asks_for_one(tmp_path):
    path = tiny_research(tmp_path, vocab_size=300)
    with pytest.raises(AblateError, match="vocab_size 300 is not a byte vocabulary.*--tokenizer"):
        load_checkpoint(path)


@pytest.mark.parametrize(("embedding", "rank"), [("bigram", 2), ("pairwise", 1)])
def test_embedding_kind_is_read_from_shapes_and_the_sidecar(tmp_path, embedding, rank):
    # pairwise has its own key; rank_r and bigram share shapes, so the sidecar names it.
    model = tiny_model(6, embedding=embedding, embedding_rank=rank)
    sidecar = {**TINY_SIDECAR, **({"embedding": embedding} if rank > 1 else {})}
    loaded = load_checkpoint(write_research(tmp_path, model.state_dict(), sidecar=sidecar))
    assert loaded.info.config["embedding"] == embedding
    assert loaded.info.config["embedding_rank"] == rank
    assert torch.equal(_logits(loaded.model), _logits(model))


def test_half_precision_weights_are_cast_to_float32_with_a_note(tmp_path):
    model = tiny_model(7)
    state = {k: v.half() for k, v in model.state_dict().items()}
    loaded = load_checkpoint(write_research(tmp_path, state, sidecar=TINY_SIDECAR))
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert any("float16" in note for note in loaded.info.notes)


def test_byte_vocabularies_get_byte_tokenizers(tmp_path):
    assert load_checkpoint(tiny_research(tmp_path / "a")).tokenizer == ByteTokenizer()
    loaded = load_checkpoint(tiny_research(tmp_path / "b", vocab_size=259))
    assert loaded.tokenizer == ByteTokenizer(("<pad>", "<bot>", "<eot>"))
    assert any("259" in note for note in loaded.info.notes)


def test_loading_leaves_the_global_rng_alone(tmp_path):
    path = tiny_research(tmp_path)
    before = torch.random.get_rng_state()
    load_checkpoint(path)
    assert torch.equal(before, torch.random.get_rng_state())


def test_rank_r_and_bigram_share_shapes_so_one_must_be_stated(tmp_path):
    model = tiny_model(6, embedding="rank_r", embedding_rank=2)
    path = write_research(tmp_path, model.state_dict(), sidecar=TINY_SIDECAR)
    with pytest.raises(AblateError, match="embedding is not in the weights"):
        load_checkpoint(path)
    info = load_checkpoint(path, overrides={"embedding": "rank_r"}).info
    assert info.config["embedding"] == "rank_r" and info.assumed == []
    assumed = load_checkpoint(path, overrides={"assume_research_defaults": True}).info
    assert assumed.config["embedding"] == "rank_r" and assumed.assumed == ["embedding"]


def test_variant_name_comes_from_the_sidecar(tmp_path):
    path = tiny_research(tmp_path, sidecar={"variant": "round2_frobenius_multiprobe",
                                            "n_heads": 2, "vocab_size": 256})
    info = load_checkpoint(path).info
    assert info.variant == "round2_frobenius_multiprobe"
    source = info.settings["attention"]["source"]
    assert source == "config.json (variant round2_frobenius_multiprobe)"


def test_directory_without_best_pt_lists_contents_and_points_at_other_pt_files(tmp_path):
    write_research(tmp_path / "run", tiny_model().state_dict(), name="step_500.pt")
    with pytest.raises(AblateError, match=r"found step_500\.pt; pass the \.pt file itself"):
        load_checkpoint(tmp_path / "run")


def test_codi_checkpoint_is_recognised(tmp_path):
    state = {"gpt2.transformer.wte.weight": torch.zeros(3, 2),
             "bottleneck.w_up.bias": torch.zeros(2)}
    path = write_research(tmp_path, {"model": state, "use_matrix_bottleneck": True})
    with pytest.raises(AblateError, match="matrix-CODI checkpoint") as err:
        load_checkpoint(path)
    assert f"inspect it with: ablate codi inspect {path} --kind research" in str(err.value)
