"""The config core: one strict reader for TOML files and tables, one config hash, one
device resolver, and dataclass fields that carry their own checks, help and CLI flag.

Every config in ablate is read here. Hand-parsed tables (experiment and study files) go
through ``Table``: unknown keys are errors with a did-you-mean hint, every value is
type-checked, every error names the file and the table. Dataclass configs (training,
CODI settings) derive from ``ConfigBase``: their fields, declared with ``arg``, state
type, bounds and allowed values once, checked on construction; ``from_table`` reads
them from a mapping (unknown keys rejected, renamed keys migrated). No torch at import
(``ablate validate --no-checkpoints`` uses this module); ``resolve_device`` loads it.

    >>> table = Table({"n_boot": 100}, "[stats]", "exp.toml", ("n_boot", "level"))
    >>> table.get("n_boot", int, 2000, min_value=1)
    100
    >>> config_hash({"b": 1, "a": "x"})[:12]
    'cdab067e9f3b'
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ablate.errors import AblateError, unknown_keys_error, unknown_name_error

# How a task is evaluated: next-token scoring of the gold answer, or greedy generation.
MODES = ("teacher_forced", "generative")


# ---------------------------------------------------------------------------------------
# Reading tables.

class Table:
    """Typed access to one table of a config. ``where`` names the table in errors
    ("[stats]", "[[tasks]] #2"; "" for the top level), ``source`` the file."""

    def __init__(self, data: Any, where: str, source: str, allowed: Sequence[str]) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            raise AblateError(f"{self._prefix()}must be a table, got {type(data).__name__}")
        unknown = [key for key in data if key not in allowed]
        if unknown:
            raise unknown_keys_error(self._prefix().rstrip(": "), unknown, allowed)
        self.data: Mapping[str, Any] = data

    def _prefix(self) -> str:
        return f"{self.source}: {self.where}: " if self.where else f"{self.source}: "

    def fail(self, key: str, message: str) -> AblateError:
        """The error for a bad ``key``: "SOURCE: WHERE: 'key' MESSAGE"."""
        return AblateError(f"{self._prefix()}'{key}' {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...,
            *, min_value: float | None = None) -> Any:
        """The value of ``key``, checked to be ``kind`` (and >= ``min_value``); missing
        keys give ``default``, or an error when there is none."""
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int subclass in Python, but `k = true` is never meant as a number.
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be {names}, got {value!r}")
        if min_value is not None and value < min_value:
            raise self.fail(key, f"must be >= {min_value}, got {value!r}")
        return value

    def int_list(self, key: str, default: Any = ..., *, min_value: int = 0) -> tuple[int, ...]:
        """A non-empty list of distinct integers >= ``min_value``."""
        values = self.get(key, list, default)
        if not values:
            raise self.fail(key, "must be a non-empty list of integers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < min_value:
                raise self.fail(key, f"must hold integers >= {min_value}, got {v!r}")
        if len(set(values)) != len(values):
            raise self.fail(key, f"has repeated values {values}; list each once")
        return tuple(values)


def read_toml(path: str | Path, what: str, hint: str = "") -> dict[str, Any]:
    """The parsed TOML file at ``path``; ``what`` names it in the one-line errors
    ("experiment file"), ``hint`` says where to find a good one."""
    file = Path(path)
    if not file.is_file():
        raise AblateError(f"{what} {file} not found{'; ' + hint if hint else ''}")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise AblateError(f"{file}: not valid TOML ({err}); fix the syntax") from err


def read_json_object(path: str | Path, fix: str = "fix or remove the file") -> dict[str, Any]:
    """The JSON object in the file at ``path``; ``fix`` ends the one-line error that a file
    of invalid JSON, or of JSON that is not an object, gets."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AblateError(f"{file}: not valid JSON ({err}); {fix}") from err
    if not isinstance(data, dict):
        raise AblateError(f"{file}: expected a JSON object, got {type(data).__name__}; {fix}")
    return data


def config_hash(data: Mapping[str, Any], exclude: Iterable[str] = (), *,
                spaced: bool = False) -> str:
    """sha256 (hex) of the canonical JSON of ``data`` without the keys in ``exclude``:
    sorted keys, separators (",", ":"), UTF-8. ``spaced=True`` hashes ``json.dumps``'s
    default form instead (", ", ": ", ASCII escapes), the one CODI study files were
    first hashed with, so their run directories keep their config hash."""
    skipped = set(exclude)
    content = {key: value for key, value in data.items() if key not in skipped}
    if spaced:
        text = json.dumps(content, sort_keys=True)
    else:
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------
# Devices: one spelling check (no torch) and one resolver.

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """``name`` if it spells a device ablate can run on (``DEVICES``), else a one-line
    error; imports nothing, so structural checks stay fast."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise AblateError(f"device {name!r} is not a torch device ablate runs on (one of "
                          f"{', '.join(DEVICES)}); use 'cpu', 'cuda' (or 'cuda:0', ...) or "
                          "'auto' (CUDA when present, else CPU)")
    return name


def resolve_device(name: Any) -> Any:
    """The ``torch.device`` for a device name: "auto" is CUDA when present, else the CPU;
    a CUDA or MPS device must exist here. A ``torch.device`` passes through the same
    checks. Errors name the value and the fix."""
    import torch

    text = check_device_name(str(name))
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AblateError(f"device {text!r} asked for, but CUDA is not available here; "
                              "use device 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AblateError(f"device {text!r} asked for, but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s); use 'cuda:0' or "
                              "'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AblateError(f"device {text!r} asked for, but MPS is not available here; use "
                          "device 'cpu' or 'auto'")
    return device


# ---------------------------------------------------------------------------------------
# Dataclass configs whose fields carry their checks, help text and CLI flag.

def arg(default: Any = dataclasses.MISSING, *, help: str,
        flag: str | None = None, aliases: Sequence[str] = (), min_value: float | None = None,
        choices: Sequence[str] | Callable[[], Sequence[str]] | None = None, cli: bool = True,
        panel: str | None = None,
        default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field of a ``ConfigBase``: ``help`` is its description (and CLI help),
    ``flag`` its CLI option when not ``--field-name``, ``aliases`` older flags that still
    work, ``min_value``/``choices`` its checks, ``cli=False`` keeps it off the command
    line (config files only), ``panel`` its help section (default: the class's PANEL).
    ``choices`` may be a function returning them, for names defined in a module that is
    slow to import: it runs on the first check, never when flags are built."""
    if choices is not None and not callable(choices):
        choices = tuple(choices)
    metadata = {"help": help, "flag": flag, "aliases": tuple(aliases), "min": min_value,
                "choices": choices, "cli": cli, "panel": panel}
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata=metadata)


def names_in(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """``choices`` read from ``module.name`` on the first check (for modules that load
    torch or transformers): ``arg(..., choices=names_in("ablate.model.config", "HEADS"))``."""

    def names() -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(module), name))

    return names


def default(value: Any = dataclasses.MISSING, *,
            factory: Any = dataclasses.MISSING) -> Any:
    """Redeclare an inherited ``arg`` field with another default (its help, checks and
    flag stay those of the base class): ``n_iterations: int = default(1)``."""
    return dataclasses.field(default=value, default_factory=factory,
                             metadata={"inherit": True})


class ConfigBase:
    """Base of frozen dataclass configs whose fields are declared with ``arg``.

    On construction every field is checked against its type hint (int, float, str, bool,
    lists, dicts, ``X | None``; ints are accepted and stored as floats for float fields),
    its ``min_value`` and ``choices``; then ``validate`` runs the checks that involve
    several fields (subclasses extend it and call ``super().validate()``). ``WHAT``
    names the config in errors; ``RENAMED`` maps old keys to new ones for
    ``from_table``; ``VERSION``, when set, is the only accepted ``version``.
    """

    WHAT: ClassVar[str] = "config"
    PANEL: ClassVar[str] = "Options"
    RENAMED: ClassVar[dict[str, str]] = {}
    VERSION: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if isinstance(value, dataclasses.Field) and value.metadata.get("inherit"):
                base = next((klass.__dataclass_fields__[name] for klass in cls.__mro__[1:]
                             if name in getattr(klass, "__dataclass_fields__", {})), None)
                assert base is not None, f"{cls.__name__}.{name}: no base field to redefault"
                setattr(cls, name, dataclasses.field(
                    default=value.default, default_factory=value.default_factory,
                    metadata=base.metadata))

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _checked(spec, getattr(self, spec.name), field_hints(type(self))[spec.name])
            object.__setattr__(self, spec.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; the single-field checks already ran."""
        version = getattr(self, "version", None)
        if self.VERSION is not None and version != self.VERSION:
            raise AblateError(f"{self.WHAT} version {version!r} is not supported (expected "
                              f"{self.VERSION}); rewrite it with this version of ablate")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON/TOML-ready data (None values dropped: TOML has no null)."""
        return {k: v for k, v in dataclasses.asdict(self).items()  # type: ignore[call-overload]
                if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None, *,
                  notices: list[str] | None = None) -> Any:
        """``from_table`` for this class."""
        return from_table(cls, data, source, notices=notices)

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def from_table(cls: type, data: Mapping[str, Any], source: str | None = None, *,
               notices: list[str] | None = None) -> Any:
    """A ``cls`` (a ``ConfigBase`` dataclass) from a mapping. Unknown keys are errors
    (did-you-mean); keys in ``cls.RENAMED`` are read under their new name, and, when
    ``notices`` is a list (the keys came from a file a user wrote), a one-line notice
    per renamed key is appended for the CLI to print. Errors start with ``source``."""
    where = source or cls.WHAT
    if not isinstance(data, Mapping):
        raise AblateError(f"{where}: expected a table of {cls.WHAT} keys, got "
                          f"{type(data).__name__}")
    values = migrate_keys(cls, data, where, notices)
    allowed = [spec.name for spec in dataclasses.fields(cls)]
    unknown = [key for key in values if key not in allowed]
    if unknown:
        raise unknown_keys_error(where, unknown, allowed)
    try:
        return cls(**values)
    except AblateError as err:
        if source is None:
            raise
        raise AblateError(f"{source}: {err}") from None


def migrate_keys(cls: type, data: Mapping[str, Any], where: str,
                 notices: list[str] | None = None) -> dict[str, Any]:
    """``data`` with the old keys of ``cls.RENAMED`` under their new names; a one-line
    notice per renamed key goes to ``notices`` when it is a list."""
    values = dict(data)
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old not in values:
            continue
        if new in values:
            raise AblateError(f"{where}: both '{old}' and '{new}' are set, and '{old}' is the "
                              f"old name of '{new}'; keep '{new}' only")
        values[new] = values.pop(old)
        if notices is not None:
            notices.append(f"{where}: '{old}' is now called '{new}'; rename it there")
    return values


def field_flags(spec: dataclasses.Field) -> tuple[str, ...]:
    """The CLI flags of a field: its own (``--field-name`` unless ``arg(flag=...)``),
    then its aliases."""
    own = spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")
    return (own, *spec.metadata.get("aliases", ()))


@cache
def field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint (string annotations evaluated once per class)."""
    return typing.get_type_hints(cls)


def hint_parts(hint: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed) of a type hint."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(members) == 1, f"config fields hold one type or None, not {hint!r}"
        return members[0], len(members) < len(typing.get_args(hint))
    return hint, False


def _checked(spec: dataclasses.Field, value: Any, hint: Any) -> Any:
    """``value`` checked against the field's type hint, bounds and choices (ints become
    floats for float fields, tuples lists for list fields); errors name the field."""
    kind, optional = hint_parts(hint)
    if value is None and optional:
        return None
    value = _typed(spec.name, value, kind)
    low, choices = spec.metadata.get("min"), spec.metadata.get("choices")
    if callable(choices):
        choices = tuple(choices())
    if low is not None and value < low:
        raise AblateError(f"{spec.name}={value!r} must be >= {low}")
    if choices is not None and value not in choices:
        raise unknown_name_error(spec.name, str(value), choices)
    return value


def _typed(name: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if kind is Any:
        return value
    if origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise AblateError(f"{name}={value!r} must be a number")
    if origin in (int, str, bool):
        if isinstance(value, origin) and not (origin is int and isinstance(value, bool)):
            return value
        noun = {int: "an integer", str: "a string", bool: "true or false"}[origin]
        raise AblateError(f"{name}={value!r} must be {noun}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise AblateError(f"{name}={value!r} must be a list")
        (item,) = typing.get_args(kind) or (Any,)
        return [_typed(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise AblateError(f"{name}={value!r} must be a table of key = value")
        return dict(value)
    raise AssertionError(f"{name}: unsupported config type {kind!r}")
