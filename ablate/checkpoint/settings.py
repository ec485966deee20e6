"""The config of a research checkpoint: its shapes, plus the facts shapes cannot tell,
each with the place it came from (spec §3.6).

``FACTS`` change the function a checkpoint computes but leave no trace in its weights:
the attention type, ``n_heads``, and whether a rank-r token embedding is ``rank_r`` or
``bigram``. Each must be stated by a source (``ablate.checkpoint.sources``), and all
sources that state it must agree; otherwise loading stops with one line that names the
values, their sources and the flag to pass. Only with ``assume_defaults``
(``--assume-research-defaults``) are unstated facts filled in, from the research script
whose defaults the shapes match, and marked "assumed" wherever the config is shown.
``SETTINGS`` (the default T, dropout) leave the eval-mode function alone: the first
source that gives one wins, else ablate's default.

    >>> resolved = resolve(shapes, sources, Path("best.pt"), style="flags")  # doctest: +SKIP
    >>> resolved.settings["n_heads"].describe("n_heads")                      # doctest: +SKIP
    'n_heads = 8 (from results.json (config))'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ablate.checkpoint.research import Shapes
from ablate.checkpoint.sources import Source, name_suggests
from ablate.errors import AblateError
from ablate.model import VARIANTS, MatrixThinkerConfig

FACTS = ("n_heads", "attention", "embedding")
SETTINGS = ("n_iterations", "dropout")
SETTING_DEFAULTS = {"n_iterations": 8, "dropout": 0.1}  # research training T and dropout
# Keys a caller may override; "tokenizer" is a path used by the loader, not the config.
OVERRIDE_KEYS = ("attention", "n_heads", "variant", "embedding", "embedding_rank",
                 "n_iterations", "dropout", "tokenizer", "assume_research_defaults")
# How an error asks for a fact, by where the caller's overrides come from.
_ASK = {
    "flags": {"n_heads": "--n-heads H", "attention": "--attention frobenius|matrix3d",
              "embedding": "embedding = rank_r|bigram in a config.json next to it",
              "assume": "--assume-research-defaults"},
    "experiment": {"n_heads": "n_heads = H", "attention": 'attention = "frobenius"|"matrix3d"',
                   "embedding": 'embedding = "rank_r"|"bigram"',
                   "assume": "assume_research_defaults = true",
                   "where": " to its [[checkpoints]] overrides"},
    "overrides": {"n_heads": "n_heads=H", "attention": "attention='frobenius'|'matrix3d'",
                  "embedding": "embedding='rank_r'|'bigram'",
                  "assume": "assume_research_defaults=True", "where": " in overrides"},
}
_SHAPE_KEYS = ("mat_dim", "vocab_size", "max_len", "n_layers", "n_probes", "head")


@dataclass(frozen=True)
class Setting:
    """One value the weights do not give: its value, where it came from, and how:
    "stated" (a source gives it), "inferred" (from the shapes), "assumed" (a research
    default, only with ``--assume-research-defaults``), or "default" (ablate's default for
    a setting that does not change the function)."""

    value: Any
    source: str
    how: str

    def describe(self, name: str) -> str:
        """``n_heads = 8 (from results.json (config))``, for reports and notes."""
        where = {"stated": f"from {self.source}", "inferred": self.source,
                 "assumed": f"ASSUMED: {self.source}", "default": self.source}[self.how]
        return f"{name} = {self.value} ({where})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResearchDefault:
    """The defaults of the research script whose shapes a checkpoint has (spec §7.4)."""

    script: str
    attention: str
    n_heads: int


@dataclass
class Resolved:
    config: MatrixThinkerConfig
    settings: dict[str, Setting]
    notes: list[str] = field(default_factory=list)


def research_default(shapes: Shapes) -> ResearchDefault | None:
    """d = 32: rounds 1 and 2 (Frobenius, 8 heads); d = 16: the byte script with a
    256-byte vocabulary, else the 3D-attention script (both 4 heads); otherwise none."""
    if shapes.mat_dim == 32:
        script = "run_round1.py" if shapes.head == "collapse" else "run_round2.py"
        return ResearchDefault(script, "frobenius", 8)
    if shapes.mat_dim == 16 and shapes.head == "multiprobe":
        if shapes.vocab_size == 256:
            return ResearchDefault("run_byte_matrix.py", "frobenius", 4)
        return ResearchDefault("run_3d_attention.py", "matrix3d", 4)
    return None


def resolve(shapes: Shapes, sources: list[Source], checkpoint: Path, *, style: str = "overrides",
            assume_defaults: bool = False) -> Resolved:
    """The config for ``shapes`` from ``sources`` (strongest first), with a ``Setting`` per
    fact and setting. ``style`` ("flags" | "experiment" | "overrides") words the fixes."""
    name = str(checkpoint)
    for source in sources:
        check_against_shapes(source, shapes, name)
        _heads_from_head_dim(source, shapes.mat_dim, name)
        if "n_heads" in source.values:
            check_n_heads(Setting(source.values["n_heads"], source.where("n_heads"), "stated"),
                          shapes.mat_dim, name)
    settings: dict[str, Setting] = {}
    notes: list[str] = []
    for fact in ("n_heads", "attention"):
        found = agreed(fact, sources, name)
        if found is not None:
            settings[fact] = found
    embedding, rank = _embedding(shapes, sources, name, settings)
    missing = [fact for fact in FACTS if fact not in settings]
    if missing:
        if not assume_defaults:
            raise _missing_error(missing, sources, shapes, checkpoint, style)
        _assume(missing, shapes, checkpoint, style, settings)
        notes += [settings[fact].describe(fact) for fact in missing]
        embedding = settings["embedding"].value
    for key in SETTINGS:
        settings[key] = first_given(key, sources)
    settings = {key: settings[key] for key in (*FACTS, *SETTINGS)}
    try:
        config = MatrixThinkerConfig(
            mat_dim=shapes.mat_dim, n_layers=shapes.n_layers, n_heads=settings["n_heads"].value,
            n_probes=shapes.n_probes, vocab_size=shapes.vocab_size, max_len=shapes.max_len,
            head=shapes.head, embedding=embedding, embedding_rank=rank,
            attention=settings["attention"].value, n_iterations=settings["n_iterations"].value,
            dropout=settings["dropout"].value,
        )
    except AblateError as err:
        raise AblateError(f"{name}: {err}") from err
    return Resolved(config, settings, notes)


def agreed(fact: str, sources: list[Source], checkpoint: str) -> Setting | None:
    """The value every source that states ``fact`` gives (the strongest names the source),
    None when none does; disagreement is an error naming both values and places."""
    stating = [s for s in sources if fact in s.values]
    if not stating:
        return None
    first = stating[0]
    for other in stating[1:]:
        if other.values[fact] != first.values[fact]:
            flag = first.kind in ("flags", "overrides")
            fix = (f"drop {first.where(fact)}, or fix {other.where(fact)} if it is wrong"
                   if flag else "fix the one that is wrong (a flag cannot outvote a file)")
            raise AblateError(
                f"{checkpoint}: {fact} is {first.values[fact]} by {first.where(fact)} but "
                f"{other.values[fact]} by {other.where(fact)}; {fix}"
            )
    return Setting(first.values[fact], first.where(fact), "stated")


def first_given(key: str, sources: list[Source]) -> Setting:
    """A setting that does not change the function: the first source's, else the default."""
    source = next((s for s in sources if s.values.get(key) is not None), None)
    if source is None:
        return Setting(SETTING_DEFAULTS[key], "ablate default", "default")
    return Setting(source.values[key], source.where(key), "stated")


def check_n_heads(setting: Setting, d: int, checkpoint: str) -> None:
    n_heads = setting.value
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1 or d % n_heads:
        divisors = ", ".join(str(h) for h in range(1, d + 1) if d % h == 0)
        raise AblateError(f"{checkpoint}: n_heads={n_heads} from {setting.source} is not a "
                          f"divisor of d={d}; use one of {divisors}")


def check_against_shapes(source: Source, shapes: Shapes, checkpoint: str) -> None:
    """Every shape value a source states must be what the weights have."""
    for key in _SHAPE_KEYS:
        if key not in source.values:
            continue
        stated = source.values[key]
        actual = getattr(shapes, key)
        if key == "n_probes":
            if shapes.head == "collapse":
                continue  # the collapse head has no probes; round-1 configs may still list K
            stated = stated or shapes.mat_dim
        if stated != actual:
            raise AblateError(
                f"{source.where(key)} states {key}={stated} but {checkpoint} has "
                f"{shapes.describe(key)}; it describes another checkpoint: correct {key} in "
                f"{source.name} or pass the checkpoint it belongs to"
            )


def _heads_from_head_dim(source: Source, d: int, checkpoint: str) -> None:
    """A source's head_dim states n_heads = d / head_dim; both must agree with d."""
    head_dim = source.values.pop("head_dim", None)
    if head_dim is None:
        return
    n_heads = source.values.get("n_heads")
    fits = head_dim >= 1 and d % head_dim == 0 and (n_heads is None or n_heads * head_dim == d)
    if not fits:
        if source.kind == "embedded":  # a later script's head_dim may mean something else
            source.unreadable["head_dim"] = head_dim
            return
        raise AblateError(f"{source.where('head_dim')} states head_dim={head_dim}"
                          + (f" and n_heads={n_heads}" if n_heads is not None else "")
                          + f" but {checkpoint} has d={d}; correct it there")
    source.values.setdefault("n_heads", d // head_dim)


def _embedding(shapes: Shapes, sources: list[Source], checkpoint: str,
               settings: dict[str, Setting]) -> tuple[str, int]:
    """The embedding kind and rank that fit embed_u's width and embed_pair's presence;
    rank_r and bigram have the same shapes, so one of them must be stated."""
    d, width = shapes.mat_dim, shapes.embedding_width
    r = width // d
    stated = agreed("embedding", sources, checkpoint)
    layout = (f"embed_u width {width} (d={d}) and "
              f"{'an' if shapes.has_pair else 'no'} embed_pair")
    if shapes.has_pair or r == 1:
        kind = "pairwise" if shapes.has_pair else "outer"
        if r != 1 and shapes.has_pair:
            raise AblateError(f"{checkpoint}: {layout} fit no embedding kind; the file is "
                              "inconsistent")
        if stated is not None and stated.value != kind:
            raise AblateError(f"{stated.source} states embedding={stated.value} but "
                              f"{checkpoint} has {layout}; correct the embedding setting or "
                              "pass the checkpoint it belongs to")
        settings["embedding"] = Setting(kind, "inferred from the weights' shapes", "inferred")
    elif stated is not None:
        if stated.value not in ("rank_r", "bigram"):
            raise AblateError(f"{stated.source} states embedding={stated.value} but "
                              f"{checkpoint} has {layout}; correct the embedding setting or "
                              "pass the checkpoint it belongs to")
        settings["embedding"] = stated
    rank = next((s for s in sources if "embedding_rank" in s.values), None)
    if rank is not None and r > 1 and rank.values["embedding_rank"] != r:
        raise AblateError(
            f"{rank.where('embedding_rank')} states embedding_rank="
            f"{rank.values['embedding_rank']} but {checkpoint} has embed_u width {width} = "
            f"{r}·d; set embedding_rank={r}"
        )
    return (settings["embedding"].value if "embedding" in settings else "rank_r"), r


def _assume(missing: list[str], shapes: Shapes, checkpoint: Path, style: str,
            settings: dict[str, Setting]) -> None:
    default = research_default(shapes)
    if default is None and {"attention", "n_heads"} & set(missing):
        ask = _ASK[style]
        wanted = " and ".join(ask[f] for f in missing if f != "embedding")
        raise AblateError(
            f"{checkpoint}: no research script has defaults for d={shapes.mat_dim} with a "
            f"{shapes.head} head, so there is nothing to assume; pass {wanted}"
            f"{ask.get('where', '')}"
        )
    for fact in missing:
        if fact == "embedding":
            settings[fact] = Setting("rank_r", "ablate's rank-r embedding (bigram has the "
                                     "same shapes)", "assumed")
        else:
            assert default is not None
            settings[fact] = Setting(getattr(default, fact), f"research default of "
                                     f"{default.script} at d={shapes.mat_dim}", "assumed")


def _missing_error(missing: list[str], sources: list[Source], shapes: Shapes,
                   checkpoint: Path, style: str) -> AblateError:
    ask = _ASK[style]
    facts = " and ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    wanted = " and ".join(ask[f] for f in missing)
    default = research_default(shapes)
    alternative = ""
    if default is not None or missing == ["embedding"]:
        values = [f"{default.n_heads} heads" if default and "n_heads" in missing else "",
                  f"{default.attention} attention" if default and "attention" in missing
                  else "", "a rank_r embedding" if "embedding" in missing else ""]
        origin = f"{default.script}'s " if default else ""
        alternative = (f", or {ask['assume']} to assume {origin}"
                       f"{', '.join(v for v in values if v)}")
    unread = [f"{s.name} has {k}={v!r}" for s in sources for k, v in s.unreadable.items()
              if k in missing]
    suggestion = (" (the directory name suggests matrix3d)"
                  if "attention" in missing and name_suggests(checkpoint) else "")
    extra = f" ({'; '.join(unread)}, which ablate cannot read)" if unread else ""
    return AblateError(
        f"{checkpoint}: {facts} {verb} not in the weights and nothing states "
        f"{'it' if len(missing) == 1 else 'them'}{extra}; pass {wanted}"
        f"{ask.get('where', '')}{suggestion}{alternative}"
    )


def named_variant(config: MatrixThinkerConfig, sources: list[Source]) -> str:
    """The variant name a source gives, if it still fits the final config's attention and
    head, else the name the config itself implies."""
    for source in sources:
        if source.variant and VARIANTS[source.variant] == (config.attention, config.head):
            return source.variant
    return config.variant


def settings_dict(settings: Mapping[str, Setting]) -> dict[str, dict[str, Any]]:
    """JSON-ready settings: {name: {"value", "source", "how"}}."""
    return {name: setting.to_dict() for name, setting in settings.items()}
