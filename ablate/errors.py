"""User-facing errors: one line that names the offending file or value and the fix.

The CLI prints ``AblateError`` messages on one line and exits with code 2, and an
``Interrupted`` message with code 130; anything else is a bug and keeps its traceback.

    >>> raise AblateError("checkpoint 'x.pt' not found: pass an existing path")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AblateError(Exception):
    """A problem with user input (a file, a flag, a config value); exit code 2."""


class Interrupted(Exception):
    """A command stopped by Ctrl-C (SIGINT) after keeping its finished work. The message
    is the one line the CLI prints (what was kept, how to resume); exit code 130."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the choice closest to ``name``, or "" when none is close."""
    close = difflib.get_close_matches(str(name), sorted(map(str, choices)), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_error(kind: str, name: str, available: Iterable[str]) -> AblateError:
    """The registry error: "Unknown X 'y'. Did you mean ...? Available: ..."."""
    names = sorted(available)
    return AblateError(f"Unknown {kind} '{name}'.{did_you_mean(name, names)} "
                       f"Available: {', '.join(names)}")


def unknown_keys_error(where: str, unknown: Iterable[str], allowed: Iterable[str], *,
                       kind: str = "key") -> AblateError:
    """A config table's unknown key(s): "WHERE: unknown key 'x'. Did you mean 'y'?
    Allowed keys: ..." (the hint is for the first unknown key; ``kind`` names the keys,
    e.g. "CODI train key")."""
    unknown, allowed = list(unknown), list(allowed)
    keys = ", ".join(f"'{key}'" for key in unknown)
    return AblateError(f"{where}: unknown {kind}{'s' if len(unknown) > 1 else ''} {keys}."
                       f"{did_you_mean(unknown[0], allowed)} Allowed: {', '.join(allowed)}")


def shown(name: str) -> str:
    """A name from a file as an error shows it: as is when printable, else escaped, so a
    damaged key (one holding a newline, say) cannot break the one-line error."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
