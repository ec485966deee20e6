"""Conversion to the native format (verified, with provenance) and the inspect summary."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ablate.checkpoint import (
    INSPECT_KEYS,
    META_FILE,
    convert_checkpoint,
    inspect_checkpoint,
    iteration_ranks,
    load_checkpoint,
    probe_batch,
)
from ablate.checkpoint import convert as convert_module
from ablate.checkpoint.summary import PROBE_TEXT
from ablate.errors import AblateError
from ablate.tokenizer import ByteTokenizer
from tests.checkpoint.research_files import numpy_effective_rank, tiny_research, write_research
from tests.conftest import tiny_model

IDS = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(5))


def test_converted_checkpoint_loads_without_flags_and_records_its_source(tmp_path):
    # The research file needed --attention/--n-heads; the native copy stores them, gives
    # identical logits, and records the source's sha256 (checked with hashlib here).
    source = tiny_research(tmp_path / "run", seed=1, sidecar={}, attention="matrix3d")
    flags = {"attention": "matrix3d", "n_heads": 2}
    result = convert_checkpoint(source, tmp_path / "native", overrides=flags,
                                metadata={"command": "ablate convert ..."})
    assert result.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    converted = load_checkpoint(result.path)
    meta = converted.info.metadata
    assert meta["source"] == str(source.resolve())
    assert meta["source_sha256"] == result.source_sha256
    assert meta["command"] == "ablate convert ..."
    assert converted.info.config["attention"] == "matrix3d"
    original = load_checkpoint(source, overrides=flags)
    with torch.no_grad():
        assert torch.equal(converted.model(IDS, 4).logits, original.model(IDS, 4).logits)
    assert result.verified_shape == (2, 16) and result.n_iterations == 8  # training default


def test_convert_refuses_native_sources_and_existing_destinations(tmp_path):
    source = tiny_research(tmp_path / "run")
    native = convert_checkpoint(source, tmp_path / "native").path
    with pytest.raises(AblateError, match="already a native checkpoint"):
        convert_checkpoint(native, tmp_path / "again")
    with pytest.raises(AblateError, match="--overwrite"):
        convert_checkpoint(source, native)
    assert convert_checkpoint(source, native, overwrite=True).path == native


def test_convert_verification_catches_a_changed_model(tmp_path, monkeypatch):
    # If the saved copy computed anything else, the check must fail and remove it.
    real_load = convert_module.load_checkpoint

    def tampered(path, **kwargs):
        loaded = real_load(path, **kwargs)
        if loaded.info.format == "native":
            with torch.no_grad():
                loaded.model.final_norm.weight.mul_(1.001)
        return loaded

    monkeypatch.setattr(convert_module, "load_checkpoint", tampered)
    with pytest.raises(AblateError, match="changed the logits"):
        convert_checkpoint(tiny_research(tmp_path / "run"), tmp_path / "native")
    assert not (tmp_path / "native").exists()


def test_iteration_ranks_match_the_reference_and_numpy(reference):
    # erank of M(1..8) reproduces the reference's erank_mean_all_pos (README: within
    # 1e-3); M(0)'s is checked against a float64 numpy SVD of the reference M0.
    root = reference / "round2_frobenius_multiprobe__small_init"
    model = load_checkpoint(root).model
    ids = torch.load(root / "inputs.pt", weights_only=True)["L16"]
    expected = torch.load(root / "expected.pt", weights_only=True)["L16"]
    ranks = iteration_ranks(model, ids, 8)
    assert len(ranks) == 9
    assert np.allclose(ranks[1:], expected["erank_mean_all_pos"].numpy(), atol=1e-3)
    assert ranks[0] == pytest.approx(numpy_effective_rank(expected["M0"].numpy()).mean(), abs=1e-4)


def test_inspect_report_has_the_documented_keys(tmp_path):
    loaded = load_checkpoint(tiny_research(tmp_path), overrides={"n_iterations": 2})
    report = inspect_checkpoint(loaded, n_tokens=8)
    assert tuple(report) == INSPECT_KEYS
    assert report["n_iterations"] == 2 and len(report["erank_per_iter"]) == 3
    assert report["batch"] == {"source": "text", "shape": [2, 8], "seed": 0}
    assert all(1.0 <= r <= 4.0 for r in report["erank_per_iter"])
    assert report == inspect_checkpoint(loaded, n_tokens=8)  # deterministic
    with pytest.raises(AblateError, match="--tokens 65"):
        inspect_checkpoint(loaded, n_tokens=65)


def test_probe_batch_is_text_when_encodable_else_seeded_random_ids():
    ids, source = probe_batch(ByteTokenizer(), 256, 40)
    assert source == "text" and ids.shape == (2, 40)
    text = ByteTokenizer().decode(ids.flatten().tolist())  # row 1 continues row 0
    assert text == PROBE_TEXT[:80]
    random_ids, source = probe_batch(None, 300, 5, seed=9)
    assert source == "random"
    expected = torch.randint(0, 300, (2, 5), generator=torch.Generator().manual_seed(9))
    assert torch.equal(random_ids, expected)


def test_conversion_records_each_facts_source_and_the_copy_keeps_it(tmp_path):
    # results.json states n_heads, the flag the attention: the native copy's settings say
    # so (not just "its config.json"), and nothing is assumed.
    model = tiny_model(2, attention="matrix3d")
    source = write_research(tmp_path / "run", model.state_dict(),
                            results={"config": {"n_heads": 2}})
    result = convert_checkpoint(source, tmp_path / "native", overrides={"attention": "matrix3d"})
    assert result.assumed == []
    settings = load_checkpoint(result.path).info.settings
    assert settings["n_heads"] == {
        "value": 2, "how": "stated",
        "source": f"results.json (config), recorded when {source} was converted"}
    assert settings["attention"]["source"].startswith("the attention override, recorded when")


def test_a_copy_converted_by_an_older_ablate_that_guessed_stays_marked_assumed(tmp_path):
    # Before conversions recorded source_settings, convert guessed n_heads and attention
    # and only noted it; such a copy must not now pass for a stated config.
    result = convert_checkpoint(tiny_research(tmp_path / "run"), tmp_path / "native")
    meta_file = result.path / META_FILE
    meta = json.loads(meta_file.read_text())
    del meta["source_settings"]
    meta["source_notes"] = ["n_heads assumed 2, the research default at d=4; pass --n-heads "
                            "if the run used another"]
    meta_file.write_text(json.dumps(meta))
    info = load_checkpoint(result.path).info
    assert info.assumed == ["n_heads"]
    assert info.settings["n_heads"]["source"].startswith("guessed by an earlier ablate convert")
