"""Which checkout produced a file: the git state of the installed ``ablate`` package.

Torch-free, so that reading a run directory stays light.

    >>> commit, dirty = git_state()  # ("unknown", None) outside a checkout  # doctest: +SKIP
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import ablate


def git_state() -> tuple[str, bool | None]:
    """(HEAD hash, dirty) of the checkout ablate runs from; ("unknown", None) outside one."""
    package_dir = Path(ablate.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True,
                              text=True, timeout=10, check=True)
        return done.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        # An installed ablate inside some other repository must not report that repo's hash.
        if top / "ablate" != package_dir:
            return "unknown", None
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
