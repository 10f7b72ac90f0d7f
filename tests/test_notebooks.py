"""Notebooks: every one is executed by nbval in `make test`, has a parameters cell, and is committed clean."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"train_eval.ipynb", "tables.ipynb", "data_overview.ipynb"}


def test_make_test_runs_nbval_over_every_notebook():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*?(?=^\S)", makefile, re.S | re.M).group(0)
    assert "--nbval-lax" in recipe
    m = re.search(r"--nbval-lax\s+(?P<paths>[^;\n]+)", recipe)
    targets = m.group("paths").split()
    covered = set()
    for t in targets:
        p = ROOT / t
        covered |= set(p.glob("*.ipynb")) if p.is_dir() else {p}
    missing = [p.name for p in NOTEBOOKS if p not in covered]
    assert not missing, f"notebooks not executed by nbval in make test: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_parameters_cell_and_no_outputs(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, \
                "source notebooks are committed without outputs"
