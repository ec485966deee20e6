"""Training: schedule, optimisation, exact bits per byte, data windows, resume, bundled models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.errors import AblateError
from ablate.tokenizer import ByteTokenizer
from ablate.train import STATE_FILE, TrainConfig, lr_multiplier, train
from ablate.train.arguments import BETAS
from ablate.train.data import Corpus, TokenWindows, batch_indices, validation_windows
from ablate.train.loop import training_step
from ablate.train.validation import bits_per_byte, build_validation_set, target_bytes, validate
from tests.conftest import tiny_model

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p for p in (REPO / "checkpoints").glob("*-seed*") if p.is_dir())


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP workers
    # waiting on each other make a step ~20x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_train_config(out: Path, **overrides) -> TrainConfig:
    base = dict(
        mat_dim=4,
        n_layers=1,
        n_heads=2,
        n_iterations=2,
        max_len=32,
        seq_len=16,
        dropout=0.1,
        data="synthetic:n_items=40,max_depth=2",
        train_items=30,
        val_items=4,
        steps=6,
        warmup=2,
        batch_size=2,
        lr=1e-2,
        eval_every=3,
        save_every=1,
        log_every=1,
        device="cpu",
        out=str(out),
    )
    base.update(overrides)
    return TrainConfig(**base)


# -- schedule ---------------------------------------------------------------------------
def test_lr_multiplier_matches_hand_values_warmup_then_cosine():
    # warmup 4 of 12 steps: linear 0, .25, .5, .75, then 0.5(1 + cos(pi (s-4)/8)).
    expected = {
        0: 0.0,
        1: 0.25,
        2: 0.5,
        3: 0.75,
        4: 1.0,
        6: 0.5 * (1 + math.sqrt(0.5)),
        8: 0.5,
        10: 0.5 * (1 - math.sqrt(0.5)),
        12: 0.0,
    }
    for step, value in expected.items():
        assert lr_multiplier(step, 4, 12) == pytest.approx(value, abs=1e-12), step
    assert lr_multiplier(0, 0, 10) == 1.0  # no warmup: the first update has the peak LR


# -- data -------------------------------------------------------------------------------
def test_token_windows_follow_token_dataset_layout():
    # N = 23, S = 5: floor(23/5) - 1 = 3 windows; window i = stream[5i : 5i + 6].
    stream = torch.arange(23)
    windows = TokenWindows(stream, 5)
    assert len(windows) == 3
    x, y = windows.batch(np.array([2, 0]))
    assert x.tolist() == [list(range(10, 15)), list(range(0, 5))]
    assert y.tolist() == [list(range(11, 16)), list(range(1, 6))]


def test_batches_are_a_function_of_seed_and_step_and_cover_each_epoch_once():
    first_epoch = np.concatenate([batch_indices(10, 5, step, seed=3) for step in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert np.array_equal(batch_indices(10, 4, 7, 3), batch_indices(10, 4, 7, 3))
    # A batch that straddles epochs takes the tail of one permutation and the head of the next.
    straddle = batch_indices(10, 4, 2, seed=3)  # positions 8..11
    tail = np.random.default_rng([3, 0]).permutation(10)[8:]
    head = np.random.default_rng([3, 1]).permutation(10)[:2]
    assert straddle.tolist() == tail.tolist() + head.tolist()


def test_validation_windows_predict_every_token_but_the_first_exactly_once():
    stream = torch.arange(100, 112)  # 12 tokens -> 11 targets in windows of 4
    inputs, targets = validation_windows(stream, 4)
    real = targets != -100
    assert int(real.sum()) == 11
    assert targets[real].tolist() == list(range(101, 112))
    assert inputs[real].tolist() == list(range(100, 111))


# -- exact bits per byte ----------------------------------------------------------------
class PieceTokenizer:
    """A tiny multi-byte tokenizer (like BPE): fixed pieces, longest first, so tokens and
    bytes differ and bpb must come from the text."""

    pieces = ("\n\n", "é", "ab", "a", "b", "c", "\n", " ")

    vocab_size = len(pieces)
    eos_id = None

    def encode(self, text: str) -> list[int]:
        ids, position = [], 0
        while position < len(text):
            for index, piece in enumerate(self.pieces):
                if text.startswith(piece, position):
                    ids.append(index)
                    position += len(piece)
                    break
            else:
                raise ValueError(text[position])
        return ids

    def decode(self, ids) -> str:
        return "".join(self.pieces[int(i)] for i in ids)

    def n_bytes(self, text: str) -> int:
        return len(text.encode("utf-8"))


def test_bits_per_byte_hand_example():
    # 3 tokens at ln 4 nats each spell 4 bytes: 3 * 2 bits / 4 bytes = 1.5 bits per byte.
    assert bits_per_byte(3 * math.log(4), 4) == pytest.approx(1.5, abs=1e-12)


def test_target_bytes_counts_utf8_bytes_not_tokens():
    text = "\n\nabé\n\nc"  # bytes: 2 + 2 + 2 + 2 + 1 = 9; first token "\n\n" is never a target
    tokenizer = PieceTokenizer()
    stream = tokenizer.encode(text)
    assert len(stream) == 5
    assert target_bytes(tokenizer, text, stream) == 7
    byte_stream = ByteTokenizer().encode(text)
    assert target_bytes(ByteTokenizer(), text, byte_stream) == len(byte_stream) - 1 == 8


def test_validate_bpb_equals_independent_float64_computation():
    # Total nats from numpy float64 log-softmax over the same logits, / ln 2 / UTF-8 bytes.
    tokenizer = PieceTokenizer()
    val_text = "\n\nab é abc\n\nééa b\n\nc"
    corpus = Corpus("hand", "", val_text, "\n\n", (), None, 0, 3)
    data = build_validation_set(
        corpus,
        tokenizer,
        seq_len=4,
        max_len=32,
        train_stream=torch.tensor(tokenizer.encode("abcab")),
    )
    model = tiny_model(vocab_size=tokenizer.vocab_size)
    metrics = validate(model, data, n_iterations=2, batch_size=2)

    stream = np.array(tokenizer.encode(val_text))
    nats = 0.0
    for start in range(0, len(stream) - 1, 4):
        window = torch.tensor(stream[start : start + 4][None])
        targets = stream[start + 1 : start + 5]
        with torch.no_grad():
            logits = model(window, n_iterations=2).logits[0].double().numpy()
        logits = logits[: len(targets)]
        log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        nats += float(np.sum(log_z - logits[np.arange(len(targets)), targets]))
    n_bytes = len(val_text.encode("utf-8")) - 2
    assert metrics["n_tokens"] == len(stream) - 1 != n_bytes
    assert metrics["n_bytes"] == n_bytes
    assert metrics["bpb"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert len(metrics["rank_per_iter"]) == 3  # M(0), M(1), M(2)
    assert metrics["answer_accuracy"] is None  # text data has no answers


# -- optimisation -----------------------------------------------------------------------
def test_loss_decreases_on_a_fixed_batch():
    model = tiny_model(dropout=0.0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=BETAS)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    rows = torch.randint(0, 256, (2, 17), generator=torch.Generator().manual_seed(0))
    losses = [
        training_step(
            model, optimizer, scheduler, rows[:, :-1], rows[:, 1:], n_iterations=2, grad_clip=1.0
        )[0]
        for _ in range(8)
    ]
    assert losses[-1] < losses[0] - 0.1


def test_config_round_trips_through_json_and_rejects_unknown_keys(tmp_path):
    config = tiny_train_config(tmp_path / "run", specials=["<pad>"])
    assert TrainConfig.from_json(config.to_json()) == config
    assert all(
        isinstance(v, (str, int, float, list)) for v in json.loads(config.to_json()).values()
    )
    with pytest.raises(AblateError, match="unknown key"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1.0})
    with pytest.raises(AblateError, match="does not exist"):
        TrainConfig(data="text:/no/such/file.txt")
    with pytest.raises(AblateError, match="seq_len"):
        TrainConfig(seq_len=300, max_len=256)


# -- resume -----------------------------------------------------------------------------
def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    from ablate.checkpoint import load_checkpoint

    return load_checkpoint(out).model.state_dict()


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    straight = train(tiny_train_config(tmp_path / "straight"))

    class Interrupt(Exception):
        pass

    def stop_after_three(event):
        if event.step == 3 and event.event != "start":
            raise Interrupt

    interrupted = tiny_train_config(tmp_path / "interrupted")
    with pytest.raises(Interrupt):
        train(interrupted, progress=stop_after_three)
    assert (tmp_path / "interrupted" / STATE_FILE).exists()
    resumed = train(interrupted)
    assert resumed.resumed_from == 3
    assert not (tmp_path / "interrupted" / STATE_FILE).exists()  # removed once saved

    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "interrupted")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final["loss"] == straight.final["loss"]
    assert [e["lr"] for e in resumed.curve] == [e["lr"] for e in straight.curve]
    # The LR of update k (1-based) is lr * multiplier(k - 1).
    assert [e["lr"] for e in straight.curve] == pytest.approx(
        [1e-2 * lr_multiplier(k, 2, 6) for k in range(6)]
    )
    # Rerunning a finished command returns the saved result without training.
    again = train(interrupted)
    assert again.already_done and again.final["bpb"] == resumed.final["bpb"]


def test_resume_refuses_a_state_made_with_other_settings(tmp_path):
    def stop(event):
        if event.step == 1 and event.event != "start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tmp_path / "run"), progress=stop)
    with pytest.raises(AblateError, match="lr"):
        train(tiny_train_config(tmp_path / "run", lr=5e-3))


# -- bundled checkpoints ----------------------------------------------------------------
@pytest.mark.parametrize("directory", BUNDLED, ids=[p.name for p in BUNDLED])
def test_bundled_checkpoint_loads_runs_and_records_its_training(directory):
    from ablate.checkpoint import load_checkpoint

    loaded = load_checkpoint(directory)
    meta = loaded.info.metadata
    for key in ("command", "seed", "data", "steps", "metrics", "rank_trajectory", "git_hash"):
        assert key in meta, key
    training = meta["training"]
    for key in ("config", "evals", "training_curve", "seconds", "cpu_seconds"):
        assert key in training, key
    assert meta["command"].startswith("ablate train") and f"seed{meta['seed']}" in directory.name
    final = meta["metrics"]
    T = training["config"]["n_iterations"]
    assert len(meta["rank_trajectory"]) == T + 1 == len(final["rank_per_iter"])
    assert training["evals"][-1]["step"] == meta["steps"] == training["config"]["steps"]
    # Learned something: far below the unigram model, itself below uniform bytes (8 bits).
    assert final["bpb"] < final["unigram_bpb"] - 2 < 8.0
    assert final["answer_accuracy"] is not None and final["n_answer_items"] > 0
    # ... and answers above always giving the most common training answer.
    assert final["answer_accuracy"] > final["majority_answer_accuracy"]
    ids = torch.tensor([loaded.tokenizer.encode("Question: Ann has 3 pens.")])
    logits = loaded.model(ids, n_iterations=T).logits
    assert logits.shape == (1, ids.shape[1], loaded.model.config.vocab_size)
    assert torch.isfinite(logits).all()
    assert sum(f.stat().st_size for f in directory.iterdir()) < 1_000_000
