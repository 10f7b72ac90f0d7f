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


def test_short_pre_training_explains_its_negative_r2(tmp_path, capsys):
    """The quick backbone printed eight negative R^2 values without comment (issue 11)."""
    import json

    from msstlib.pretrain import PretrainConfig, pretrain

    pretrain(PretrainConfig(clips=35, frames_per_clip=1, epochs=1, batch_size=8), tmp_path / "r18.pt", progress=False)
    out = capsys.readouterr().out
    r2 = json.loads((tmp_path / "r18.json").read_text())["held_out_r2_per_dimension"]
    assert min(r2) < 0  # a few frames and one epoch: worse than the mean on some movement
    assert "below 0: worse than predicting each movement's mean" in out


def test_pre_training_gives_the_same_weights_whatever_the_thread_count(tmp_path):
    """Pre-training with 1 and with 2 threads gave other weights (reductions split differently), so a
    machine with another core count pre-trained another backbone: other run ids for every row."""
    import torch

    from msstlib.config import weights_digest
    from msstlib.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(clips=35, frames_per_clip=2, epochs=1, batch_size=8)
    before = torch.get_num_threads()
    digests = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        digests.append(weights_digest(pretrain(cfg, tmp_path / f"r18_{threads}threads.pt", progress=False)))
        assert torch.get_num_threads() == threads  # left as it was
    torch.set_num_threads(before)
    assert digests[0] == digests[1]


FLOORS = {  # docs/layout.md, "The house"
    0: {"config", "identity", "labels", "frames", "stats", "files", "paths", "distributed"},
    1: {"checkpoint", "inputs", "resnet_weights", "metrics", "grid"},
    2: {"model", "data", "features", "flops", "pretrain", "builds", "results", "claims", "paper_check", "notebooks", "overview"},
    3: {"train", "loop", "export", "cam", "report", "runs", "render"},
    4: {"study", "executors", "reproduce", "predict", "fixtures"},
}


def _imports() -> dict[str, set[str]]:
    import ast

    mods = {p.stem: p for p in (ROOT / "msstlib").glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("msstlib."):
                deps.add(node.module.split(".")[1])
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_every_module_imports_its_own_floor_or_below_and_no_cycle():
    graph = _imports()
    floor = {m: f for f, ms in FLOORS.items() for m in ms}
    assert set(graph) == set(floor), {"no floor": set(graph) - set(floor), "gone": set(floor) - set(graph)}
    upward = [f"{m} ({floor[m]}) -> {d} ({floor[d]})" for m, ds in graph.items() for d in ds if floor[d] > floor[m]]
    assert not upward, upward
    seen, done = set(), set()

    def visit(m, path):
        assert m not in seen or m in done, f"import cycle: {' -> '.join(path + [m])}"
        if m in done:
            return
        seen.add(m)
        for d in sorted(graph[m]):
            visit(d, path + [m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


def test_data_prep_reads_only_the_ground_floor():
    import ast

    used = set()
    for path in (ROOT / "data_prep").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("msstlib."):
                used.add(node.module.split(".")[1])
    assert used <= FLOORS[0], used - FLOORS[0]
