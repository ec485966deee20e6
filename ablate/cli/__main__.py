"""``python -m ablate.cli`` runs the command line."""

from __future__ import annotations

import sys

from ablate.cli import main

sys.exit(main())
