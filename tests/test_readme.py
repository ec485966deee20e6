"""The README's first two commands are what a new user runs on a fresh machine, and what
CI runs: the first installs ablate and runs the quickstart, the second runs the whole test
suite and must find everything it needs installed by the two commands."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The lines of the README's first ```bash block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert block, "README.md has no ```bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def installed_requirements(commands: list[str], until: str) -> set[str]:
    """Distribution names the `pip install` steps before ``until`` bring in: this
    package's dependencies plus those of every extra named, and any other named package."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for command in commands:
        for step in command.split("&&"):
            words = shlex.split(step)
            if words[:1] == ["python"] and until in step:
                return names
            if words[:2] != ["pip", "install"]:
                continue
            for word in words[2:]:
                if word.startswith("-"):
                    continue
                local = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", word)
                if local is None:
                    names.add(re.split(r"[<>=\[]", word)[0].lower())
                    continue
                specs = list(project["dependencies"])
                for extra in filter(None, (local.group(1) or "").split(",")):
                    specs += project["optional-dependencies"][extra]
                names |= {re.split(r"[<>=\[; ]", spec)[0].lower() for spec in specs}
    raise AssertionError(f"no command runs {until!r}")


def test_readme_starts_with_the_two_commands_of_a_first_hour():
    first, second = readme_commands()  # exactly two
    assert first.startswith("pip install torch==")  # the CPU build first: no CUDA download
    assert "ablate run experiments/quickstart.toml" in first
    assert first.endswith("ablate report runs/quickstart")
    assert second.endswith("python -m pytest")


def test_the_two_commands_install_everything_the_test_suite_needs():
    # Invariant: run as written on a fresh machine, the second command finds pytest (and
    # Ray, whose executor tests are part of the suite) installed by the commands before it.
    needed = installed_requirements(readme_commands(), until="pytest")
    assert {"torch", "pytest", "ray"} <= needed, needed


def test_ci_runs_exactly_the_readme_commands():
    printed = subprocess.run([str(REPO / ".ci" / "run"), "--print"], check=True,
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert printed == readme_commands()
    script = (REPO / ".ci" / "run").read_text()
    assert "chromium" in script  # the browser test runs in CI
    assert '"$code" -eq 5' in script  # pytest collecting nothing fails CI
    # The commands written out in its header comment are the README's, too.
    header = [line[4:] for line in script.splitlines() if line.startswith("#   ")]
    assert header == readme_commands()
