"""CLI options generated from config dataclasses, so a flag cannot drift from its field.

``config_options(TrainConfig)`` gives a command one option per field declared with
``ablate.config.arg``: the flag is ``--field-name`` unless the field names another (and
its aliases), the help is the field's, the default the dataclass's, grouped in help
panels by argument group. The command receives ``given``: the fields whose flags were
typed on the command line, so a config file (``--config``) or the dataclass default
decides the rest. A dict field (task options) is a repeatable ``KEY=VALUE`` flag that
updates the field's value.

    @app.command("train")
    @config_options(TrainConfig, skip=("seed",))
    def train_command(ctx: typer.Context, given: dict, variant: str = typer.Option(...)): ...
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer

from ablate.config import (
    field_flags,
    field_hints,
    from_table,
    hint_parts,
    migrate_keys,
    read_toml,
)
from ablate.errors import AblateError


def option_fields(cls: type, skip: Sequence[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are CLI options (declared with ``arg``, ``cli`` on)."""
    return [spec for spec in dataclasses.fields(cls)
            if spec.metadata.get("cli") and spec.name not in skip]


def _panel(cls: type, spec: dataclasses.Field) -> str:
    """The help panel of a field: its own, else the PANEL of the class declaring it."""
    if spec.metadata.get("panel"):
        return spec.metadata["panel"]
    owners = [klass for klass in reversed(cls.__mro__)
              if spec.name in vars(klass).get("__annotations__", {})]
    return getattr(owners[0], "PANEL", "Options")


def _parameter(cls: type, spec: dataclasses.Field) -> inspect.Parameter:
    kind, _ = hint_parts(field_hints(cls)[spec.name])
    flags = field_flags(spec)
    help_text = spec.metadata["help"]
    panel = _panel(cls, spec)
    if typing.get_origin(kind) is dict:
        option = typer.Option(None, *flags, help=help_text, rich_help_panel=panel,
                              metavar="KEY=VALUE")
        return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=option, annotation=list[str] | None)
    if spec.default is dataclasses.MISSING:
        raise AssertionError(f"{cls.__name__}.{spec.name}: a CLI option needs a plain default")
    assert kind is not bool, f"{spec.name}: give boolean fields a --x/--no-x flag first"
    option = typer.Option(spec.default, *flags, help=help_text, rich_help_panel=panel)
    annotation = kind if spec.default is not None else kind | None
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def key_values(values: Sequence[str], flag: str) -> dict[str, Any]:
    """["max_depth=3", "name=x"] -> {"max_depth": 3, "name": "x"} (values parsed as JSON
    when they parse, else kept as strings)."""
    parsed: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise AblateError(f"{flag} {value!r} is not key=value; write e.g. {flag} max_depth=3")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def typed_on_command_line(ctx: typer.Context, name: str) -> bool:
    # Typer bundles its own click, so compare the parameter source by name.
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


def config_options(cls: type, *, skip: Sequence[str] = ()) -> Callable[[Callable], Callable]:
    """Decorate a typer command taking ``(ctx, given, ...)`` with one option per field
    of ``cls`` (see the module docstring); its own options follow them."""
    specs = option_fields(cls, skip)
    generated = [_parameter(cls, spec) for spec in specs]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "given"]
        assert "given" in signature.parameters and own[0].name == "ctx", command.__name__
        clash = {p.name for p in own} & {p.name for p in generated}
        assert not clash, f"{command.__name__}: options {clash} are also fields"
        # Generated options first, so each help panel opens with the dataclass's fields.
        parameters = [own[0], *generated, *[p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                            for p in own[1:]]]

        @functools.wraps(command)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for spec in specs:
                value = kwargs.pop(spec.name)
                if typed_on_command_line(ctx, spec.name):
                    given[spec.name] = (key_values(value, field_flags(spec)[0])
                                        if isinstance(value, list) else value)
            return command(ctx, given=given, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def config_from_command_line(cls: type, given: Mapping[str, Any], config_file: str | None,
                             notices: list[str]) -> Any:
    """A ``cls`` from a TOML ``config_file`` (optional), overridden by the flags
    ``given``; dict flags update the value the file or the default gives. Old key names
    in the file are read under their new ones, with a line in ``notices``."""
    values: dict[str, Any] = {}
    if config_file:
        values = migrate_keys(cls, read_toml(config_file, f"{cls.WHAT} file"), config_file,
                              notices)
    updates = {k: v for k, v in given.items() if isinstance(v, dict)}
    values.update({k: v for k, v in given.items() if not isinstance(v, dict)})
    if updates:
        base = from_table(cls, values, config_file)
        values.update({k: {**(getattr(base, k) or {}), **v} for k, v in updates.items()})
    return from_table(cls, values, config_file)


def command_line(ctx: typer.Context, words: Sequence[str]) -> list[str]:
    """The command as typed when this process is the CLI; called from Python (``main``
    with an argument list), ``words`` and the flags that were given, rebuilt in
    declaration order."""
    program = sys.argv[0].replace("\\", "/") if sys.argv else ""
    if os.path.basename(program) == "ablate":
        return ["ablate", *sys.argv[1:]]
    if program.endswith("ablate/cli/__main__.py"):
        return ["python", "-m", "ablate.cli", *sys.argv[1:]]
    typed = list(words)
    for param in ctx.command.params:
        if not typed_on_command_line(ctx, param.name):
            continue
        value = ctx.params[param.name]
        if isinstance(value, bool) and param.secondary_opts:
            typed.append(param.opts[0] if value else param.secondary_opts[0])
        elif isinstance(value, bool):
            typed.append(param.opts[0])
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                typed += [param.opts[0], str(item)]
    return typed
