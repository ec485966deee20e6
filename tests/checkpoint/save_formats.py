"""The reference cases (shared/reference, one per variant) saved every way research code
saves a checkpoint, for the tests that ask: does ``ablate`` rebuild the research model
from each, or refuse in one line naming what it needs?

``SAVE_FORMATS`` name the ways: plain state dicts with each kind of sidecar or with
flags, mid-training dicts (optimizer and scheduler state, an embedded config), DDP and
``torch.compile`` prefixes, bf16 and fp16 weights, and bare files that state nothing.
``write_format`` writes one; ``truth_model`` rebuilds what a file holds independently of
the loader under test (torch.load, the spec §8 unwrapping, the case's true config).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ablate.model import MatrixThinker, MatrixThinkerConfig
from tests.model.reference_cases import COPY

# The research experiment (results directory) of each variant (spec §7.4), and the
# attention class its script defines.
EXPERIMENTS = {"round2_frobenius_multiprobe": "round2_multiprobe",
               "round1_frobenius_collapse": "round1_matrix",
               "attn3d_multiprobe": "exp_3d_attn", "byte_frobenius_multiprobe": "exp_byte_d16"}
CLASSES = {"frobenius": "MatrixFrobeniusAttention", "matrix3d": "Matrix3DAttention"}


@dataclass(frozen=True)
class Case:
    """A reference case: its weights, true config and the research logits at T = 8."""

    name: str
    variant: str
    state: dict[str, torch.Tensor]
    config: MatrixThinkerConfig
    ids: torch.Tensor  # (2, 16)
    expected: torch.Tensor  # research logits at T = 8, (2, 16, V)

    @property
    def attention(self) -> str:
        return self.config.attention


@functools.cache
def load_case(name: str) -> Case:
    # The compact in-repo copy holds all this reads (tests/model/reference_cases.py), so
    # these tests run on a clean clone without ../shared.
    root = COPY / name
    raw = json.loads((root / "config.json").read_text())
    config = MatrixThinkerConfig.for_variant(
        raw["variant"], mat_dim=raw["mat_dim"], n_layers=raw["n_layers"],
        n_heads=raw["n_heads"], n_probes=raw.get("n_probes"), vocab_size=raw["vocab_size"],
        max_len=raw["max_len"])
    state = torch.load(root / "best.pt", weights_only=True)
    ids = torch.load(root / "inputs.pt", weights_only=True)["L16"]
    expected = torch.load(root / "expected.pt", weights_only=True)["L16"]["logits_T8"]
    return Case(name, raw["variant"], dict(state), config, ids, expected)


@dataclass(frozen=True)
class SaveFormat:
    """How a file is saved and where its facts (n_heads, attention) are stated.

    ``facts``: "config.json" (the reference sidecar), "results.json" (config block and
    experiment name), "script" (results.json gives n_heads, a copied script.py the
    attention class), "embedded" (a config dict in the file), "embedded+flag" (n_heads
    embedded, --attention given), "flags" (--n-heads and --attention), or "none".
    """

    name: str
    facts: str
    wrapper: str | None = None  # key holding the state dict; None = plain state dict
    prefix: str = ""
    dtype: torch.dtype | None = None
    config_key: str = "config"

    @property
    def states_facts(self) -> bool:
        return self.facts != "none"

    @property
    def embedded(self) -> bool:
        return self.facts.startswith("embedded") or self.wrapper is not None


SAVE_FORMATS = {f.name: f for f in (
    SaveFormat("reference", "config.json"),
    SaveFormat("flags", "flags"),
    SaveFormat("results_json", "results.json"),
    SaveFormat("script_py", "script"),
    SaveFormat("mid_training", "embedded", wrapper="model_state_dict"),
    SaveFormat("mid_training_research_config", "embedded+flag", wrapper="model_state_dict"),
    SaveFormat("ddp_wrapped", "config.json", wrapper="state_dict", prefix="module."),
    SaveFormat("compiled", "flags", prefix="_orig_mod."),
    SaveFormat("bf16", "config.json", dtype=torch.bfloat16),
    SaveFormat("fp16_cfg", "embedded", wrapper="model", dtype=torch.float16, config_key="cfg"),
    SaveFormat("bare", "none"),
    SaveFormat("bare_mid_training", "none", wrapper="model_state_dict"),
)}


def research_config(case: Case, *, facts: bool = True) -> dict[str, Any]:
    """A research CONFIG dict (spec §7.4 keys) for ``case``; ``facts`` adds n_heads."""
    config = case.config
    values: dict[str, Any] = {"mat_dim": config.mat_dim, "n_thinking_layers": config.n_layers,
                              "max_len": config.max_len, "vocab_size": config.vocab_size,
                              "n_iterations": 8, "dropout": 0.1, "lr": 3e-4, "batch_size": 8}
    if config.head == "multiprobe":
        values["n_probes"] = config.n_probes
    if facts:
        values["n_heads"] = config.n_heads
    return values


def write_format(folder: Path, case: Case, fmt: SaveFormat,
                 state: dict[str, torch.Tensor] | None = None,
                 drop: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
    """Save ``state`` (default: the case's weights) as ``fmt`` in ``folder``; returns the
    checkpoint path and the CLI flags the format passes. ``drop`` removes facts
    ("n_heads", "attention") from wherever the format states them."""
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(case.state if state is None else state)
    if fmt.dtype is not None:
        state = {k: v.to(fmt.dtype) if v.is_floating_point() else v for k, v in state.items()}
    state = {fmt.prefix + k: v for k, v in state.items()}
    config = case.config
    facts = {"n_heads": config.n_heads, "attention": config.attention}
    facts = {k: v for k, v in facts.items() if k not in drop}
    saved: Any = state
    if fmt.wrapper is not None:
        saved = {"step": 1000, fmt.wrapper: state, "optimizer_state_dict": _optimizer_state(
            case), "scheduler_state_dict": {"last_epoch": 1000, "_step_count": 1001}}
        if fmt.facts == "embedded":
            saved[fmt.config_key] = {**research_config(case, facts=False), **facts}
        elif fmt.facts == "embedded+flag":
            saved[fmt.config_key] = {**research_config(case, facts=False),
                                     **{k: v for k, v in facts.items() if k == "n_heads"}}
        else:
            saved[fmt.config_key] = research_config(case, facts=False)
    path = folder / "best.pt"
    torch.save(saved, path)
    flags: list[str] = []
    if fmt.facts == "config.json":
        raw = json.loads((COPY / case.name / "config.json").read_text())
        for fact in drop:  # the reference sidecar states each fact more than one way
            keys = {"n_heads": ("n_heads", "head_dim"),
                    "attention": ("attention", "variant", "research_script")}[fact]
            raw = {k: v for k, v in raw.items() if k not in keys}
        (folder / "config.json").write_text(json.dumps(raw))
    elif fmt.facts == "results.json":
        block = {**research_config(case, facts=False),
                 **{k: v for k, v in facts.items() if k == "n_heads"}}
        results = {"config": block, "params": 0, "final_evals": {}}
        if "attention" in facts:
            results["experiment"] = EXPERIMENTS[case.variant]
        (folder / "results.json").write_text(json.dumps(results))
    elif fmt.facts == "script":
        block = {**research_config(case, facts=False),
                 **{k: v for k, v in facts.items() if k == "n_heads"}}
        (folder / "results.json").write_text(json.dumps({"config": block}))
        if "attention" in facts:
            (folder / "script.py").write_text(
                f"class {CLASSES[config.attention]}(nn.Module):\n    pass\n")
    if fmt.facts in ("flags", "embedded+flag"):
        if "attention" in facts:
            flags += ["--attention", config.attention]
        if "n_heads" in facts and fmt.facts == "flags":
            flags += ["--n-heads", str(config.n_heads)]
    return path, flags


def _optimizer_state(case: Case) -> dict[str, Any]:
    """An AdamW state dict with moment buffers for every parameter, as after some steps."""
    params = [torch.nn.Parameter(v.clone()) for k, v in case.state.items()
              if not k.endswith("think.I")]
    return {"state": {i: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros_like(p),
                          "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params)},
            "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.98), "eps": 1e-8,
                              "weight_decay": 0.01, "params": list(range(len(params)))}]}


def truth_model(case: Case, path: Path, fmt: SaveFormat) -> MatrixThinker | None:
    """What the file at ``path`` holds, rebuilt with the case's true config without the
    loader under test: torch.load, the format's wrapper, prefixes stripped when every key
    has them (spec §8), a strict float32 load. None when that fails."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        state = obj[fmt.wrapper] if fmt.wrapper is not None else obj
        for prefix in ("module.", "_orig_mod."):
            if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        with torch.random.fork_rng(devices=[]):
            model = MatrixThinker(case.config).eval()
        model.load_state_dict(state, strict=True)
    except Exception:  # any failure means the file does not hold this model
        return None
    return model


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """The reference README's criterion: max|a - b| / max(1, max|b|)."""
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))
