"""User-facing errors: one line that names the offending file or value and the fix.

The CLI prints ``AblateError`` messages on one line and exits with code 2; anything else
is a bug and keeps its traceback.

    >>> raise AblateError("checkpoint 'x.pt' not found: pass an existing path")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AblateError(Exception):
    """A problem with user input (a file, a flag, a config value); exit code 2."""


def unknown_name_error(kind: str, name: str, available: Iterable[str]) -> AblateError:
    """The registry error: "Unknown X 'y'. Did you mean ...? Available: ..."."""
    names = sorted(available)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return AblateError(f"Unknown {kind} '{name}'.{hint} Available: {', '.join(names)}")


def shown(name: str) -> str:
    """A name from a file as an error shows it: as is when printable, else escaped, so a
    damaged key (one holding a newline, say) cannot break the one-line error."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
