"""The record schema is defined once (ablate.schema) and the docs show it as it is: the
column tables of docs/architecture.md are the schema's, and the CODI experiment the docs
show loads and checks against the bundled checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

from ablate.executors import check_experiment
from ablate.experiment import CODI, load_experiment
from ablate.schema import (
    COLUMNS,
    EVALUATION_COLUMNS,
    GROUPS,
    IDENTITY_COLUMNS,
    JOB_COLUMNS,
    RECORD_KEY,
    SELECTION_KEYS,
    markdown_table,
)

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"


def test_every_column_has_one_group_and_a_pandas_dtype():
    assert all(c.group in GROUPS for c in COLUMNS.values())
    assert {c.dtype for c in COLUMNS.values()} <= {"string", "int64", "Int64", "float64",
                                                   "boolean", "object"}
    assert JOB_COLUMNS[0] == "job_id" and EVALUATION_COLUMNS[0] == "condition"
    for keys in (RECORD_KEY, IDENTITY_COLUMNS, SELECTION_KEYS):
        assert set(keys) <= set(COLUMNS)


def test_the_architecture_doc_shows_the_schema_tables():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    for group in GROUPS:
        assert markdown_table(group) in text, f"docs/architecture.md lacks the {group} table"


def test_the_architecture_doc_names_every_module_of_the_package():
    # The layout block lists each top-level module and package of ablate/ as it is.
    text = ARCHITECTURE.read_text(encoding="utf-8")
    package = REPO / "ablate"
    names = [p.name for p in package.iterdir() if p.suffix == ".py" or
             (p.is_dir() and (p / "__init__.py").is_file())]
    missing = [n for n in names if f"ablate/{n}{'' if n.endswith('.py') else '/'}" not in text]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_the_readme_module_table_names_only_modules_that_exist_and_every_package():
    # The README's stage table is the short map: each path it names exists, and each
    # subpackage of ablate/ has a row (single modules may be left to docs/architecture.md).
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| stage | module |"):text.index("### Commands")]
    named = re.findall(r"`(ablate/[\w/.]+)`", table)
    assert named, "README.md has no module table"
    assert not [p for p in named if not (REPO / p).exists()], "README names missing modules"
    packages = [f"ablate/{p.name}/" for p in (REPO / "ablate").iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()]
    assert not [p for p in packages if p not in named], "README's table lacks a package"


def test_the_codi_experiment_the_docs_show_loads_and_checks(tmp_path):
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    assert block, "docs/architecture.md has no ```toml block"
    # Its checkpoint path is relative to experiments/, where such a file would live.
    relative = '"../checkpoints/codi-synthetic"'
    assert relative in block.group(1)
    path = tmp_path / "example.toml"
    absolute = f'"{REPO / "checkpoints" / "codi-synthetic"}"'
    path.write_text(block.group(1).replace(relative, absolute), encoding="utf-8")
    experiment = load_experiment(path).resolve(limit=2)
    assert experiment.model == CODI
    summary = check_experiment(experiment)
    # d = 8: SVD k = 1, 2, 4, 8 and random k = 1, 2, 4 (two draws) on every thought.
    assert summary.per_latents == {0: 1, 6: 1 + 4 + 3 * 2}
