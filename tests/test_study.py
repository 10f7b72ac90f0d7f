"""The batch runner: the grid, skipping finished rows, recording failures, one real papermill row."""

import json
from pathlib import Path

import pytest

from msstlib import study
from msstlib.model import table1_variants


def test_grid_covers_table1_plus_noise_and_order_rows():
    rows = study.grid("synthetic", folds=[1, 2])
    assert len(rows) == 2 * (len(table1_variants()) + 3)
    names = [r.name for r in rows]
    assert len(set(names)) == len(names)
    fold1 = [r for r in rows if r.fold == 1]
    assert sum(r.variant == "resnet18-mean" for r in fold1) == 1
    assert {r.depths for r in fold1 if r.frames == 4 and max(r.depths) <= 1 and r.seed == 0 and not r.tag} == {
        (a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    assert {(r.frames, r.depths) for r in fold1 if r.depths in ((1, 1, 1), (2, 2, 2), (3, 3, 3))} >= {
        (t, (d, d, d)) for t in (4, 8, 12, 16) for d in (1, 2, 3)}
    assert sorted(r.seed for r in fold1 if r.frames == 4 and r.depths == (1, 1, 1) and r.tag != "no-pos-embed") == [0, 1, 2]
    assert [r.overrides for r in fold1 if r.tag == "no-pos-embed"] == [{"temporal_pos_embed": False}]
    ferv = study.grid("ferv39k")
    assert all(r.fold is None and r.split == "train" for r in ferv)
    assert len(study.grid("synthetic", quick=True)) == 4
    sgd = [r for r in study.grid("synthetic", sgd_rows=True) if r.tag.startswith("sgd")]
    assert [r.overrides["optimizer"] for r in sgd] == ["sgd"] * 3 and sgd[1].overrides["warmup_epochs"] == 1
    assert all(r.probe for r in sgd) and not any(r.probe for r in study.grid("synthetic"))


def test_dry_run_lists_rows_without_running(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "run_row", lambda *a, **k: pytest.fail("dry run must not run rows"))
    assert study.main(["--dataset", "synthetic", "--dry-run", "--folds", "1", "3", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "52 rows" in out  # 2 folds x (20 Table 1 rows + no-pos-embed + 2 seeds + 3 SGD probes) and "T16_d333_s0_fold3" in out and "todo" in out


def _fake_dataset(tmp_path):
    ann = tmp_path / "data" / "prepared" / "annotations.csv"
    ann.parent.mkdir(parents=True)
    ann.write_text("clip,num_frames,label,emotion,fold\n")
    return ann


def test_finished_rows_are_skipped_and_failures_recorded(tmp_path, monkeypatch):
    import papermill

    results = tmp_path / "res"
    rows = study.grid("dfew", folds=[1])
    done = rows[0]
    (results / "runs" / done.name).mkdir(parents=True)
    (results / "runs" / done.name / "result.json").write_text("{}")
    executed = []

    def fake_execute(src, dst, parameters, **kw):
        executed.append(Path(dst).parent.name)
        if parameters["frames"] == 16 and parameters["depths"] == [3, 3, 3]:
            raise RuntimeError("boom in a cell")
        if Path(src).name == "train_eval.ipynb":
            Path(parameters["result_dir"], "result.json").write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    ann = _fake_dataset(tmp_path)
    status = study.main(["--dataset", "dfew", "--root", str(ann.parent.parent), "--results", str(results)])
    assert status == 1  # one row failed
    assert done.name not in executed  # skipped: its result exists
    failed = results / "runs" / "T16_d333_s0_fold1"
    assert "boom in a cell" in (failed / "error.txt").read_text()
    assert not (failed / "result.json").exists()
    assert len([r for r in rows if (results / "runs" / r.name / "result.json").exists()]) == len(rows) - 1
    # Rerun: only the failed row executes again; now it succeeds and the exit status is 0.
    executed.clear()
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda src, dst, parameters, **kw: executed.append(Path(dst).parent.name) or (
                            Path(src).name == "train_eval.ipynb"
                            and Path(parameters["result_dir"], "result.json").write_text("{}")))
    assert study.main(["--dataset", "dfew", "--root", str(ann.parent.parent), "--results", str(results)]) == 0
    assert executed == ["T16_d333_s0_fold1", "res"]  # the failed row, then tables.ipynb
    assert not (failed / "error.txt").exists()


def test_real_datasets_need_a_root(capsys):
    with pytest.raises(SystemExit):
        study.main(["--dataset", "dfew"])
    assert "--root is required" in capsys.readouterr().err


@pytest.mark.slow
def test_one_row_through_papermill(tmp_path):
    ann, root = study.tiny_synthetic(tmp_path / "data")
    row = study.Row("synthetic", 1, None, 4, (1, 0, 1), "msstnet")
    _, error = study.run_row(row, annotations=ann, root=root, preset="cpu", results=tmp_path / "res",
                             build=tmp_path / "build", epochs=1, threads=1,
                             extra={"embed_dim": 32, "num_heads": 4})
    assert error is None
    out = tmp_path / "res" / "runs" / row.name
    result = json.loads((out / "result.json").read_text())
    assert result["depths"] == [1, 0, 1] and result["config"]["model"]["embed_dim"] == 32
    assert (out / "train_eval.ipynb").exists() and (out / "log.csv").exists()
    assert (tmp_path / "build" / "runs" / row.name / "checkpoint.pt").exists()


def test_a_diverging_probe_is_an_outcome_but_a_diverging_table_row_is_a_failure(tmp_path, monkeypatch):
    import papermill

    def diverge(src, dst, parameters, **kw):
        if Path(src).name == "train_eval.ipynb":
            Path(parameters["result_dir"], "diverged.json").write_text("{}")
            raise RuntimeError("FloatingPointError: loss became nan")

    monkeypatch.setattr(papermill, "execute_notebook", diverge)
    kw = dict(annotations="a", root="r", preset="cpu", results=tmp_path, build=tmp_path / "b", epochs=1, threads=1,
              extra={})
    probe = [r for r in study.grid("synthetic", sgd_rows=True) if r.probe][0]
    assert study.run_row(probe, **kw) == (probe, None)
    assert study.run_row(probe, **kw) == (probe, None)  # recorded: skipped on a rerun
    table_row = study.grid("synthetic")[0]
    _, error = study.run_row(table_row, **kw)
    assert error is not None and "nan" in error
