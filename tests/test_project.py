"""Project-level checks: the two dependency lists agree, the layout the users asked for exists."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r) for r in meta["dependencies"]}
    for extra in meta["optional-dependencies"].values():
        pip_side |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_side |= {_name(r) for r in dep["pip"]}
        else:
            conda_side.add(_name(dep))
    conda_side -= {"python", "pip"}
    assert conda_side == pip_side, {"only in environment.yml": conda_side - pip_side,
                                    "only in pyproject.toml": pip_side - conda_side}


def test_top_level_layout():
    for path in ["notebooks", "msstlib", "data_prep", "results", "environment.yml", "README.md",
                 "pyproject.toml", "Makefile", "tests", ".ci/run"]:
        assert (ROOT / path).exists(), path


def test_ci_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", script, re.M)


def test_progress_bars_render_as_widgets_in_jupyterlab():
    """tqdm.auto in a notebook needs ipywidgets, or JupyterLab shows a red "IProgress not found"
    warning box in every notebook that trains (issue 11)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm

        tqdm(total=1, disable=False).close()
