"""Start-up of the command line: help and the analysis commands never import torch or
transformers (they cost seconds to import), and ``ablate --help`` lists every command
without importing any command module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer
from rich.text import Text

from ablate.cli import COMMANDS, build_app
from tests.report.conftest import write_run

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

# Runs each command line in one fresh interpreter and reports, after each, whether a heavy
# module is loaded (a subprocess: this test process has torch loaded already).
PROBE = """
import json, sys
from ablate.cli import main
HEAVY = {heavy!r}
steps = []
for args in json.loads(sys.argv[1]):
    code = main(args)
    steps.append({{"args": args, "code": code,
                   "loaded": [name for name in HEAVY if name in sys.modules]}})
print("PROBE" + json.dumps(steps))
"""


def probe(commands: list[list[str]], cwd: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY),
                           json.dumps(commands)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    marker = [line for line in done.stdout.splitlines() if line.startswith("PROBE")]
    assert marker, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(marker[-1][len("PROBE"):])


def test_help_validate_stats_and_report_never_import_torch_or_transformers(tmp_path):
    run_dir = write_run(tmp_path / "runs" / "tiny", heads=("multiprobe",), seeds=(0, 1),
                        n_items=8, ks=(1, 2), n_draws=1)
    steps = probe([
        ["--help"],
        ["run", "--help"], ["validate", "--help"], ["stats", "--help"], ["report", "--help"],
        # The training flags come from the config dataclasses, which load no torch.
        ["train", "--help"], ["codi", "--help"], ["codi", "train", "--help"],
        ["validate", str(REPO / "experiments" / "quickstart.toml"),
         str(REPO / "experiments" / "codi_rank_dynamics.toml"), "--no-checkpoints"],
        ["stats", str(run_dir)],
        ["report", str(run_dir), "--out", str(tmp_path / "report")],
    ], cwd=tmp_path)
    assert [step["code"] for step in steps] == [0] * len(steps), steps
    assert all(step["loaded"] == [] for step in steps), steps


def test_help_lists_every_command_of_every_module():
    # COMMANDS is what `ablate --help` shows without importing the modules; it must name
    # exactly the commands the modules register, each with a one-line summary.
    registered: dict[str, str] = {}
    for module in sorted({module for module, _ in COMMANDS.values()}):
        app = typer.Typer()
        __import__(f"ablate.cli.{module}", fromlist=["register"]).register(app)
        names = [info.name for info in app.registered_commands]
        names += [info.name for info in app.registered_groups]
        registered.update(dict.fromkeys(names, module))
    assert registered == {name: module for name, (module, _) in COMMANDS.items()}
    assert all(summary and "\n" not in summary for _, summary in COMMANDS.values())


def test_help_shows_every_command_and_bracketed_defaults(capsys):
    from ablate.cli import main

    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    # Rich markup would swallow an unescaped "[default: ...]"; the run directory default
    # must be readable.
    assert main(["run", "--help"]) == 0
    assert "runs/<name>" in capsys.readouterr().out
    assert main(["report", "--help"]) == 0
    assert "reports/<run directory name>" in " ".join(capsys.readouterr().out.split())


def test_no_option_help_loses_a_bracketed_text():
    # Invariant: rich markup (typer renders help with it) shows every help text whole:
    # nothing in brackets is taken for a style tag and dropped.
    for name in COMMANDS:
        command = typer.main.get_command(build_app(name))
        for sub in _commands(command):
            for param in sub.params:
                text = getattr(param, "help", None) or ""
                shown = Text.from_markup(text).plain
                assert shown == text.replace("\\[", "["), f"{sub.name} {param.name}: {text!r}"


def _commands(command):
    children = getattr(command, "commands", None)
    if not children:
        return [command]
    return [leaf for child in children.values() for leaf in _commands(child)]


def test_run_help_names_every_executor():
    # The help is written out (importing the executors would load pandas for --help).
    from ablate.cli.run_cmd import EXECUTOR_HELP
    from ablate.executors import EXECUTORS

    assert all(name in EXECUTOR_HELP for name in EXECUTORS)
