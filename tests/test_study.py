"""The batch runner: the grid, run identity in folders, skipping and resuming, submitit executors."""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msstlib import executors, grid, render, runs, study

ROOT = Path(__file__).resolve().parents[1]


def test_table1_grid():
    rows = grid.table1()
    msst = [c for c in rows if c.variant == "msstnet"]
    assert sum(c.variant == "resnet18-mean" for c in rows) == 1
    subsets = {c.depths for c in msst if c.frames == 4 and max(c.depths) <= 1}
    assert subsets == set(itertools.product((0, 1), repeat=3))  # every subset of the three T-Formers
    for t in (4, 8, 12, 16):
        assert {c.depths for c in msst if c.frames == t and len(set(c.depths)) == 1 and c.depths[0] > 0} == {
            (1, 1, 1), (2, 2, 2), (3, 3, 3)}
    assert len(rows) == len(set(rows)) == 20


def test_one_vocabulary_from_the_grid_to_the_claims():
    """A row's configuration is the claims' Config (no string depths, no parsing of folder names)."""
    row = next(r for r in grid.build_grid("synthetic", "b01") if r.variant == "resnet18-lstm")
    assert row.config == grid.Config(4, (0, 0, 0), "resnet18-lstm", grid.BUDGET_TAG)
    assert row.config in grid.compared_configs(grid.build_claims())
    spread = next(r for r in grid.grid("synthetic") if r.tag == grid.REPLICATE_TAG)
    assert spread.config == grid.MSST  # a replicate seed runs its table row
    with pytest.raises(TypeError, match="tuple of three ints"):
        grid.Config(4, "1-1-1")


def test_grid_covers_table1_plus_noise_and_order_rows():
    rows = grid.grid("synthetic", folds=[1, 2])
    assert len(rows) == 2 * (len(grid.table1()) + 9)
    names = [r.name for r in rows]
    assert len(set(names)) == len(names)
    fold1 = [r for r in rows if r.fold == 1]
    assert sum(r.variant == "resnet18-mean" for r in fold1) == 1
    assert {r.depths for r in fold1 if r.frames == 4 and max(r.depths) <= 1 and r.seed == 0 and not r.tag} == {
        (a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    assert {(r.frames, r.depths) for r in fold1 if r.depths in ((1, 1, 1), (2, 2, 2), (3, 3, 3))} >= {
        (t, (d, d, d)) for t in (4, 8, 12, 16) for d in (1, 2, 3)}
    assert sorted(r.seed for r in fold1
                  if r.frames == 4 and r.depths == (1, 1, 1) and r.tag in ("", "seed-spread")) == [0, 1, 2]
    assert [r.overrides for r in fold1 if r.tag == "no-pos-embed"] == [{"temporal_pos_embed": False}]
    # Table 3's same-backbone baselines under our protocol, and joint space-time attention
    assert sorted(r.variant for r in fold1 if r.variant.startswith("resnet18-") and not r.tag) == [
        "resnet18-gru", "resnet18-lstm", "resnet18-mean", "resnet18-tcn"]
    assert {r.name.split("_")[1] for r in fold1 if r.variant.startswith("resnet18-")} == {
        "r18gru", "r18lstm", "r18mean", "r18tcn"}
    assert [r.overrides for r in fold1 if r.tag == "joint-attention"] == [{"attention": "joint"}]
    # the LSTM's learning-rate sensitivity rows (its shared-lr row barely trains)
    assert [(r.tag, r.overrides) for r in fold1 if r.variant == "resnet18-lstm" and r.tag] == [
        ("lr-3e-3", {"lr": 3e-3}), ("lr-1e-2", {"lr": 1e-2})]
    ferv = grid.grid("ferv39k")
    assert all(r.fold is None and r.split == "train" for r in ferv)
    assert len(grid.grid("synthetic", quick=True)) == 4
    sgd = [r for r in grid.grid("synthetic", sgd_rows=True) if r.tag.startswith("sgd")]
    assert [r.overrides["optimizer"] for r in sgd] == ["sgd"] * 3 and sgd[1].overrides["warmup_epochs"] == 1
    assert all(r.probe for r in sgd) and not any(r.probe for r in grid.grid("synthetic"))


def test_more_seeds_cover_every_row_a_claim_compares_and_nothing_twice():
    compared = set(grid.compared_configs(grid.paper_claims()))
    base = grid.grid("synthetic", folds=[1, 2], sgd_rows=True)
    rows = grid.grid("synthetic", folds=[1, 2], sgd_rows=True, seeds=(1, 2))
    names = [r.name for r in rows]
    assert len(set(names)) == len(names) and rows[:len(base)] == base
    for fold in (1, 2):
        for seed in (0, 1, 2):
            have = {r.config for r in rows if r.fold == fold and r.seed == seed}
            assert compared <= have, (fold, seed, compared - have)
    extra = [r for r in rows if r.seed > 0]
    assert not any(r.probe or r.tag.startswith("sgd") for r in extra)  # probes are not claims
    assert [r.overrides for r in extra if r.tag == "joint-attention" and r.fold == 1] == [{"attention": "joint"}] * 2
    t4 = grid.grid("synthetic", folds=[1], seeds=(1, 2), frames=(4,), claims_only=True)
    assert {r.frames for r in t4} == {4} and len(t4) == 3 * len({c for c in compared if c.frames == 4})
    assert len(grid.grid("synthetic", quick=True, seeds=(1, 2))) == 4  # the smoke run stays small


def test_the_dfew_like_regime_has_its_own_data_and_results_and_joins_the_claims_table(tmp_path, capsys):
    assert study.main(["--dataset", "synthetic", "--regime", "dfew-like", "--root", str(tmp_path / "none"),
                       "--dry-run"]) == 0
    assert "results/synthetic-dfewlike/runs" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        study.main(["--dataset", "dfew", "--root", str(tmp_path), "--regime", "dfew-like", "--dry-run"])
    assert exc.value.code == 2 and "--regime" in capsys.readouterr().err
    # data of the other regime are refused before anything runs, naming the flag that fits them
    from data_prep.synthetic import generate, regime_config

    data = generate(tmp_path / "default-data", regime_config("default"), clips=35, jobs=1, verbose=False)
    assert study.main(["--dataset", "synthetic", "--regime", "dfew-like", "--root", str(data), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "not SynDFER's dfew-like regime but its default regime: pass --regime default" in err
    assert not (tmp_path / "results").exists()
    assert render.regime_of(Path("results/synthetic-dfewlike")) == "dfew-like"
    assert render.regime_of(Path("results/synthetic-dfewlike-quick")) == "dfew-like"
    assert render.regime_of(Path("results/synthetic")) == "default"
    default = tmp_path / "synthetic"
    assert render.dfewlike_sibling(default) is None  # no DFEW-like runs yet
    run = tmp_path / "synthetic-dfewlike" / "runs" / "T04_d111_s0_fold1_0123456789"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}")
    assert render.dfewlike_sibling(default) == run.parent
    assert render.dfewlike_sibling(tmp_path / "synthetic-dfewlike") is None


def _copy(tiny, tmp_path) -> tuple[str, str]:
    root = tmp_path / "data"
    shutil.copytree(tiny[1], root)
    return str(root / "prepared" / "annotations.csv"), str(root)


def _study(args, monkeypatch=None):
    """A Study as main() builds it, from the same flags."""
    captured = {}
    real = runs.Study

    def keep(*a, **k):
        captured["s"] = real(*a, **k)
        return captured["s"]

    mp = pytest.MonkeyPatch()
    mp.setattr(study, "Study", keep)
    try:
        assert study.main(args + ["--dry-run"]) == 0
    finally:
        mp.undo()
    return captured["s"]


def test_dry_run_lists_rows_with_their_run_ids_without_running(tiny, r18, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "run_local", lambda *a, **k: pytest.fail("a dry run must not run rows"))
    assert study.main(["--dataset", "synthetic", "--root", tiny[1], "--backbone-weights", r18, "--dry-run",
                       "--folds", "1", "3", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # 2 folds x (20 Table 1 rows + no-pos-embed + 3 baselines + 2 LSTM learning rates + joint attention
    # + 2 seeds + 3 SGD probes)
    assert "64 rows" in out and "64 todo" in out
    line = next(li for li in out.splitlines() if li.startswith("T16_d333_s0_fold3_"))
    assert len(line.split()[0].rsplit("_", 1)[1]) == 10 and line.split()[1] == "todo"


def test_another_preset_or_epoch_count_is_another_run(tiny, r18, capsys, tmp_path):
    """Fault 1: the folder name and the skip check ignored preset, epochs and overrides, so a
    paper-preset study listed the finished cpu rows as done."""
    base = ["--dataset", "synthetic", "--root", tiny[1], "--results", str(tmp_path / "res"),
            "--work-dir", str(tmp_path / "work")]
    cpu = _study(base + ["--backbone-weights", r18])
    for row in grid.grid("synthetic", sgd_rows=True):
        out = cpu.result_dir(row)
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps({"war": 0.5, "uar": 0.4}))
    capsys.readouterr()
    assert study.main(base + ["--backbone-weights", r18, "--dry-run"]) == 0
    assert "32 rows" in (out := capsys.readouterr().out) and "32 done" in out
    for extra in (["--preset", "paper", "--epochs", "40"], ["--backbone-weights", r18, "--epochs", "6"],
                  ["--backbone-weights", r18, "--set", "hflip=false"]):
        assert study.main(base + extra + ["--dry-run"]) == 0
        out = capsys.readouterr().out
        assert " done " not in out and out.count(" todo ") == (32 if "paper" not in extra else 29), extra


def test_freezing_without_weights_is_refused_before_anything_runs(tmp_path, capsys):
    """Fault 4, at the study level: --preset cpu on DFEW without --backbone-weights."""
    ann = tmp_path / "dfew" / "prepared" / "annotations.csv"
    ann.parent.mkdir(parents=True)
    ann.write_text("clip,num_frames,label,emotion,fold\n")
    assert study.main(["--dataset", "dfew", "--root", str(tmp_path / "dfew"), "--preset", "cpu",
                       "--results", str(tmp_path / "res")]) == 2
    assert "--backbone-weights" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_finished_rows_are_skipped_and_failures_recorded(tiny, r18, tmp_path, monkeypatch):
    import papermill

    ann, root = _copy(tiny, tmp_path)
    args = ["--dataset", "dfew", "--root", root, "--preset", "cpu", "--backbone-weights", r18,
            "--results", str(tmp_path / "res"), "--work-dir", str(tmp_path / "work")]
    s = _study(args)
    rows = grid.grid("dfew", folds=[1], sgd_rows=True)
    done = rows[0]
    s.result_dir(done).mkdir(parents=True)
    (s.result_dir(done) / "result.json").write_text("{}")
    executed = []

    def fake_execute(src, dst, parameters, **kw):
        executed.append(Path(dst).parent.name)
        if parameters.get("frames") == 16 and parameters.get("depths") == [3, 3, 3]:
            raise RuntimeError("boom in a cell")
        if Path(src).name == "train_eval.ipynb":
            Path(parameters["result_dir"], "result.json").write_text("{}")

    def in_process(todo, st, jobs):  # the selection logic of main(), without subprocesses
        return [(st.folder(r), runs.run_row(r, st)[1]) for r in todo]

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(study, "run_local", in_process)
    assert study.main(args) == 1  # one row failed
    assert s.folder(done) not in executed  # skipped: its result exists
    failed = s.result_dir(next(r for r in rows if r.frames == 16 and r.depths == (3, 3, 3)))
    assert "boom in a cell" in (failed / "error.txt").read_text()
    assert not (failed / "result.json").exists()
    assert sum(s.result_dir(r).joinpath("result.json").exists() for r in rows) == len(rows) - 1
    # Rerun: only the failed row executes again; now it succeeds and the exit status is 0.
    executed.clear()
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda src, dst, parameters, **kw: executed.append(Path(dst).parent.name) or (
                            Path(src).name == "train_eval.ipynb"
                            and Path(parameters["result_dir"], "result.json").write_text("{}")))
    assert study.main(args) == 0
    assert executed == [failed.name, "res"]  # the failed row, then tables.ipynb
    assert not (failed / "error.txt").exists()


def _other_backbone(r18, out, delta=1e-3):
    """A copy of the r18 weights with one tensor moved: another pre-training's weights (another
    content digest), standing in for a backbone pre-trained on another machine."""
    import torch

    weights = torch.load(r18)
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = weights[key] + delta
    torch.save(weights, out)
    return out


def test_a_probe_that_diverged_under_another_build_counts_as_done_and_the_listing_says_so(tiny, r18, tmp_path,
                                                                                        monkeypatch, capsys):
    """Found continuing the study on a new machine: diverged.json recorded no identity, so an
    optimiser probe that had diverged under the committed build was not recognised as held by
    another build and ran again beside it (its tables would show the probe twice); and a dry run
    with --allow-other-builds listed every row held under another build as "todo" although the run
    counts it done. Now diverged.json carries the identity and the listing says what the run does."""
    ann, root = _copy(tiny, tmp_path)
    other = _other_backbone(r18, tmp_path / "other_r18.pt")
    base = ["--dataset", "dfew", "--root", root, "--preset", "cpu", "--folds", "1", "--results", str(tmp_path / "res"),
            "--work-dir", str(tmp_path / "work")]
    before = _study(base + ["--backbone-weights", r18])
    rows = grid.grid("dfew", folds=[1], sgd_rows=True)
    probe = next(r for r in rows if r.probe)
    table_row = next(r for r in rows if r.frames == 8 and r.depths == (2, 2, 2) and not r.probe)
    for row, name, record in [(probe, "diverged.json", {"status": "diverged"}), (table_row, "result.json",
                                                                                   {"war": 0.5, "uar": 0.4})]:
        out = before.result_dir(row)
        out.mkdir(parents=True)
        (out / name).write_text(json.dumps({**record, "identity": before.identity(row)}))
    after = _study(base + ["--backbone-weights", str(other)])
    ran = {}
    monkeypatch.setattr(study, "run_local", lambda todo, st, jobs: ran.setdefault("todo", [st.folder(r) for r in todo])
                        and [])
    monkeypatch.setattr(study, "render_tables", lambda *a, **k: None)
    assert study.main(base + ["--backbone-weights", str(other), "--allow-other-builds"]) == 0
    assert not any(f.startswith((probe.name + "_", table_row.name + "_")) for f in ran["todo"])
    assert len(ran["todo"]) == len(rows) - 2
    capsys.readouterr()
    for flags, state in [(["--allow-other-builds"], "done"), ([], "other-build")]:
        assert study.main(base + ["--backbone-weights", str(other), "--dry-run"] + flags) == 0
        listing = capsys.readouterr().out
        for row in (probe, table_row):
            line = next(x for x in listing.splitlines() if x.startswith(after.folder(row)))
            assert line.split()[1] == state and before.folder(row) in line, line
        assert f"{len(rows)} rows" in listing and f"2 {state}" in listing and f"{len(rows) - 2} todo" in listing


def test_a_row_two_other_builds_hold_is_counted_once(tiny, r18, tmp_path, monkeypatch, capsys):
    """Noticed reading other_builds: it returns one entry per result found, so a row that two
    other builds both hold was counted twice in the refusal ("holds 2 of these rows" for one row).
    other_builds reports each row once."""
    ann, root = _copy(tiny, tmp_path)
    files = [str(_other_backbone(r18, tmp_path / f"build{i}_r18.pt", i * 1e-3)) for i in (1, 2)]
    base = ["--dataset", "dfew", "--root", root, "--preset", "cpu", "--folds", "1", "--results", str(tmp_path / "res"),
            "--work-dir", str(tmp_path / "work")]
    row = next(r for r in grid.grid("dfew", folds=[1]) if r.frames == 8 and r.depths == (2, 2, 2))
    for weights_file in (r18, files[0]):  # two builds, each holding the same row
        st = _study(base + ["--backbone-weights", weights_file])
        out = st.result_dir(row)
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps({"war": 0.5, "uar": 0.4, "identity": st.identity(row)}))
    monkeypatch.setattr(study, "run_local", lambda *a, **k: pytest.fail("nothing may run"))
    capsys.readouterr()
    assert study.main(base + ["--backbone-weights", files[1]]) == 2
    assert "holds 1 of these rows" in capsys.readouterr().err


def test_real_datasets_need_a_root(capsys):
    with pytest.raises(SystemExit):
        study.main(["--dataset", "dfew"])
    assert "--root is required" in capsys.readouterr().err


def test_a_diverging_probe_is_an_outcome_but_a_diverging_table_row_is_a_failure(tiny, r18, tmp_path, monkeypatch):
    import papermill

    def diverge(src, dst, parameters, **kw):
        if Path(src).name == "train_eval.ipynb":
            Path(parameters["result_dir"], "diverged.json").write_text("{}")
            raise RuntimeError("FloatingPointError: loss became nan")

    monkeypatch.setattr(papermill, "execute_notebook", diverge)
    s = runs.Study(annotations=tiny[0], root=tiny[1], dataset="synthetic", preset="cpu", results=str(tmp_path),
                    work=str(tmp_path / "b"), epochs=1, extra={"backbone_weights": r18})
    probe = [r for r in grid.grid("synthetic", sgd_rows=True) if r.probe][0]
    assert runs.run_row(probe, s) == (probe, None)
    assert runs.run_row(probe, s) == (probe, None)  # recorded: skipped on a rerun
    table_row = grid.grid("synthetic")[0]
    _, error = runs.run_row(table_row, s)
    assert error is not None and "nan" in error


class _FakeJob:
    def __init__(self, job_id, row):
        self.job_id, self.row = job_id, row
        self.paths = type("P", (), {"stderr": "x.err"})()

    def done(self):
        return True

    def result(self):
        return self.row.name, None


class _FakeExecutor:
    made = []

    def __init__(self, folder, cluster="local"):
        self.folder, self.cluster, self.params, self.submitted = folder, cluster, {}, []
        _FakeExecutor.made.append(self)

    def update_parameters(self, **kw):
        self.params.update(kw)

    def submit(self, fn, row):
        self.submitted.append((row, dict(self.params)))
        return _FakeJob(str(len(self.submitted)), row)

    def map_array(self, fn, rows):
        self.array = (fn, list(rows))
        return [_FakeJob(f"777_{i}", r) for i, r in enumerate(rows)]


def test_local_jobs_each_get_their_own_gpu(tmp_path, monkeypatch):
    import submitit

    _FakeExecutor.made.clear()
    monkeypatch.setattr(submitit, "LocalExecutor", _FakeExecutor)
    monkeypatch.setattr(executors, "gpu_count", lambda: 2)
    monkeypatch.setattr(runs.Study, "folder", lambda self, row: row.name)
    s = runs.Study(annotations="a", root="r", dataset="dfew", preset="paper", results=str(tmp_path / "res"),
                    work=str(tmp_path / "work"))
    rows = grid.grid("dfew", quick=True)
    executors.run_local(rows, s, jobs=2, poll_s=0)
    ex = _FakeExecutor.made[0]
    assert ex.cluster == "local" and ex.params["timeout_min"] >= 24 * 60
    gpus = [p["visible_gpus"] for _, p in ex.submitted]
    assert gpus[:2] == [[0], [1]] and all(len(g) == 1 for g in gpus)  # never all on cuda:0


def test_slurm_submits_one_array_job_per_missing_row_and_returns(tiny, r18, tmp_path, monkeypatch, capsys):
    import submitit

    _FakeExecutor.made.clear()
    monkeypatch.setattr(submitit, "AutoExecutor", _FakeExecutor)
    monkeypatch.setattr(study, "overview", lambda *a, **k: None)
    ann, root = _copy(tiny, tmp_path)
    args = ["--dataset", "dfew", "--root", root, "--preset", "paper", "--executor", "slurm",
            "--slurm-partition", "gpu", "--slurm-time", "90", "--slurm-gpus-per-job", "1", "--slurm-cpus-per-job", "6",
            "--slurm-mem", "32G", "--slurm-array-parallelism", "10", "--results", str(tmp_path / "res"),
            "--work-dir", str(tmp_path / "scratch")]
    s = _study(args)
    rows = grid.grid("dfew", folds=[1])
    s.result_dir(rows[0]).mkdir(parents=True)
    (s.result_dir(rows[0]) / "result.json").write_text(json.dumps({"war": 0.5, "uar": 0.4}))
    capsys.readouterr()
    assert study.main(args) == 0
    out = capsys.readouterr().out
    ex = _FakeExecutor.made[-1]
    assert ex.cluster == "slurm" and str(ex.folder).startswith(str(tmp_path / "scratch"))
    assert {k: ex.params[k] for k in ("slurm_partition", "timeout_min", "gpus_per_node", "cpus_per_task",
                                       "slurm_mem", "slurm_array_parallelism")} == {
        "slurm_partition": "gpu", "timeout_min": 90, "gpus_per_node": 1, "cpus_per_task": 6, "slurm_mem": "32G",
        "slurm_array_parallelism": 10}
    job_fn, submitted = ex.array
    assert [r.name for r in submitted] == [r.name for r in rows[1:]]  # the finished row is not submitted
    assert hasattr(job_fn, "checkpoint") and job_fn.study.threads == 6 and len(job_fn.expected) == len(rows)
    assert "777_0" in out and "--status" in out
    record = json.loads((s.work_dir(rows[1]) / "job.json").read_text())
    assert record["executor"] == "slurm" and record["job_id"] == "777_0"
    # --status from a machine without sacct: submitted rows say so; the finished one is done.
    assert study.main(args + ["--status"]) == 0
    status = capsys.readouterr().out
    assert "done" in status and "submitted" in status


def test_the_job_that_lands_the_last_row_renders_the_tables(tmp_path, monkeypatch):
    s = runs.Study(annotations="a", root="r", dataset="dfew", preset="paper", results=str(tmp_path / "res"),
                    work=str(tmp_path / "work"))
    monkeypatch.setattr(runs.Study, "folder", lambda self, row: row.name)
    rows = grid.grid("dfew", quick=True)
    rendered = []
    monkeypatch.setattr(executors, "render_tables", lambda results, dataset, lock=False: rendered.append(lock))

    def land(row, st, log_output=False):
        out = st.result_dir(row)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text("{}")
        return row, None

    monkeypatch.setattr(executors, "run_row", land)
    job = executors.RowJob(s, [r.name for r in rows])
    for row in rows[:-1]:
        assert job(row) == (row.name, None)
    assert rendered == []
    job(rows[-1])
    assert rendered == [True]  # once, under the lock
    assert json.loads((s.work_dir(rows[0]) / "job.json").read_text())["pid"] == os.getpid()


def test_requeue_stops_the_training_kernel_and_resubmits_the_same_row(tmp_path):
    """RowJob.checkpoint (what submitit calls on pre-emption or time-out) stops this process's
    children -- the kernel that trains -- and returns the same job for the same row."""
    script = tmp_path / "job.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from msstlib import executors, grid, runs\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "s = runs.Study(annotations='a', root='r', dataset='dfew', preset='paper', results='res', work='w')\n"
        "row = grid.grid('dfew', quick=True)[0]\n"
        "delayed = executors.RowJob(s, ['x'])\n"
        "d = delayed.checkpoint(row)\n"
        "print(child.poll() is not None, d.args[0] == row, type(d.function).__name__, d.function.expected)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["True", "True", "RowJob", "['x']"], out.stderr


def _wait_for(predicate, timeout=300.0, every=0.2):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def _checkpointed_row(work: Path, exclude=()):
    for log in sorted(work.glob("runs/*/log.csv")):
        if log.parent.name not in exclude and len(log.read_text().splitlines()) >= 2:
            marker = log.parent / "job.json"
            if marker.exists() and "pid" in json.loads(marker.read_text()):
                return log.parent
    return None


@pytest.mark.slow
def test_local_executor_runs_the_quick_grid_through_submitit_and_resumes_killed_jobs(tiny, r18, tmp_path):
    """The quick grid through submitit's local executor, two jobs at a time. One job is pre-empted
    mid-run (SIGUSR2, what SLURM sends): submitit requeues it and it resumes from its checkpoint.
    Another is killed outright with its whole process tree: the command reports it, and running the
    same command again runs only that row, which resumes from its checkpoint."""
    import psutil

    ann, root = _copy(tiny, tmp_path)
    res, work = tmp_path / "res", tmp_path / "work"
    cmd = [sys.executable, "-m", "msstlib.study", "--dataset", "synthetic", "--root", root, "--quick",
           "--epochs", "12", "--backbone-weights", r18, "--set", "embed_dim=32", "--set", "num_heads=4",
           "--jobs", "2", "--results", str(res), "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pre = _wait_for(lambda: _checkpointed_row(work / "res"))
        os.kill(json.loads((pre / "job.json").read_text())["pid"], signal.SIGUSR2)  # pre-empted
        killed = _wait_for(lambda: _checkpointed_row(work / "res", exclude={pre.name}))
        controller = psutil.Process(int(json.loads((killed / "job.json").read_text())["job_id"]))
        tree = [controller, *controller.children(recursive=True)]
        for p in tree:
            p.kill()  # a node failure: the job, papermill and its kernel are gone at once
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert f"{killed.name}: FAILED" in out and "ended without a result" in out
    assert (res / "runs" / pre.name / "result.json").exists()
    assert "resuming run" in (res / "runs" / pre.name / "train_eval.ipynb").read_text()
    assert not (res / "runs" / killed.name / "result.json").exists()
    assert sum((d / "result.json").exists() for d in (res / "runs").iterdir()) == 3

    # Again, with another --jobs (so another thread count): only the killed row runs, and resumes.
    cmd[cmd.index("--jobs") + 1] = "1"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 done, 0 running or queued, 1 to run" in again.stdout
    assert "resuming run" in (res / "runs" / killed.name / "train_eval.ipynb").read_text()
    result = json.loads((res / "runs" / killed.name / "result.json").read_text())
    assert killed.name.endswith(result["run_id"]) and result["epochs"] == 12
    assert (res / "tables" / "table1.csv").exists()
    status = subprocess.run(cmd + ["--status"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "4 rows" in status.stdout and "4 done" in status.stdout


def test_a_study_ends_by_saying_where_its_results_are_and_labels_a_smoke_test(tmp_path, capsys):
    """The quick run ended on "make[1]: Leaving directory" without saying where the results were,
    and nothing said its numbers were a smoke test (issue 11)."""
    quick = tmp_path / "synthetic-quick"
    (quick / "tables").mkdir(parents=True)
    (quick / "tables" / "table1.md").write_text("x")
    (quick / "figures").mkdir()
    (quick / "figures" / "gradcam_happy.png").write_bytes(b"")
    render.where(quick)
    out = capsys.readouterr().out
    assert "SMOKE TEST" in out and "table1.md" in out and "gradcam_happy.png" in out
    render.where(tmp_path / "synthetic")
    assert "SMOKE TEST" not in capsys.readouterr().out
    makefile = (ROOT / "Makefile").read_text()
    assert "--no-print-directory figures" in makefile


def test_a_study_continued_with_another_pre_trained_backbone_is_refused(tiny, r18, tmp_path, monkeypatch, capsys):
    """Found continuing the committed study on a machine whose CPU and torch release pre-trained
    another backbone: every committed row looked undone (its run id names the old weights), so the
    study started re-running them beside the committed ones, and the tables would have mixed two
    backbones. Now it says so before running anything (exit 2); a dry run warns."""
    ann, root = _copy(tiny, tmp_path)
    other = _other_backbone(r18, tmp_path / "other_r18.pt")
    base = ["--dataset", "dfew", "--root", root, "--preset", "cpu", "--folds", "1", "--results", str(tmp_path / "res"),
            "--work-dir", str(tmp_path / "work")]
    before = _study(base + ["--backbone-weights", r18])
    committed = next(r for r in grid.grid("dfew", folds=[1]) if r.frames == 8 and r.depths == (2, 2, 2))
    out = before.result_dir(committed)
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({"war": 0.5, "uar": 0.4, "identity": before.identity(committed),
                                                 "versions": {"torch": "2.15.0+cu132"}}))
    monkeypatch.setattr(study, "run_local", lambda *a, **k: pytest.fail("nothing may run"))
    capsys.readouterr()
    assert study.main(base + ["--backbone-weights", str(other)]) == 2
    err = capsys.readouterr().err
    assert out.name in err and "model.backbone_weights" in err and "2.15.0+cu132" in err
    assert "--backbone-weights FILE" in err and "--results" in err
    assert study.main(base + ["--backbone-weights", str(other), "--dry-run"]) == 0
    assert "warning:" in capsys.readouterr().out
    # The backbone the committed rows used: that row is done, nothing is refused.
    assert study.main(base + ["--backbone-weights", r18, "--dry-run"]) == 0
    assert "warning:" not in capsys.readouterr().out
    # --allow-other-builds (what make reproduce passes): that row counts as done, the others run with this build.
    ran = {}
    monkeypatch.setattr(study, "run_local", lambda todo, st, jobs: ran.setdefault("todo", [st.folder(r) for r in todo])
                        and [])
    monkeypatch.setattr(study, "render_tables", lambda *a, **k: None)
    assert study.main(base + ["--backbone-weights", str(other), "--allow-other-builds"]) == 0
    assert ran["todo"] and not any(f.startswith(committed.name + "_") for f in ran["todo"])
    assert len(ran["todo"]) == len(grid.grid("dfew", folds=[1], sgd_rows=True)) - 1


def test_collect_renders_the_tables_from_committed_runs_without_the_data(tmp_path, monkeypatch, capsys):
    """Fault: on a fresh clone (no build/ data) --collect listed every row as todo and rendered
    nothing, so the committed tables could not be re-made from the committed runs."""
    rendered = []
    monkeypatch.setattr(study, "render_tables", lambda results, dataset, **k: rendered.append(Path(results)))
    assert study.main(["--dataset", "synthetic", "--root", str(tmp_path / "no-data"), "--results",
                       str(tmp_path / "synthetic"), "--collect"]) == 0
    assert rendered == [tmp_path / "synthetic"] and "not prepared here" in capsys.readouterr().out


def test_a_study_writing_to_a_log_updates_its_bars_every_half_minute(monkeypatch, capsys):
    """Found in a build's log: the frame cache's bar wrote ~200 updates onto one line of a log file.
    A study whose output is not a terminal sets tqdm's default interval for itself and its children;
    a terminal, or a user's own TQDM_MININTERVAL, is left alone."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    study.quiet_bars_in_logs(Terminal())
    assert "TQDM_MININTERVAL" not in os.environ
    study.quiet_bars_in_logs(io.StringIO())
    assert os.environ["TQDM_MININTERVAL"] == str(study.LOG_BAR_INTERVAL)
    # tqdm reads it when imported: the study's children (the cache and pre-training subprocesses,
    # the notebook kernels) are what it is for
    child = subprocess.run([sys.executable, "-c", "import io; from tqdm import tqdm; "
                            "print(tqdm(range(3), file=io.StringIO()).mininterval)"],
                           capture_output=True, text=True, check=True)
    assert float(child.stdout) == study.LOG_BAR_INTERVAL
    monkeypatch.setenv("TQDM_MININTERVAL", "2")
    study.quiet_bars_in_logs(io.StringIO())
    assert os.environ["TQDM_MININTERVAL"] == "2"
    # the CLI itself does it (here pytest captures stderr: not a terminal)
    monkeypatch.delenv("TQDM_MININTERVAL")
    assert study.main(["--dataset", "synthetic", "--folds", "9"]) == 2
    assert os.environ["TQDM_MININTERVAL"] == str(study.LOG_BAR_INTERVAL)
