"""Notebooks: every one is executed by nbval in `make test`, has a parameters cell, and is committed clean."""

import json
import re
from pathlib import Path

import nbformat
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


# --------------------------------------------------------------- papermill as its users use it


def _papermill(tmp_path, *args):
    import subprocess
    import sys

    papermill = Path(sys.executable).with_name("papermill")
    return subprocess.run([str(papermill), "notebooks/train_eval.ipynb", str(tmp_path / "out.ipynb"),
                           "--no-progress-bar", *args], cwd=ROOT, capture_output=True, text=True)


def test_papermill_list_parameters_as_users_type_them(tmp_path):
    """`-p depths '[2,2,2]'` used to die with `invalid literal for int()` deep in MSSTConfig after a
    110-line traceback; a missing annotations file with a 114-line pandas traceback (issue 11). Here
    the list is accepted (the run gets as far as its data) and the data error is one line."""
    proc = _papermill(tmp_path, "-p", "depths", "[0,0,1]", "-p", "annotations", "nowhere.csv", "-p", "root", ".")
    assert proc.returncode != 0
    at = [i for i, ln in enumerate(proc.stderr.splitlines()) if ln.startswith(("ConfigError", "InputError"))]
    said = "\n".join(proc.stderr.splitlines()[at[0]:at[0] + 3]) if at else ""  # every problem, one line each
    assert "--annotations nowhere.csv: no such file" in said and "nothing was written" in said.lower()
    assert "invalid literal" not in proc.stderr and "pandas" not in proc.stderr


def test_papermill_rejects_a_wrong_list_in_one_line_naming_the_forms(tmp_path):
    proc = _papermill(tmp_path, "-p", "depths", "2;2")
    lines = [ln for ln in proc.stderr.splitlines() if "depths" in ln]
    assert proc.returncode != 0 and len(lines) == 1
    assert "-p depths '[2,2,2]'" in lines[0] and "-y 'depths: [2,2,2]'" in lines[0]


def test_parameter_forms():
    from msstlib import notebooks as N
    from msstlib.config import ConfigError

    for value in ([2, 2, 2], (2, 2, 2), "[2,2,2]", "2,2,2", "2 2 2", "(2, 2, 2)", "[2, 2, 2]"):
        assert N.int_list("depths", value, 3) == [2, 2, 2]
    for value in ("2;2", "[2,2]", "a,b,c", None):
        with pytest.raises(ConfigError, match="parameter depths"):
            N.int_list("depths", value, 3)
    assert N.mapping("overrides", '{"lr": 0.01}') == {"lr": 0.01} == N.mapping("overrides", {"lr": 0.01})
    assert N.mapping("overrides", "") == {}
    with pytest.raises(ConfigError, match="JSON object"):
        N.mapping("overrides", "lr=0.01")
    assert N.boolean("show_progress", "false") is False and N.boolean("show_progress", True) is True
    with pytest.raises(ConfigError):
        N.boolean("show_progress", "maybe")


def test_execute_is_quiet_and_records_no_machine_paths(tmp_path, capfd, monkeypatch):
    """Each row printed "Kernel is running over TCP without encryption" and, on shutdown,
    "KeyboardInterrupt caught in kernel"; papermill recorded absolute input and output paths."""
    import nbformat

    from msstlib import notebooks as N
    from msstlib import paths as P

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import os\nprint(x * 2, os.getcwd())")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    monkeypatch.setattr(P, "REPO", tmp_path)
    N.execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {"x": 21})
    captured = capfd.readouterr()
    noise = captured.out + captured.err
    assert "without encryption" not in noise and "KeyboardInterrupt" not in noise
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"].split() == ["42", str(tmp_path)]  # runs in the repository root
    assert out.metadata["papermill"]["input_path"] == "in.ipynb"
    assert out.metadata["papermill"]["output_path"] == "out.ipynb"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_a_source_notebook_is_in_the_form_jupyterlab_saves(path):
    """Opening notebooks/tables.ipynb in JupyterLab and letting it autosave rewrote its kernelspec's
    display name and language_info: git went dirty for someone who only looked (issue 28)."""
    from msstlib.notebooks import KERNELSPEC, LANGUAGE_INFO

    raw = path.read_text()
    nb = nbformat.reads(raw, as_version=4)
    assert nb.metadata["kernelspec"] == KERNELSPEC and nb.metadata["language_info"] == LANGUAGE_INFO
    assert nbformat.writes(nb) + "\n" == raw  # nbformat's layout, as JupyterLab writes it


PROJECT_SOURCES = [*(ROOT / "msstlib").glob("*.py"), *(ROOT / "data_prep").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]


def _code(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    return path.read_text()


@pytest.mark.parametrize("path", sorted(ROOT.glob("notebooks/*.ipynb")), ids=lambda p: p.name)
def test_a_notebook_calls_only_public_functions(path):
    """tables.ipynb called the private ``R._family`` (issue 28): a notebook is a user of the library."""
    code = _code(path)
    modules = set(re.findall(r"from (?:msstlib|data_prep)(?:\.\w+)? import (\w+)", code))
    private = [m.group(0) for m in re.finditer(r"(?<![\w.])(\w+)\._\w+", code) if m.group(1) in modules]
    private += re.findall(r"from (?:msstlib|data_prep)\.\w+ import .*\b_\w+", code)
    assert not private, private


@pytest.mark.parametrize("path", sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(PROJECT_SOURCES),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_one_letter_aliases_for_the_projects_modules(path):
    """``from . import config as C``, ``results as R``, ``features as FT`` ... (issue 28): a reader
    meets a module under its own name."""
    aliases = re.findall(r"from (?:\.|msstlib|data_prep)\w*(?:\.\w+)* import \w+ as [A-Z]{1,2}\b", _code(path))
    assert not aliases, aliases


def test_every_committed_executed_copy_is_in_the_form_jupyterlab_saves():
    """Executed copies were written with papermill's kernelspec ("Python 3") and without a final
    newline: JupyterLab rewrote them on open (issue 28)."""
    from msstlib.notebooks import lab_form

    copies = sorted((ROOT / "results").rglob("*.ipynb"))
    assert len(copies) > 100
    off = [str(p.relative_to(ROOT)) for p in copies if lab_form(nbformat.read(p, as_version=4)) != p.read_text()]
    assert not off, f"{len(off)} executed copies not in JupyterLab's form (python -m msstlib.notebooks results/): {off[:3]}"


def test_an_executed_copy_is_written_in_the_form_jupyterlab_saves(tmp_path):
    from msstlib.notebooks import KERNELSPEC, execute, lab_form

    src = tmp_path / "in.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {**KERNELSPEC, "display_name": "Python 3"}}, cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print(x)")])
    nbformat.write(nb, src)
    execute(src, tmp_path / "out.ipynb", {"x": 2})
    out = (tmp_path / "out.ipynb").read_text()
    assert lab_form(nbformat.reads(out, as_version=4)) == out
