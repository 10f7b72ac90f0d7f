"""Untrusted input (issue 26): checkpoints that cannot run code, every bad input named before
training, one writer per run folder, no fixed temporary names."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from msstlib import cam, files, inputs, study
from msstlib import train as T
from msstlib.checkpoint import CheckpointError

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}
ROOT = Path(__file__).resolve().parents[1]


class Planted:
    """What a hostile checkpoint carries: unpickling it calls os.makedirs(marker)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(autouse=True)
def _threads():
    """``--threads 1`` sets this process's torch threads: give the next test back its own."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _argv(tiny, r18, out, *extra, epochs="1"):
    ann, root = tiny
    return ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
            "--preset", "cpu", "--embed-dim", "32", "--num-heads", "4", "--batch-size", "16",
            "--backbone-weights", r18, "--out", str(out), "--no-progress", "--epochs", epochs, *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def finished(tiny, r18, tmp_path_factory):
    """A real one-epoch run folder (its checkpoint is what a hostile one is made from)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert T.main(_argv(tiny, r18, out)) == 0
    return out


def _plant(src: Path, dest: Path, marker: Path) -> Path:
    """A checkpoint of the same run (its run id kept) that carries code."""
    ckpt = T.load_checkpoint(src / "checkpoint.pt")
    ckpt["extra"] = Planted(marker)
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dest / "checkpoint.pt")  # the pickle a hostile user would share
    return dest


# ------------------------------------------------------------------------------------ checkpoints


def test_a_planted_checkpoint_runs_no_code_on_resume(tiny, r18, finished, tmp_path, capsys):
    """`train --resume` on a checkpoint of the right run that carries code: refused with exit 2, and
    the code never ran (it ran before the run-id check, and the run resumed and exited 0)."""
    marker = tmp_path / "pwned"
    out = _plant(finished, tmp_path / "evil", marker)
    assert T.main(_argv(tiny, r18, out, "--resume")) == 2
    msg = _one_line_error(capsys)
    assert "is unreadable or not a plain checkpoint" in msg and "remove it or choose another --out" in msg
    assert not marker.exists()
    # A checkpoint of another run that carries code: the same (the run-id check came after the load).
    out2 = _plant(finished, tmp_path / "evil2", marker)
    assert T.main(_argv(tiny, r18, out2, "--resume", epochs="2")) == 2
    assert "not a plain checkpoint" in _one_line_error(capsys) and not marker.exists()


def test_a_planted_checkpoint_runs_no_code_in_automatic_resume(tiny, r18, finished, tmp_path):
    """train.run() (every notebook and study row) resumes by itself when work_dir holds a checkpoint."""
    marker = tmp_path / "pwned"
    out = _plant(finished, tmp_path / "evil", marker)
    ann, root = tiny
    with pytest.raises(CheckpointError, match="not a plain checkpoint"):
        T.run(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=1,
              work_dir=str(out), overrides={**SMALL, "backbone_weights": r18}, progress=False)
    assert not marker.exists()


def test_a_planted_checkpoint_runs_no_code_in_grad_cam(finished, tmp_path):
    """cam.load_checkpoint, which gradcam.ipynb calls with its msst_checkpoint parameter."""
    marker = tmp_path / "pwned"
    out = _plant(finished, tmp_path / "evil", marker)
    with pytest.raises(cam.CheckpointError, match="not a plain checkpoint"):
        cam.load_checkpoint(out / "checkpoint.pt")
    assert not marker.exists()
    model, cfg = cam.load_checkpoint(finished / "checkpoint.pt")  # a real one still loads
    assert cfg["model"]["embed_dim"] == 32


def test_planted_backbone_weights_are_refused_in_one_line(tiny, r18, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "r18_evil.pt"
    state = torch.load(r18, weights_only=True)
    torch.save({**state, "x": Planted(marker)}, evil)
    assert T.main(_argv(tiny, str(evil), tmp_path / "o")) == 2
    msg = _one_line_error(capsys)
    assert "--backbone-weights" in msg and "not a plain checkpoint" in msg and not marker.exists()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_a_damaged_checkpoint_is_refused_in_one_line(damage, tiny, r18, finished, tmp_path, capsys):
    out = tmp_path / "damaged"
    out.mkdir()
    data = (finished / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                                         "random": os.urandom(4096)}[damage])
    assert T.main(_argv(tiny, r18, out, "--resume")) == 2
    assert "is unreadable or not a plain checkpoint" in _one_line_error(capsys)


def test_a_checkpoint_is_written_with_plain_types_only(finished, tmp_path):
    """What training writes loads with weights_only=True; anything else is refused before writing."""
    from msstlib import checkpoint

    ckpt = torch.load(finished / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "torch_rng", "run_id", "identity", "log"} <= set(ckpt)
    with pytest.raises(TypeError, match=r"checkpoint\['x'\]: a Planted is not a tensor or a plain type"):
        checkpoint.save({"x": Planted(tmp_path / "m")}, tmp_path / "c.pt")
    assert not list(tmp_path.glob("*c.pt*"))


# --------------------------------------------------------------------------------- bad inputs


def _annotations_with(tiny, tmp_path, change) -> str:
    """A copy of the tiny annotations (same root) with ``change(rows)`` applied to its rows."""
    ann, _ = tiny
    with open(ann, newline="") as f:
        rows = list(csv.DictReader(f))
    change(rows)
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _set(i, key, value):
    def change(rows):
        rows[i][key] = value
    return change


@pytest.mark.parametrize("case, expect", [
    ("label9", "line 6, column 'label': '9' is not a label 0..6"),
    ("label-1", "line 6, column 'label': '-1' is not a label 0..6"),
    ("labelabc", "line 6, column 'label': 'abc' is not a label 0..6"),
    ("fold9", "line 6, column 'fold': '9' is not a fold 1..5"),
    ("escape", "line 6, column 'clip': '../../x' leaves --root"),
    ("missing", "column 'clip': 1 of 70 clip folders are not under --root"),
    ("frames0", "line 6, column 'num_frames': '0' is not a frame count >= 1"),
])
def test_a_bad_row_is_refused_before_training_naming_the_line_and_column(case, expect, tiny, r18, tmp_path,
                                                                          capsys):
    """A label 9 or -1 trained an epoch first; a missing clip folder other than the first failed
    mid-epoch; a fold 9 and a path out of --root were accepted; 'abc' named neither file nor column."""
    change = {"label9": _set(4, "label", "9"), "label-1": _set(4, "label", "-1"),
              "labelabc": _set(4, "label", "abc"), "fold9": _set(4, "fold", "9"),
              "escape": _set(4, "clip", "../../x"), "missing": _set(4, "clip", "Clip/clip_224x224/99999"),
              "frames0": _set(4, "num_frames", "0")}[case]
    bad = _annotations_with(tiny, tmp_path, change)
    out = tmp_path / "o"
    argv = _argv(tiny, r18, out)
    argv[argv.index("--annotations") + 1] = bad
    assert T.main(argv) == 2
    msg = _one_line_error(capsys)
    assert expect in msg and "bad.csv" in msg and "Nothing was written" in msg
    assert not out.exists()


def test_every_problem_is_reported_in_one_pass(tiny, r18, tmp_path, capsys):
    def change(rows):
        rows[3]["label"], rows[9]["fold"], rows[20]["clip"] = "abc", "0", "/etc"
    bad = _annotations_with(tiny, tmp_path, change)
    argv = _argv(tiny, r18, tmp_path / "o", epochs="0")
    argv[argv.index("--annotations") + 1] = bad
    assert T.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 4 bad inputs; nothing was written:")
    for part in ("line 5, column 'label'", "line 11, column 'fold'", "line 22, column 'clip'", "--epochs 0"):
        assert part in err
    assert not (tmp_path / "o").exists()


def test_a_non_utf8_annotations_file_names_its_line(tiny, r18, tmp_path, capsys):
    ann, _ = tiny
    lines = Path(ann).read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b"Happy", b"H\xe4ppy").replace(b"Sad", b"S\xe4d").replace(b"Neutral", b"N\xe4utral")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"\n".join(lines))
    argv = _argv(tiny, r18, tmp_path / "o")
    argv[argv.index("--annotations") + 1] = str(bad)
    assert T.main(argv) == 2
    msg = _one_line_error(capsys)
    assert "latin1.csv, line 8: byte 0xe4" in msg and "not UTF-8" in msg


def test_epochs_zero_is_refused_not_the_presets(tiny, r18, tmp_path, capsys):
    """--epochs 0 trained the preset's 5 epochs and exited 0."""
    assert T.main(_argv(tiny, r18, tmp_path / "o", epochs="0")) == 2
    assert "--epochs 0: train at least 1 epoch" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()
    assert study.main(["--dataset", "synthetic", "--epochs", "0", "--dry-run", "--results", str(tmp_path)]) == 2
    assert "--epochs 0" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file", "unwritable"])
def test_an_out_folder_that_cannot_be_written_is_refused_before_training(where, tiny, r18, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    out = {"under-a-file": tmp_path / "f" / "run", "is-a-file": tmp_path / "f",
           "unwritable": Path("/proc/msstlib-run")}[where]  # /proc takes no new files, even from root
    assert T.main(_argv(tiny, r18, out)) == 2
    msg = _one_line_error(capsys)
    assert "--out" in msg and ("is a file" in msg or "cannot write" in msg)


@pytest.mark.parametrize("argv, expect", [
    (["features", "--size", "0"], "--size 0"),
    (["features", "--size", "-8"], "--size -8"),
    (["features", "--stages", "layer1", "layer2", "layer9"], "--stages layer1 layer2 layer9"),
    (["data", "--size", "0"], "--size 0"),
])
def test_cache_flags_are_checked_before_any_work(argv, expect, tiny, r18, tmp_path, capsys):
    from msstlib import data, features

    ann, root = tiny
    cache = tmp_path / "cache"
    common = ["--annotations", ann, "--root", root, "--cache-dir", str(cache)]
    if argv[0] == "features":
        rest = argv[1:] + (["--size", "64"] if "--size" not in argv else [])
        code = features.main(common + ["--backbone-weights", r18] + rest)
    else:
        code = data.main(["cache"] + common + argv[1:])
    assert code == 2
    assert expect in _one_line_error(capsys)
    assert not cache.exists() or not any(cache.iterdir())  # no *.tmp.npy left behind


def test_pretrain_flags_are_checked_before_any_work(tmp_path, capsys):
    from msstlib import pretrain

    assert pretrain.main(["--out", str(tmp_path / "r.pt"), "--epochs", "0"]) == 2
    assert "--epochs 0" in _one_line_error(capsys) and not list(tmp_path.iterdir())


def test_study_flags_fail_in_one_line(tmp_path, capsys):
    """A YAML tag in --set came out as a 33-line traceback; --folds 9 passed --dry-run."""
    base = ["--dataset", "synthetic", "--dry-run", "--results", str(tmp_path)]
    assert study.main(base + ["--set", "lr=!!python/object/apply:os.system ['true']"]) == 2
    assert "not a plain YAML value" in _one_line_error(capsys)
    assert study.main(base + ["--folds", "9"]) == 2
    assert "--folds 9: DFEW's folds are 1..5" in _one_line_error(capsys)


# ------------------------------------------------------------------------------ one writer


def _train_process(tiny, r18, out, *extra, epochs="2"):
    return subprocess.Popen([sys.executable, "-m", "msstlib.train", *_argv(tiny, r18, out, *extra, epochs=epochs),
                             "--threads", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_of_two_runs_on_one_out_exactly_one_runs_and_its_result_is_on_disk(tiny, r18, tmp_path):
    """Two runs with different configs, 0.5 s apart, on one --out: both exited 0 and result.json
    held the first's result only."""
    out = tmp_path / "shared"
    first = _train_process(tiny, r18, out, "--lr", "0.001")
    time.sleep(0.5)
    second = _train_process(tiny, r18, out, "--lr", "0.002")
    outcomes = [(p.wait(timeout=600), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    winner = 0 if outcomes[0][0] == 0 else 1
    loser_err = outcomes[1 - winner][2]
    assert "is in use" in loser_err and "pid" in loser_err and "Traceback" not in loser_err
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["train"]["lr"] == (0.001, 0.002)[winner]
    assert f"run {result['run_id']}" in outcomes[winner][1]
    assert not (out / files.LOCK_NAME).exists()  # released


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / files.LOCK_NAME
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    said = []
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": time.time(), "token": "a"}))
    with files.FolderLock(folder, "run folder", say=said.append):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "took over a stale lock" in said[0] and f"pid {dead.pid}" in said[0] and not lock.exists()
    # Another host's lock: live while it is touched, stale once it has not been for STALE_S.
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": time.time(), "token": "b"}))
    with pytest.raises(files.LockHeld, match=r"is in use: pid 1 on host elsewhere"):
        files.FolderLock(folder, "run folder").acquire()
    old = time.time() - files.STALE_S - 60
    os.utime(lock, (old, old))
    with files.FolderLock(folder, "run folder", say=said.append):
        pass
    assert "has not been touched" in said[1]
    # Our own live process (this one) holding it: refused.
    with files.FolderLock(folder, "run folder"):
        with pytest.raises(files.LockHeld, match=f"pid {os.getpid()}"):
            files.FolderLock(folder, "run folder").acquire()


def test_a_run_killed_with_sigkill_resumes_bit_identically_through_its_stale_lock(tiny, r18, tmp_path, capsys):
    full = tmp_path / "full"
    assert T.main(_argv(tiny, r18, full, "--threads", "1", epochs="3")) == 0
    out = tmp_path / "killed"
    proc = _train_process(tiny, r18, out, epochs="3")
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no finally runs, the lock stays behind
    proc.wait()
    assert (out / files.LOCK_NAME).exists() and not (out / "result.json").exists()
    capsys.readouterr()
    assert T.main(_argv(tiny, r18, out, "--threads", "1", "--resume", epochs="3")) == 0
    assert "took over a stale lock" in capsys.readouterr().err
    a, b = (json.loads((d / "result.json").read_text()) for d in (full, out))
    assert a["confusion"] == b["confusion"] and a["war"] == b["war"] and a["run_id"] == b["run_id"]
    wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (full, out))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------------- files written and read


def test_no_write_follows_a_link_planted_at_a_temporary_name(tiny, r18, tmp_path):
    """result.json.tmp, checkpoint.pt.tmp and log.tmp were fixed names: a symbolic link planted there
    made the write land outside the folder."""
    out = tmp_path / "run"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("result.json.tmp", "checkpoint.pt.tmp", "log.tmp", "log.csv.tmp"):
        (out / name).symlink_to(outside / name)
    assert T.main(_argv(tiny, r18, out)) == 0
    assert not any(outside.iterdir())
    assert json.loads((out / "result.json").read_text())["epochs"] == 1


def test_damaged_bookkeeping_is_read_with_a_clear_message(tiny, r18, tmp_path, capsys):
    """An empty job.json or a truncated result.json made `study --status` fail with a traceback."""
    args = ["--dataset", "dfew", "--root", tiny[1], "--preset", "cpu", "--backbone-weights", r18,
            "--results", str(tmp_path / "res"), "--work-dir", str(tmp_path / "work"), "--folds", "1"]
    assert study.main(args + ["--dry-run"]) == 0
    folders = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("T")]
    runs = tmp_path / "res" / "runs"
    (runs / folders[0]).mkdir(parents=True)
    (runs / folders[0] / "result.json").write_text('{"war": 0.5, "uar"')  # cut short
    work = tmp_path / "work" / "res" / "runs" / folders[1]
    work.mkdir(parents=True)
    (work / "job.json").write_text("")
    assert study.main(args + ["--status"]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith(folders[0]))
    assert line.split()[1] == "failed" and "is not valid JSON" in line
    assert next(li for li in out.splitlines() if li.startswith(folders[1])).split()[1] == "todo"
    with pytest.raises(files.BadFile, match="is empty"):
        files.read_json(work / "job.json")


def test_the_inputs_module_accepts_what_data_prep_writes(tiny):
    ann, root = tiny
    assert inputs.check_annotations(ann, root, fold=3) == (str(Path(ann)), str(Path(root)))
    assert not inputs.escapes("Clip/clip_224x224/00001") and inputs.escapes("../x") and inputs.escapes("/x")
    assert not inputs.escapes("a/../b") and inputs.escapes("a/../../b")


def test_a_second_study_on_a_results_folder_in_use_is_refused(tiny, r18, tmp_path, capsys, monkeypatch):
    """Two studies on one results folder: the second crashed reading job.json as the first wrote it."""
    results = tmp_path / "res"
    monkeypatch.setattr(study, "run_local", lambda *a, **k: pytest.fail("a refused study must not run rows"))
    args = ["--dataset", "dfew", "--root", tiny[1], "--preset", "cpu", "--backbone-weights", r18,
            "--results", str(results), "--work-dir", str(tmp_path / "work"), "--folds", "1"]
    with files.FolderLock(results, "results folder"):  # the first study, still running
        assert study.main(args) == 2
        msg = _one_line_error(capsys)
        assert f"results folder {results} is in use: pid {os.getpid()}" in msg
    assert not (results / files.LOCK_NAME).exists()


def test_every_torch_load_of_the_project_reads_weights_only():
    """A new torch.load of a user's file goes through msstlib.checkpoint (weights_only=True)."""
    sources = [p for d in ("msstlib", "benchmarks", "notebooks", "data_prep") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".ipynb")]
    found = {p.relative_to(ROOT).as_posix(): p.read_text().count("torch.load(") for p in sources}
    assert {k: v for k, v in found.items() if v} == {"msstlib/checkpoint.py": 2, "msstlib/identity.py": 1}  # (one in its docstring)
    tests = [p for p in (ROOT / "tests").glob("*.py") if p.name != "test_untrusted.py"]
    unsafe = "weights_only=" + "False"  # spelled in two parts so this guard does not match itself
    assert not [p for p in sources + tests if unsafe in p.read_text()]


def test_safe_writes_give_files_the_mode_a_plain_write_would(tmp_path):
    """Every result.json, log.csv, executed notebook and report was 0600 (mkstemp's mode): a results
    folder shared with a group could not be read by it."""
    mask = os.umask(0o022)
    os.umask(mask)
    files.write_text(tmp_path / "a.json", "{}")
    with files.atomic_path(tmp_path / "b.pt") as tmp:
        torch.save({"x": torch.zeros(1)}, tmp)
    for name in ("a.json", "b.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
