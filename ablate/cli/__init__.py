"""The ``ablate`` command line: the only place in the package that prints.

Each command group lives in its own module, which defines ``register(app)``; ``COMMANDS``
maps every command to its module. A command imports only its own module, and
``ablate --help`` imports none (they bring torch, pandas or matplotlib), so help and the
analysis commands start in well under a second. User errors (``AblateError``) print one
line and exit with code 2 (``--debug`` shows the traceback); an interrupted command exits
with code 130.

    $ ablate inspect checkpoints/multiprobe-seed0
    $ ablate train --codi --out checkpoints/my-codi     # = ablate codi train --out ...
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from ablate.errors import AblateError, Interrupted, shown

# command -> (module under ablate.cli whose register(app) defines it, its line in
# `ablate --help`). A module may define several commands; list each of them here.
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect_cmd", "Show a checkpoint: format, config, parameters, effective rank "
                               "per iteration."),
    "convert": ("inspect_cmd", "Convert a research checkpoint to the native format and verify "
                               "identical logits."),
    "validate": ("run_cmd", "Check experiment files, their checkpoints, tasks and "
                            "interventions without running."),
    "run": ("run_cmd", "Run an experiment's grid (or a matrix-CODI study) into a run "
                       "directory; rerun to resume."),
    "train": ("train_cmd", "Train Matrix Thinkers, one checkpoint per seed (--codi: "
                           "matrix-CODI)."),
    "stats": ("report_cmd", "Run the statistics on a run directory and print the claim tables."),
    "report": ("report_cmd", "Write a run's report: Markdown, self-contained HTML, figures, "
                             "JSON and CSV."),
    "codi": ("codi_cmd", "Matrix-CODI: train, evaluate, study and inspect latent-reasoning "
                         "models."),
}
# Options of the root callback; none takes a value, so the first other word is the command.
ROOT_OPTIONS = ("--debug", "--verbose", "-v", "--help")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _listed() -> None:  # pragma: no cover - a command found in COMMANDS loads its module
    """Stands for a command in `ablate --help`; never runs."""


def build_app(command: str | None) -> typer.Typer:
    """The typer app for one invocation: ``command``'s module registered, or (no or an
    unknown command) every command listed by its ``COMMANDS`` line, without importing any."""
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Causal rank ablations for Matrix Thinker models.",
                      pretty_exceptions_enable=False)
    app.callback()(_root)
    if command in COMMANDS:
        importlib.import_module(f"ablate.cli.{COMMANDS[command][0]}").register(app)
    else:
        for name, (_, summary) in COMMANDS.items():
            app.command(name, help=summary)(_listed)
    return app


def command_word(args: list[str]) -> str | None:
    """The command named in ``args`` (the first word that is not a root option)."""
    return next((word for word in args if word not in ROOT_OPTIONS), None)


def _click_error_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage/abort exceptions; typer >= 0.20 also raises its vendored copies."""
    import click

    usage: list[type] = [click.exceptions.ClickException]
    abort: list[type] = [click.exceptions.Abort]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        pass
    else:
        usage.append(vendored.ClickException)
        if hasattr(vendored, "Abort"):
            abort.append(vendored.Abort)
    return tuple(usage), tuple(abort)


def expand_aliases(args: list[str]) -> list[str]:
    """``ablate train --codi ...`` is ``ablate codi train ...`` (the CODI trainer's flags)."""
    for i, word in enumerate(args):
        if word.startswith("-"):
            continue  # root options such as --debug come before the command
        if word == "train" and "--codi" in args[i + 1:]:
            return [*args[:i], "codi", "train", *(w for w in args[i + 1:] if w != "--codi")]
        break
    return list(args)


def _interrupted(line: str) -> int:
    typer.secho(line, err=True)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = expand_aliases(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app = build_app(command_word(args))
        # Not standalone: typer returns the exit code of typer.Exit (130 for a Ctrl-C that
        # no command handled) instead of calling sys.exit, and lets our errors through.
        code = app(args=args, standalone_mode=False)
    except Interrupted as stop:
        return _interrupted(str(stop))
    except KeyboardInterrupt:
        return _interrupted("interrupted: finished results are kept; run the same command "
                            "to resume")
    except AblateError as err:
        if debug:
            raise
        # One line, always: a value quoted from a damaged file may hold a newline.
        typer.secho(f"error: {shown(str(err))}", err=True, fg=typer.colors.RED)
        return 2
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        return int(code or 0)
    except Exception as err:  # usage errors carry their own exit codes
        click_errors, abort_errors = _click_error_types()
        if isinstance(err, click_errors):
            err.show()
            return err.exit_code
        if isinstance(err, abort_errors):
            return 1
        raise
    if code == EXIT_INTERRUPTED:
        return _interrupted("interrupted: finished results are kept; run the same command "
                            "to resume")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
