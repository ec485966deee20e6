"""``python -m ablate.cli`` runs the command line."""

from __future__ import annotations

import sys

from ablate.cli import main

if __name__ == "__main__":  # spawned worker processes (--workers) import this module too
    sys.exit(main())
