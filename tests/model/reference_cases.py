"""The research reference cases (``shared/reference``, made for this project by running
the research scripts): where the tests find them, and how the compact in-repo copy under
``tests/model/reference`` is made from them.

The copy keeps, per case, the state dict, the sidecar config, and for the L16 input only
the outputs the tests read (logits at T = 0, 1, 2, 8, M(0), every M(t), the effective
ranks and the research rank list): 1.1 MB for the four cases instead of 4 MB. Tests always
run against the copy, and also against ``shared/reference`` (L16 and L48) when it is there;
``test_reference_copy_is_a_faithful_trim`` checks the copy against it.

    $ python -m tests.model.reference_cases ../shared/reference tests/model/reference
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch

CASES = (
    "round2_frobenius_multiprobe__small_init",
    "round1_frobenius_collapse__small_init",
    "attn3d_multiprobe__small_init",
    "byte_frobenius_multiprobe__small_init",
)
INPUTS = ("L16",)
EXPECTED_KEYS = ("logits_T0", "logits_T1", "logits_T2", "logits_T8", "M0", "M_per_iter",
                 "erank_per_pos", "erank_mean_all_pos", "research_measure_ranks")
COPY = Path(__file__).resolve().parent / "reference"
SHARED = Path(os.environ.get("ABLATE_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def reference_roots() -> list[Path]:
    """The in-repo copy, then shared/reference when present."""
    shared = SHARED / "reference"
    return [COPY] + ([shared] if all((shared / case).is_dir() for case in CASES) else [])


def trim(source: Path, destination: Path) -> None:
    """Write the compact copy of every case of ``source`` into ``destination``."""
    for case in CASES:
        into = destination / case
        into.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / case / "best.pt", into / "best.pt")
        config = json.loads((source / case / "config.json").read_text())
        config["M_per_iter_saved_for"] = list(INPUTS)
        (into / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        inputs = torch.load(source / case / "inputs.pt", weights_only=True)
        torch.save({key: inputs[key] for key in INPUTS}, into / "inputs.pt")
        expected = torch.load(source / case / "expected.pt", weights_only=True)
        torch.save({key: {name: expected[key][name] for name in EXPECTED_KEYS}
                    for key in INPUTS}, into / "expected.pt")


if __name__ == "__main__":
    trim(Path(sys.argv[1]), Path(sys.argv[2]))
