"""Relocatable results (issue 11): what we record holds no machine paths, and recorded or typed
paths are found again from any folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from msstlib import paths as P

REPO = Path(__file__).resolve().parents[1]


def test_relative_inside_the_repository_absolute_outside(tmp_path):
    assert P.relative(REPO / "build" / "syndfer") == "build/syndfer"
    assert P.relative(REPO) == "."
    assert P.relative(tmp_path / "x") == str(tmp_path / "x")  # a relative form would mean nothing elsewhere
    assert P.relative("") == "" and P.relative(None) == ""


def test_resolve_finds_a_recorded_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert P.resolve("results/synthetic/runs") == str(REPO / "results" / "synthetic" / "runs")
    (tmp_path / "mine").mkdir()
    assert P.resolve("mine") == str(tmp_path / "mine")  # what the user typed, where they stand, comes first
    assert P.resolve("nowhere") == str(tmp_path / "nowhere")  # the error then names the folder they meant
    assert P.resolve("") == ""


def test_committed_results_hold_no_machine_paths():
    """The committed notebooks held 30 absolute paths of the machine that made them (issue 11)."""
    files = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    found = {f: P.absolute_paths((REPO / f).read_text()) for f in files
             if f.endswith((".json", ".ipynb", ".csv", ".md")) and (REPO / f).exists()}
    found = {f: v for f, v in found.items() if v}
    assert not found, f"{len(found)} committed files hold machine paths, e.g. {next(iter(found.items()))}"


def test_relocate_rewrites_paths_of_another_clone_and_keeps_json_valid(tmp_path):
    runs = tmp_path / "results" / "runs" / "r1"
    runs.mkdir(parents=True)
    record = {"war": 0.5, "config": {"run": {"annotations": "/work/old/build/syndfer/prepared/annotations.csv",
                                             "out": "/work/old/build/synthetic/runs/r1"}},
              "other": "/data/DFEW"}
    (runs / "result.json").write_text(json.dumps(record))
    nb = {"cells": [{"source": ['root = "/work/old/build/syndfer"\n']}], "metadata": {}}
    (runs / "train_eval.ipynb").write_text(json.dumps(nb))
    rc = subprocess.run([sys.executable, "-m", "msstlib.paths", "relocate", str(tmp_path / "results"),
                         "--from", "/work/old"], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    out = json.loads((runs / "result.json").read_text())
    assert out["config"]["run"] == {"annotations": "build/syndfer/prepared/annotations.csv",
                                    "out": "build/synthetic/runs/r1"}
    assert out["war"] == 0.5 and out["other"] == "/data/DFEW"  # numbers and outside paths untouched
    assert json.loads((runs / "train_eval.ipynb").read_text())["cells"][0]["source"] == ['root = "build/syndfer"\n']


def test_scratch_folders_go_when_the_process_ends_even_if_it_was_killed(tmp_path):
    """Every default notebook run left ~31 MB in the system temporary folder (issue 11)."""
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    code = ("from msstlib import paths as P; import pathlib, os, sys;"
            "d = pathlib.Path(P.scratch('demo_')); (d / 'f').write_text('x');"
            "print(d); sys.stdout.flush();"
            "os._exit(0) if sys.argv[1] == 'killed' else None")
    clean = subprocess.run([sys.executable, "-c", code, "clean"], env=env, capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stderr
    assert not Path(clean.stdout.strip()).exists()
    killed = subprocess.run([sys.executable, "-c", code, "killed"], env=env, capture_output=True, text=True,
                            cwd=REPO)
    left = Path(killed.stdout.strip())
    assert left.exists()  # os._exit skips atexit, like a killed kernel
    subprocess.run([sys.executable, "-c", code, "clean"], env=env, capture_output=True, text=True, cwd=REPO)
    assert not left.exists() and list(tmp_path.iterdir()) == []  # the next scratch() swept it


def test_row_parameters_record_repository_relative_paths(tiny, r18, monkeypatch):
    from msstlib import grid, runs

    annotations, root = tiny
    base = Path(root).parent
    monkeypatch.setattr(P, "REPO", base)  # the tiny data stand where a clone's build/ would be
    study = runs.Study(annotations=annotations, root=root, dataset="synthetic", preset="cpu",
                    results=str(base / "results" / "synthetic"), work=str(base / "build" / "synthetic"),
                    epochs=1, extra={"backbone_weights": r18})
    row = grid.grid("synthetic", [1], quick=True)[0]
    params = runs.row_parameters(study, row)
    assert params["annotations"] == "data/prepared/annotations.csv" and params["root"] == "data"
    assert params["work_dir"].startswith("build/synthetic/runs/")
    assert params["result_dir"].startswith("results/synthetic/runs/")
    assert json.loads(params["overrides"])["backbone_weights"] == r18  # outside the repository: kept absolute


def test_a_run_records_relative_paths(tiny, r18, tmp_path, monkeypatch):
    from msstlib.train import run

    annotations, root = tiny
    monkeypatch.setattr(P, "REPO", Path(root).parent)
    work = Path(root).parent / "build" / "runs" / "r"
    result = run(annotations=annotations, root=root, frames=4, depths=(0, 0, 1), preset="cpu", fold=1, epochs=1,
                 work_dir=str(work), result_dir=str(tmp_path / "res"), overrides={"backbone_weights": r18},
                 progress=False)
    recorded = (tmp_path / "res" / "result.json").read_text()
    assert str(Path(root).parent) not in recorded
    assert result["config"]["run"]["root"] == P.relative(root) == Path(root).name
    assert result["config"]["run"]["out"] == "build/runs/r"
