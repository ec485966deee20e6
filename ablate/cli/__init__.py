"""The ``ablate`` command line: the only place in the package that prints.

Each command group lives in its own module, which defines ``register(app)``. User errors
(``AblateError``) print one line and exit with code 2; ``--debug`` shows the traceback.

    $ ablate inspect checkpoints/multiprobe-seed0
    $ ablate train --codi --out checkpoints/my-codi     # = ablate codi train --out ...
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from ablate.errors import AblateError, shown

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Causal rank ablations for Matrix Thinker models.",
    pretty_exceptions_enable=False,
)

# Command modules, each with register(app). Add a module here when it exists.
COMMAND_MODULES: tuple[str, ...] = ("inspect_cmd", "run_cmd", "train_cmd", "codi_cmd", "report_cmd")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


_registered: set[str] = set()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        if name not in _registered:
            importlib.import_module(f"ablate.cli.{name}").register(app)
            _registered.add(name)


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = expand_aliases(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _register_all()
    try:
        app(args=args, standalone_mode=False)
    except AblateError as err:
        if debug:
            raise
        # One line, always: a value quoted from a damaged file may hold a newline.
        typer.secho(f"error: {shown(str(err))}", err=True, fg=typer.colors.RED)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted: finished results are kept; run the same command to resume",
                    err=True)
        return 130
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
