"""Builds as replicates: independent draws, one fixed split, the build grid, dropping caches."""

from dataclasses import replace
from pathlib import Path

import pytest

from msstlib import builds, claims, grid, render, runs, study
from msstlib.pretrain import PretrainConfig


def test_builds_draw_nothing_twice_and_never_the_five_fold_studys_draws():
    data = [builds.Build(k, r).data_seed for r in builds.DATA_SEED for k in (builds.VALIDATION, *builds.CLAIM_BUILDS)]
    pre = [builds.Build(k).pretrain_seed for k in (builds.VALIDATION, *builds.CLAIM_BUILDS)]
    assert len(set(data)) == len(data) and len(set(pre)) == len(pre)
    assert 0 not in data and PretrainConfig().seed not in pre  # the five-fold study's draws
    assert len(builds.CLAIM_BUILDS) >= 8  # the smallest exact sign-flip p is 2 / 2^8 < 0.05
    assert builds.Build(0).name == "val" and builds.Build(3).name == "b03"
    assert builds.Build(3, "dfew-like").backbone() == builds.Build(3).backbone()  # a build's regimes share its backbone
    assert builds.Build(3, "dfew-like").data() != builds.Build(3).data()
    assert builds.Build(3).results().parts[-2:] == ("synthetic", "builds")
    assert builds.Build(0, "dfew-like").results().parts[-2:] == ("synthetic-dfewlike", "validation")
    with pytest.raises(ValueError, match="numbered"):
        builds.Build(-1)


def test_the_build_grid_runs_every_compared_configuration_once_on_the_fixed_split():
    rows = grid.build_grid("synthetic", "b02")
    configs = grid.compared_configs(grid.build_claims())
    assert len(rows) == len(configs) == len({r.name for r in rows})
    assert all(r.name.startswith("b02_T") and r.fold == grid.UNIT_FOLD and r.seed == 0 for r in rows)
    lstm = [r for r in rows if r.variant in ("resnet18-lstm", "me-lstm")]
    assert len(lstm) == 2 and all(r.tag == grid.BUDGET_TAG for r in lstm)
    assert all({k: r.overrides[k] for k in ("lr", "epochs")} == grid.LSTM_BUDGET[r.variant] for r in lstm)
    assert all(r.overrides.get("test_every") == 1 for r in rows if r.frames == 4)
    assert {r.variant for r in rows} >= {"me-lstm", "me-gru", "me-tcn", "me-mean", "resnet18-tcn"}


def test_evaluating_every_epoch_does_not_change_a_rows_identity(tiny, r18, tmp_path):
    s = runs.Study(annotations=tiny[0], root=tiny[1], dataset="synthetic", preset="cpu", results=str(tmp_path),
                    work=str(tmp_path), extra={"backbone_weights": r18})
    row = next(r for r in grid.build_grid("synthetic", "b01") if r.name.startswith("b01_T04_d111_s0"))
    assert s.run_id(row) == s.run_id(replace(row, overrides={}))


def test_build_dry_run_lists_each_builds_rows(tiny, r18, monkeypatch, capsys):
    monkeypatch.setattr(builds.Build, "data", lambda self, work=None: Path(tiny[1]))
    monkeypatch.setattr(builds.Build, "backbone", lambda self, work=None: Path(r18))
    monkeypatch.setattr(study, "run_local", lambda *a, **k: pytest.fail("a dry run must not run rows"))
    assert study.main(["--dataset", "synthetic", "--builds", "1", "2", "--dry-run"]) == 0
    lines = [li for li in capsys.readouterr().out.splitlines() if li.startswith("b0")]
    n = len(grid.build_grid("synthetic", "b01"))
    assert len(lines) == 2 * n and sum(li.startswith("b02_") for li in lines) == n
    assert all(li.split()[1] == "todo" for li in lines)


def test_a_bad_build_number_is_refused_with_exit_2(capsys):
    assert study.main(["--dataset", "synthetic", "--builds", "-1", "--dry-run"]) == 2
    assert "numbered" in capsys.readouterr().err


def test_dropping_a_builds_feature_cache_keeps_frames_checkpoints_and_other_studies_caches(tmp_path):
    from msstlib import features

    annotations = tmp_path / "prepared" / "annotations.csv"
    cache = annotations.parent / "cache"
    cache.mkdir(parents=True)
    weights, stale = tmp_path / "r18.pt", tmp_path / "old.pt"
    weights.write_bytes(b"weights")
    stale.write_bytes(b"an earlier backbone")
    stages = ("layer1", "layer2", "layer3")
    npy, index = features.paths(annotations, weights, 64, stages)  # the names the cache builder gives
    npy.write_bytes(b"x" * 1000)
    index.write_text("{}")
    features.paths(annotations, stale, 64, stages)[0].write_bytes(b"z" * 7)  # a stale backbone's: same kind
    # another study's cache on the same build (K = 32 candidates in uint8): the first drop must keep it
    # (it once removed every features_* file, and the other study built its 5.5 GB cache again)
    k32, k32_index = features.paths(annotations, weights, 64, stages, candidates=32, precision="uint8")
    k32 = [k32, k32_index, features.scales_path(k32)]
    for f in k32:
        f.write_bytes(b"w" * 100)
    assert [features.kind(f.name) for f in k32] == [(32, "uint8")] * 3 and features.kind(npy.name) == (0, "float16")
    partial = cache / f".{npy.name}.partial"  # a running builder's
    partial.write_bytes(b"p")
    (cache / "frames_64px.npy").write_bytes(b"y" * 10)
    (cache / "index_64px.json").write_text("{}")
    keep = ["frames_64px.npy", "index_64px.json", partial.name]
    assert builds.drop_feature_cache(annotations) == 1002 + 7
    assert sorted(p.name for p in cache.iterdir()) == sorted(keep + [f.name for f in k32])
    assert builds.drop_feature_cache(annotations, 32, "float16") == 0  # not the uint8 one
    assert builds.drop_feature_cache(annotations, 32, "uint8") == 300
    assert sorted(p.name for p in cache.iterdir()) == sorted(keep)


@pytest.mark.slow
def test_a_builds_grad_cam_scores_its_own_models_and_gives_one_unit_per_comparison(tiny, tmp_path):
    import shutil

    from msstlib import cam, fixtures

    control, msst = fixtures.demo_checkpoints(tmp_path / "demo", *tiny)
    s = runs.Study(annotations=tiny[0], root=tiny[1], dataset="synthetic", preset="cpu",
                    results=str(tmp_path / "results" / "builds"), work=str(tmp_path / "work"))
    rows = grid.build_grid("synthetic", "b01")
    pick = {("resnet18-gru", (0, 0, 0)): control, ("msstnet", (1, 1, 1)): msst}
    monkey = pytest.MonkeyPatch()
    monkey.setattr(runs.Study, "work_dir", lambda self, row: tmp_path / "work" / row.name)
    try:
        for row in rows:
            key = (row.variant, row.depths)
            if row.frames == 4 and not row.tag and key in pick:
                (tmp_path / "work" / row.name).mkdir(parents=True)
                shutil.copy(pick[key], tmp_path / "work" / row.name / "checkpoint.pt")
        out = render.build_cam(s, rows, builds.Build(1), max_clips=4)
        assert render.build_cam(s, rows, builds.Build(1), max_clips=4) is None  # done: skipped
    finally:
        monkey.undo()
    units = claims.cam_units(out.parent, "default")
    assert len(units) == 6 and set(units["unit"]) == {"b01"}  # 3 within MSSTNet + 3 against the control
    assert units["comparison"].str.contains("T-Former3 out").any() and (units["metric"] == "gradcam_energy").all()
    # A build's copy scores; it draws no figures (b03's, drawn at 100 dpi, was 8.4 MB)
    executed = (out / "gradcam.ipynb").read_text()
    assert "image/png" not in executed and len(executed) < 500_000


def test_a_builds_backbone_is_never_prepared_without_its_seed(tmp_path, monkeypatch):
    """Fault: prepare_synthetic(backbone=...) without pretrain_seed pre-trained with the default seed into
    that path, and pretrain() replaces a backbone whose recorded parameters differ: the validation
    build's backbone would have been overwritten with another draw's weights."""
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    (tmp_path / "syndfer_params.json").write_text("{}")
    (tmp_path / "prepared" / "cache").mkdir(parents=True)
    (tmp_path / "prepared" / "annotations.csv").write_text("")
    (tmp_path / "prepared" / "cache" / "index_64px.json").write_text("{}")
    with pytest.raises(ValueError, match="pretrain_seed"):
        builds.prepare_synthetic(tmp_path, 10, quick=False, backbone=tmp_path / "bb.pt")
    assert not calls
    builds.prepare_synthetic(tmp_path, 10, quick=False, backbone=tmp_path / "bb.pt", pretrain_seed=7)
    assert ["--seed", "7"] == calls[0][calls[0].index("--seed"):][:2]
    assert any("msstlib.features" in c for c in calls)
    calls.clear()  # features=False (a build whose rows have landed): the backbone is checked, no cache made
    builds.prepare_synthetic(tmp_path, 10, quick=False, backbone=tmp_path / "bb.pt", pretrain_seed=7, features=False)
    assert [c for c in calls if "msstlib.pretrain" in c] and not [c for c in calls if "msstlib.features" in c]


def test_a_build_run_prepares_runs_scores_drops_its_cache_and_renders(tiny, r18, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(tiny[1], data)
    cache = data / "prepared" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "features_ab12_64px_layer1-layer2-layer3.npy").write_bytes(b"z" * 100)
    monkeypatch.setattr(builds.Build, "data", lambda self, work=None: data)
    monkeypatch.setattr(builds.Build, "backbone", lambda self, work=None: Path(r18))
    monkeypatch.setattr(builds.Build, "scratch", lambda self, work=None: tmp_path / "work")
    monkeypatch.setattr(builds.Build, "results", lambda self, *a: tmp_path / "results" / "synthetic" / "builds")
    # the build folder (its lock) too: never the clone's build/, where a real build may be running
    monkeypatch.setattr(builds.Build, "folder", lambda self, work=None: tmp_path / "build" / self.name)
    prepared, ran, scored, rendered = [], [], [], []
    monkeypatch.setattr(builds.Build, "prepare", lambda self, work=None, candidate_frames=0, features=True, feature_precision="float16":
                        prepared.append((self.name, features)) or (str(data / "prepared" / "annotations.csv"), str(data)))

    def fake_run(rows, s, jobs):
        for row in rows:
            s.result_dir(row).mkdir(parents=True)
            (s.result_dir(row) / "result.json").write_text("{}")
            ran.append(row.name)
        return [(s.folder(r), None) for r in rows]

    monkeypatch.setattr(study, "run_local", fake_run)
    monkeypatch.setattr(study, "build_cam", lambda s, rows, b: scored.append(b.name))
    monkeypatch.setattr(study, "render_tables", lambda results, dataset: rendered.append(results))
    assert study.main(["--dataset", "synthetic", "--builds", "1", "--frames", "4", "--drop-caches"]) == 0
    assert prepared == [("b01", True)] and scored == ["b01"] and len(rendered) == 1
    assert ran and all(n.startswith("b01_T04_") for n in ran)
    assert not (cache / "features_ab12_64px_layer1-layer2-layer3.npy").exists()  # all rows landed: the feature cache went
    assert "feature cache removed" in capsys.readouterr().out
    # again: nothing left to run, and (fault: it was built again, 17 min and 5.5 GB for nothing) no
    # feature cache prepared for rows that have all landed
    ran.clear()
    assert study.main(["--dataset", "synthetic", "--builds", "1", "--frames", "4"]) == 0 and not ran
    assert prepared[1:] == [("b01", False)]


def test_a_build_drawn_with_other_clip_lengths_is_data_of_its_own(tmp_path, monkeypatch, capsys):
    """issue 29: what K = 32 candidate frames cost needs DFEW's clip lengths (mean 77), not SynDFER's
    (mean 28). Such a draw keeps the build's seeds and backbone but never its data, checkpoints or
    results folder, and its lengths reach the generator."""
    import subprocess

    long = builds.Build(1, lengths=(11, 143))
    assert long.data_seed == builds.Build(1).data_seed and long.backbone() == builds.Build(1).backbone()
    assert long.data() != builds.Build(1).data() and long.scratch() != builds.Build(1).scratch()
    assert long.data().name == "syndfer-len11-143"
    with pytest.raises(builds.config.ConfigError, match="clip-lengths 20 10"):
        builds.Build(1, lengths=(20, 10))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    builds.prepare_synthetic(tmp_path, 10, quick=False, pretrain=False, lengths=(11, 143))
    synth = next(c for c in calls if "data_prep.synthetic" in c)
    assert synth[synth.index("--min-frames"):][:4] == ["--min-frames", "11", "--max-frames", "143"]
    calls.clear()
    builds.prepare_synthetic(tmp_path / "plain", 10, quick=False, pretrain=False)
    assert "--min-frames" not in next(c for c in calls if "data_prep.synthetic" in c)
    # the CLI: only with --builds, and only into a results folder of its own (exit 2, one line)
    for argv in (["--clip-lengths", "11", "143"], ["--builds", "1", "--clip-lengths", "11", "143"]):
        assert study.main(["--dataset", "synthetic", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --clip-lengths") and len(err.strip().splitlines()) == 1
    assert "--results-root" in err
