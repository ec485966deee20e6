"""Native checkpoints: save -> load round trips, the transformers convention, provenance,
atomic saves, and damaged or inconsistent directories."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ablate
from ablate.checkpoint import META_FILE, META_VERSION, load_checkpoint, save_checkpoint
from ablate.errors import AblateError
from ablate.model import MatrixThinker
from ablate.provenance import git_state
from ablate.tokenizer import ByteTokenizer, HuggingFaceTokenizer
from tests.conftest import tiny_model

IDS = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(4))
META = {"command": "ablate train exp.toml", "seed": 3, "data": "synthetic", "steps": 10,
        "metrics": {"val_loss": 2.5}}


def _logits(model: MatrixThinker, T: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS, T).logits


def _save(directory: Path, seed: int = 0, **overrides) -> tuple[MatrixThinker, Path]:
    model = tiny_model(seed, **overrides)
    return model, save_checkpoint(model, ByteTokenizer(("<pad>",)) if model.config.vocab_size
                                  == 257 else ByteTokenizer(), directory, metadata=META)


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
def test_save_then_load_gives_bit_identical_logits(tmp_path, attention):
    model, path = _save(tmp_path / "ck", attention=attention, vocab_size=257)
    loaded = load_checkpoint(path)
    assert torch.equal(_logits(loaded.model), _logits(model))
    assert loaded.tokenizer == ByteTokenizer(("<pad>",))
    assert loaded.info.format == "native" and loaded.info.config["attention"] == attention
    assert loaded.info.notes == [] and not loaded.model.training
    assert sorted(p.name for p in path.iterdir()) == [
        META_FILE, "config.json", "model.safetensors", "tokenizer.json"]


def test_transformers_from_pretrained_and_automodel_read_the_format(tmp_path):
    from transformers import AutoModel

    model, path = _save(tmp_path / "ck", seed=1)
    for reader in (MatrixThinker, AutoModel):
        other = reader.from_pretrained(str(path), trust_remote_code=False).eval()
        assert isinstance(other, MatrixThinker)
        assert torch.equal(_logits(other), _logits(model))


def test_metadata_holds_caller_keys_and_provenance(tmp_path):
    _, path = _save(tmp_path / "ck")
    meta = json.loads((path / META_FILE).read_text())
    assert {k: meta[k] for k in META} == META
    assert meta["version"] == META_VERSION and meta["ablate_version"] == ablate.__version__
    assert meta["libraries"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert isinstance(meta["git_hash"], str) and meta["git_hash"]
    assert load_checkpoint(path).info.metadata == meta


def test_git_hash_is_unknown_outside_an_ablate_checkout(tmp_path, monkeypatch):
    fake = tmp_path / "site-packages" / "ablate"
    fake.mkdir(parents=True)
    monkeypatch.setattr(ablate, "__file__", str(fake / "__init__.py"))
    assert git_state() == ("unknown", None)


def test_interrupted_save_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    # Invariant: a failure mid-save leaves the target absent (or the old checkpoint whole)
    # and no temporary directory behind.
    old_model, path = _save(tmp_path / "ck", seed=2)

    def fail(self, directory):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ByteTokenizer, "save", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tiny_model(5), ByteTokenizer(), tmp_path / "new", metadata={})
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tiny_model(5), ByteTokenizer(), path, metadata={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    monkeypatch.undo()
    assert torch.equal(_logits(load_checkpoint(path).model), _logits(old_model))


def test_overwrite_replaces_only_ablate_checkpoints(tmp_path):
    _, path = _save(tmp_path / "ck", seed=0)
    new_model = tiny_model(6)
    with pytest.raises(AblateError, match="--overwrite"):
        save_checkpoint(new_model, ByteTokenizer(), path, metadata={}, overwrite=False)
    save_checkpoint(new_model, ByteTokenizer(), path, metadata={})
    assert torch.equal(_logits(load_checkpoint(path).model), _logits(new_model))
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("keep me")
    with pytest.raises(AblateError, match="not an ablate checkpoint") as err:
        save_checkpoint(new_model, ByteTokenizer(), other, metadata={})
    assert str(other) in str(err.value)
    assert (other / "chapter1.tex").read_text() == "keep me"


def test_metadata_that_is_not_json_names_the_key(tmp_path):
    with pytest.raises(AblateError, match=r"metadata\['data'\]"):
        save_checkpoint(tiny_model(), ByteTokenizer(), tmp_path / "ck", metadata={"data": {1, 2}})
    assert not (tmp_path / "ck").exists()


def test_damaged_weights_file_is_one_line_error(tmp_path):
    _, path = _save(tmp_path / "ck")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AblateError, match="truncated or corrupt") as err:
        load_checkpoint(path)
    assert str(weights) in str(err.value) and "\n" not in str(err.value)


def test_nan_in_native_weights_names_the_key(tmp_path):
    _, path = _save(tmp_path / "ck")
    weights = path / "model.safetensors"
    state = load_file(str(weights))
    state["pos_v.weight"][3, 1] = float("nan")
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(AblateError, match=r"'pos_v\.weight' has 1 NaN"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [({"n_head": 2}, r"unknown config keys \['n_head'\]"),
     ({"model_type": "gpt2"}, "model_type 'gpt2'"),
     ({"n_heads": 3}, "n_heads=3 does not divide mat_dim=4"),
     ({"mat_dim": 8, "n_heads": 2}, r"shape mismatches .*embed_u\.weight")],
)
def test_inconsistent_native_config_is_refused(tmp_path, edit, message):
    _, path = _save(tmp_path / "ck")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(AblateError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_newer_metadata_version_is_refused(tmp_path):
    _, path = _save(tmp_path / "ck")
    meta = json.loads((path / META_FILE).read_text())
    (path / META_FILE).write_text(json.dumps({**meta, "version": META_VERSION + 1}))
    with pytest.raises(AblateError, match="upgrade ablate"):
        load_checkpoint(path)


def test_native_configs_state_every_fact_which_overrides_may_repeat_not_contradict(tmp_path):
    # T is a setting (noted when overridden); attention and n_heads are facts of the
    # stored config: repeating them is fine, contradicting them is an error.
    _, path = _save(tmp_path / "ck")
    info = load_checkpoint(path, overrides={"n_iterations": 5, "attention": "frobenius",
                                            "n_heads": 2}).info
    assert (info.config["n_iterations"], info.config["attention"]) == (5, "frobenius")
    assert any("n_iterations overridden" in note for note in info.notes)
    assert info.settings["n_heads"] == {"value": 2, "source": "the checkpoint's config.json",
                                        "how": "stated"}
    assert info.assumed == []
    with pytest.raises(AblateError, match=r"attention is matrix3d by --attention but frobenius "
                                          r"by the checkpoint's config.json"):
        load_checkpoint(path, overrides={"attention": "matrix3d"}, overrides_from="flags")
    with pytest.raises(AblateError, match=r"n_heads=0 from --n-heads is not a divisor of d=4"):
        load_checkpoint(path, overrides={"n_heads": 0}, overrides_from="flags")
    with pytest.raises(AblateError, match="head=collapse"):
        load_checkpoint(path, overrides={"variant": "round1_frobenius_collapse"})


def test_weights_file_path_and_missing_tokenizer_files(tmp_path):
    # Pointing at model.safetensors loads its directory; with the tokenizer file gone the
    # byte tokenizer is rebuilt from the config's specials, with a note.
    _, path = _save(tmp_path / "ck", vocab_size=257)
    (path / "tokenizer.json").unlink()
    loaded = load_checkpoint(path / "model.safetensors")
    assert loaded.info.path == str(path)
    assert loaded.tokenizer == ByteTokenizer(("<pad>",))
    assert any("specials" in note for note in loaded.info.notes)


def test_hugging_face_tokenizer_round_trips(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"[UNK]": 0, "two": 1, "plus": 2, "three": 3}
    core = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    HuggingFaceTokenizer(PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
                         ).save(tmp_path / "tok")
    model = tiny_model(7, vocab_size=300)
    path = tmp_path / "research" / "best.pt"
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path, overrides={"tokenizer": tmp_path / "tok", "n_heads": 2,
                                              "attention": "frobenius"})
    assert loaded.tokenizer.encode("two plus three") == [1, 2, 3]
    saved = save_checkpoint(loaded.model, loaded.tokenizer, tmp_path / "ck", metadata={})
    again = load_checkpoint(saved)
    assert isinstance(again.tokenizer, HuggingFaceTokenizer)
    assert again.tokenizer.encode("three two") == [3, 1]
    assert torch.equal(_logits(again.model), _logits(model))
