"""The feature cache of a frozen backbone: same draws as the frame path, 16-bit close, never stale."""

import json
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch

from msstlib import features as FT
from msstlib import train as T
from msstlib.config import PRESETS, ConfigError
from msstlib.data import ClipDataset, to_model_input
from msstlib.model import build_model

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}


@pytest.fixture(scope="module")
def cached(tiny, r18, tmp_path_factory):
    root = tmp_path_factory.mktemp("fc") / "data"
    shutil.copytree(tiny[1], root)
    ann = root / "prepared" / "annotations.csv"
    index = FT.build(ann, root, r18, 64, progress=False)
    return str(ann), str(root), index


def test_cache_file_layout_and_size(cached, r18):
    ann, root, index = cached
    meta = json.loads(index.read_text())
    store = FT.open_store(ann, root, r18, 64, ("layer1", "layer2", "layer3"))
    frames = meta["offsets"][-1]
    width = 64 * 16 * 16 + 128 * 8 * 8 + 256 * 4 * 4 + 512
    assert store.array.shape == (frames, 2, width) and store.array.dtype == np.float16
    assert FT.needed_bytes(frames, 64, ("layer1", "layer2", "layer3")) == frames * 2 * width * 2


def _both_paths(model, store, ann, root, data, epochs, step):
    """Every ``step``-th clip of fold 1, train (``epochs`` epochs of random frames and flips) and
    test: the model fed from the cache must give the logits, and the label, of the model fed with
    the frames the frame path draws. Yields each (frames, logits) for further checks."""
    wrapped = FT.FeatureInput(model, store.layout).eval()
    for train in (True, False):
        frames = ClipDataset(ann, root, fold=1, train=train, cfg=data, seed=3, raw=True)
        feats = FT.FeatureClipDataset(store, frames)
        for key in [(i, e) for e in range(epochs) for i in range(0, len(frames), step)]:
            x, y = frames[key]
            f, y2 = feats[key]
            with torch.no_grad():
                a, b = model(to_model_input(x)[None]), wrapped(f[None].float())
            assert y == y2, key
            assert (a - b).abs().max() < 2e-2 * max(1.0, a.abs().max()), key
            yield x, a


@pytest.mark.parametrize("variant,depths", [("msstnet", (1, 1, 1)), ("resnet18-mean", (0, 0, 0))])
def test_features_give_the_backbone_path_up_to_16_bit_rounding(cached, r18, variant, depths):
    """Item by item, in training (random frames and flips, three epochs) and testing: the model fed
    from the cache matches the model fed with the frames the frame path draws."""
    ann, root, _ = cached
    cfg = PRESETS["cpu"]
    torch.manual_seed(0)  # the initialisation must not depend on which tests ran before
    model = build_model(cfg.model.replace(embed_dim=32, num_heads=4, depths=depths, variant=variant,
                                          backbone_weights=r18)).eval()
    store = FT.open_store(ann, root, r18, 64, cfg.model.stages)
    data = cfg.data.__class__(**{**cfg.data.__dict__, "frames": 4})
    flips_seen = set()
    for x, a in _both_paths(model, store, ann, root, data, epochs=3, step=7):
        with torch.no_grad():
            unflipped = model(to_model_input(x.flip(-1))[None])
        flips_seen.add(bool((a - unflipped).abs().max() > 0.05))
    assert flips_seen == {True, False} or variant == "resnet18-mean"  # both flip outcomes were exercised


def test_a_training_run_uses_the_cache_and_stays_close_to_the_backbone_path(cached, r18, tmp_path):
    ann, root, _ = cached
    kw = dict(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=2, seed=0,
              progress=False)
    fast = T.run(work_dir=str(tmp_path / "fast"), overrides={**SMALL, "backbone_weights": r18}, **kw)
    slow = T.run(work_dir=str(tmp_path / "slow"), overrides={**SMALL, "backbone_weights": r18,
                                                             "feature_cache": False}, **kw)
    assert fast["input"].startswith("feature cache features_") and slow["input"] == "frames"
    assert fast["cache_residency"] in ("locked", "advised")  # pinned while the run reads it (keep_resident)
    assert fast["run_id"] == slow["run_id"]  # the same run, computed two ways
    la = np.array([r["loss"] for r in torch.load(tmp_path / "fast" / "checkpoint.pt", weights_only=True)["log"]])
    lb = np.array([r["loss"] for r in torch.load(tmp_path / "slow" / "checkpoint.pt", weights_only=True)["log"]])
    np.testing.assert_allclose(la, lb, rtol=1e-2)
    assert abs(fast["war"] - slow["war"]) <= 2 / 14  # 14 test clips: at most two predictions apart


def test_a_stale_cache_is_never_used(cached, r18, tmp_path):
    ann, root, _ = cached
    other = tmp_path / "other.pt"
    state = torch.load(r18, weights_only=True)
    state["conv1.weight"] = state["conv1.weight"] * 1.01
    torch.save(state, other)
    assert FT.open_store(ann, root, other, 64, ("layer1", "layer2", "layer3")) is None  # no cache for these weights
    # The same weights' cache after the dataset changed: stale, with a warning.
    moved = tmp_path / "data"
    shutil.copytree(root, moved)
    ann2 = moved / "prepared" / "annotations.csv"
    ann2.write_text(ann2.read_text().replace(",Happy,", ",happy,", 1))
    with pytest.warns(UserWarning, match="stale"):
        assert FT.open_store(ann2, moved, r18, 64, ("layer1", "layer2", "layer3")) is None


def test_refuses_a_cache_the_disk_cannot_hold(tiny, r18, tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(FT.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    out = tmp_path / "cache"
    status = FT.main(["--annotations", tiny[0], "--root", tiny[1], "--backbone-weights", r18, "--size", "64",
                      "--cache-dir", str(out)])
    assert status == 2
    err = capsys.readouterr().err
    import pandas as pd

    need = FT.needed_bytes(int(pd.read_csv(tiny[0])["num_frames"].sum()), 64, ("layer1", "layer2", "layer3"))
    assert f"needs {need / 1e9:.1f} GB" in err and "0.0 GB free" in err and "--no-feature-cache" in err
    assert not any(out.glob("features_*"))
    with pytest.raises(ConfigError):
        FT.build(tiny[0], tiny[1], r18, 64, cache_dir=out, progress=False)
    assert not out.exists() or not list(out.iterdir())  # nothing half-made: no partial, progress or lock


def _locked_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return 0


def test_keep_resident_pins_a_cache_that_fits_and_leaves_a_large_one_alone(cached, r18):
    from msstlib.data import keep_resident

    ann, root, _ = cached
    store = FT.open_store(ann, root, r18, 64, ("layer1", "layer2", "layer3"))
    assert keep_resident(store.array, max_share=0.0) == "mapped"  # larger than the share: untouched
    before = _locked_kib()
    state = keep_resident(store.array)
    assert state in ("locked", "advised")  # "advised" where ulimit -l forbids pinning this much
    if state == "locked":
        assert _locked_kib() - before >= store.array.nbytes // 1024 - 8
    del store  # the mapping goes, and the pin with it


def test_keep_resident_falls_back_to_read_ahead_when_locking_is_refused(cached, r18, monkeypatch):
    import ctypes

    from msstlib.data import keep_resident

    class NoLock:  # what libc answers under a small ulimit -l
        def __init__(self, *a, **k):
            pass

        def mlock(self, *a):
            return -1

    ann, root, _ = cached
    store = FT.open_store(ann, root, r18, 64, ("layer1", "layer2", "layer3"))
    monkeypatch.setattr(ctypes, "CDLL", NoLock)
    before = _locked_kib()
    assert keep_resident(store.array) == "advised"
    assert _locked_kib() == before


def test_testing_only_after_the_last_epoch_changes_nothing_but_the_curves(tiny, r18, tmp_path):
    """test_every is not part of a run's identity: evaluating the test split must not move any
    random stream the training draws from (dropout on, so the global generator matters)."""
    ann, root = tiny
    kw = dict(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=3, seed=0,
              progress=False)
    over = {**SMALL, "backbone_weights": r18, "dropout": 0.2}
    every = T.run(work_dir=str(tmp_path / "every"), overrides={**over, "test_every": 1}, **kw)
    last = T.run(work_dir=str(tmp_path / "last"), overrides={**over, "test_every": 0}, **kw)
    assert every["run_id"] == last["run_id"]
    assert every["confusion"] == last["confusion"] and every["war"] == last["war"]
    a = torch.load(tmp_path / "every" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "last" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    import pandas as pd

    log_every, log_last = pd.read_csv(tmp_path / "every" / "log.csv"), pd.read_csv(tmp_path / "last" / "log.csv")
    assert log_every["test_war"].notna().all()
    assert log_last["test_war"].isna().tolist() == [True, True, False]
    assert log_every["loss"].tolist() == log_last["loss"].tolist()


def test_a_cache_of_candidate_frames_stores_only_those_and_draws_what_the_frame_path_draws(tiny, r18, tmp_path):
    """DataConfig.candidate_frames = K (issue 29: a DFEW-size cache on a laptop disk): the cache
    holds each clip's K candidate frames only, and the model fed from it matches the model fed with
    the frames the frame path draws among the same candidates."""
    import pandas as pd

    from msstlib import config
    from msstlib.data import candidate_indices

    root = tmp_path / "data"
    shutil.copytree(tiny[1], root)
    ann = root / "prepared" / "annotations.csv"
    stages = PRESETS["cpu"].model.stages
    FT.build(ann, root, r18, 64, progress=False, candidates=8)
    store = FT.open_store(ann, root, r18, 64, stages, candidates=8)
    counts = pd.read_csv(ann)["num_frames"]
    assert counts.max() > 8 and store.array.shape[0] == int(np.minimum(counts, 8).sum())
    assert FT.open_store(ann, root, r18, 64, stages) is None  # the every-frame cache is another file
    assert list(candidate_indices(16, 8)) == [1, 3, 5, 7, 9, 11, 13, 15] and list(candidate_indices(5, 8)) == list(range(5))
    torch.manual_seed(0)
    model = build_model(PRESETS["cpu"].model.replace(embed_dim=32, num_heads=4, backbone_weights=r18)).eval()
    data = PRESETS["cpu"].data.__class__(**{**PRESETS["cpu"].data.__dict__, "frames": 4, "candidate_frames": 8})
    for _ in _both_paths(model, store, ann, root, data, epochs=2, step=5):
        pass
    with pytest.raises(ValueError, match="candidate frames"):
        FT.FeatureClipDataset(store, ClipDataset(ann, root, fold=1, train=True, cfg=PRESETS["cpu"].data, raw=True))
    # A new identity field, in the run id only when set: every committed row keeps its run id.
    model_cfg, train_cfg, data_cfg = config.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={"backbone_weights": r18})
    base = config.identity(model_cfg, train_cfg, data_cfg, dataset="synthetic", fold=1, split=None, seed=0,
                           annotations=str(ann), root=str(root))
    _, _, k16 = config.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={"candidate_frames": 16, "backbone_weights": r18})
    other = config.identity(model_cfg, train_cfg, k16, dataset="synthetic", fold=1, split=None, seed=0, annotations=str(ann),
                            root=str(root))
    assert "candidate_frames" not in json.dumps(base) and config.run_id(base) != config.run_id(other)
    with pytest.raises(ValueError, match="at least 16"):
        config.resolve("cpu", frames=16, depths=(1, 1, 1), overrides={"candidate_frames": 8, "backbone_weights": r18})


def test_the_candidate_frames_comparison_pairs_rows_by_the_grid_and_writes_into_a_new_folder(tmp_path):
    """results/feature-cache/candidate_frames.py: each re-run row against its committed twin (same
    build, configuration, seed); its --out folder is made when missing (it failed there)."""
    import importlib.util
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("candidate_frames", root / "results/feature-cache/candidate_frames.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rerun = tmp_path / "runs"
    rows = sorted((root / "results/synthetic/builds/runs").glob("b01_T04_d*_s0_*"))[:3]
    for d in rows:
        shutil.copytree(d, rerun / d.name)
        path = rerun / d.name / "result.json"
        r = json.loads(path.read_text())
        r["war"] += 0.02  # a K = 16 row 2 points above its committed twin (result.json holds fractions)
        path.write_text(json.dumps(r))
    out = tmp_path / "new" / "folder"
    assert script.main(["--rerun", str(rerun), "--out", str(out)]) == 0
    pairs = pd.read_csv(out / "paired_rows.csv")
    assert len(pairs) == 3 and np.allclose(pairs["d_war"], 2.0) and np.allclose(pairs["d_uar"], 0.0)
    assert (out / "summary.md").is_file()
    # any other re-run with one setting changed (the uint8 cache): its own columns and heading
    assert script.main(["--rerun", str(rerun), "--out", str(tmp_path / "u8"), "--tag", "u8", "--what", "uint8 cache"]) == 0
    assert "war_u8" in pd.read_csv(tmp_path / "u8" / "paired_rows.csv").columns
    assert (tmp_path / "u8" / "summary.md").read_text().startswith("uint8 cache minus the committed rows")
    # two re-runs against each other (both arms on a draw with DFEW's clip lengths): the heading names the baseline
    assert script.main(["--rerun", str(rerun), "--committed", str(root / "results/synthetic/builds/runs"),
                        "--out", str(tmp_path / "len"), "--tag", "k32u8", "--what", "K = 32 in uint8",
                        "--baseline", "every frame in float16"]) == 0
    assert (tmp_path / "len" / "summary.md").read_text().startswith("K = 32 in uint8 minus every frame in float16")


def test_a_uint8_cache_halves_the_bytes_and_gives_the_backbone_path_up_to_its_8_bit_codes(cached, r18, tmp_path):
    """DataConfig.feature_precision = "uint8" (issue 29: DFEW's cache at every frame is 105 GB in
    float16): 8-bit codes with each frame's range per section, half the bytes, decoded to within half
    a step of the float16 cache; the model fed from it still matches the frame path; a new identity
    field, in the run id only when set; and a run that asks for it must read such a cache."""
    from msstlib import config

    ann, root, _ = cached
    stages = PRESETS["cpu"].model.stages
    half = FT.open_store(ann, root, r18, 64, stages)
    assert FT.open_store(ann, root, r18, 64, stages, precision="uint8") is None  # another file, not built yet
    index = FT.build(ann, root, r18, 64, progress=False, precision="uint8")
    codes = FT.open_store(ann, root, r18, 64, stages, precision="uint8")
    assert json.loads(index.read_text())["dtype"] == "uint8" and codes.array.dtype == np.uint8
    assert codes.array.shape == half.array.shape and codes.array.nbytes * 2 == half.array.nbytes
    frames, sections = half.array.shape[0], len(half.layout)
    on_disk = codes.path.stat().st_size + FT.scales_path(codes.path).stat().st_size
    assert abs(on_disk - FT.needed_bytes(frames, 64, stages, "uint8")) < 1024  # the .npy headers
    assert FT.needed_bytes(frames, 64, stages, "uint8") < 0.51 * FT.needed_bytes(frames, 64, stages)
    rows = np.arange(0, frames, 3)
    for flip in (0, 1):
        exact, decoded = half.rows(rows, flip).float(), codes.rows(rows, flip)
        step = torch.from_numpy(codes.scales[rows, flip, :, 1])[:, torch.from_numpy(codes.section_of)]
        assert decoded.dtype == torch.float32 and (step > 0).all()
        # half a step of the 8-bit code, plus the float16 cache's own rounding (11 bits)
        assert ((decoded - exact).abs() <= 0.5 * step + exact.abs() * 2 ** -10 + 1e-6).all()
    assert sections == 4 and codes.scales.shape == (frames, 2, sections, 2)
    torch.manual_seed(0)
    model = build_model(PRESETS["cpu"].model.replace(embed_dim=32, num_heads=4, backbone_weights=r18)).eval()
    data = PRESETS["cpu"].data.__class__(**{**PRESETS["cpu"].data.__dict__, "frames": 4, "feature_precision": "uint8"})
    for _ in _both_paths(model, codes, ann, root, data, epochs=2, step=5):
        pass
    with pytest.raises(ValueError, match="feature_precision"):  # a float16 run cannot read 8-bit codes by mistake
        FT.FeatureClipDataset(codes, ClipDataset(ann, root, fold=1, train=True, cfg=PRESETS["cpu"].data, raw=True))
    model_cfg, train_cfg, data_cfg = config.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={"backbone_weights": r18})
    _, _, u8 = config.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={"feature_precision": "uint8", "backbone_weights": r18})
    ids = [config.identity(model_cfg, train_cfg, d, dataset="synthetic", fold=1, split=None, seed=0, annotations=ann, root=root)
           for d in (data_cfg, u8)]
    assert "feature_precision" not in json.dumps(ids[0]) and config.run_id(ids[0]) != config.run_id(ids[1])
    with pytest.raises(ValueError, match="feature_precision"):
        config.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={"feature_precision": "int4"})
    kw = dict(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=1, seed=0,
              progress=False)
    done = T.run(work_dir=str(tmp_path / "u8"), overrides={**SMALL, "backbone_weights": r18, "feature_precision": "uint8"},
                 **kw)
    assert done["input"].startswith("feature cache features_") and "_u8" in done["input"]
    with pytest.raises(ConfigError, match="--precision uint8"):  # it describes the cache: no cache, no run
        T.run(work_dir=str(tmp_path / "off"), overrides={**SMALL, "backbone_weights": r18, "feature_precision": "uint8",
                                                          "feature_cache": False}, **kw)


_KILLED_BUILD = """
import os, sys
import torch
torch.set_num_threads(int(sys.argv[5]))
from msstlib import features as FT
FT.CHECKPOINT_S = 0.0  # save after every batch
real, calls = FT.to_model_input, [0]
def dying(x):  # one call per batch and flip: die like kill -9 (no cleanup) in the third batch
    calls[0] += 1
    if calls[0] > 5:
        os._exit(9)
    return real(x)
FT.to_model_input = dying
FT.build(sys.argv[1], sys.argv[2], sys.argv[3], 64, cache_dir=sys.argv[4], batch=8, progress=False)
"""


def test_a_killed_build_resumes_where_it_stopped_and_writes_what_an_uninterrupted_one_writes(tiny, r18, tmp_path,
                                                                                              monkeypatch, capsys):
    """At DFEW's size the feature cache takes hours and tens of GB (issue 29): a kill must cost at
    most the last CHECKPOINT_S, and leave no stray file as large as the cache (before: the build
    started again from frame 0 and each kill left a ``.<cache>.*.tmp`` behind)."""
    import subprocess
    import sys

    from msstlib import files

    ann, root = tiny
    whole = FT.build(ann, root, r18, 64, cache_dir=tmp_path / "whole", batch=8, progress=False)
    out = tmp_path / "resumed"
    npy, _ = FT.paths(ann, r18, 64, ("layer1", "layer2", "layer3"), out)
    out.mkdir()
    (out / f".{npy.name}.abc123.tmp").write_bytes(b"\0" * 4096)  # what an older build left when killed
    done = subprocess.run([sys.executable, "-c", _KILLED_BUILD, ann, root, r18, str(out), str(torch.get_num_threads())],
                          capture_output=True, text=True)
    assert done.returncode == 9 and not npy.exists()
    assert "removed 1 temporary file(s)" in done.stderr and not any(out.glob("*.tmp"))
    partial, _, saved = FT._in_progress(npy)
    progress = json.loads(saved.read_text())
    offsets, saved_frames = json.loads(whole.read_text())["offsets"], progress["frames"]
    assert partial.is_file() and 0 < saved_frames == offsets[progress["clips"]] < offsets[-1]
    with files.FolderLock(out, "test", name=f".{npy.name}.lock"):  # another live builder of the same cache
        with pytest.raises(files.LockHeld, match="being built"):
            FT.build(ann, root, r18, 64, cache_dir=out, batch=8, progress=False)
    computed, real = [], FT.to_model_input
    monkeypatch.setattr(FT, "to_model_input", lambda x: computed.append(len(x)) or real(x))
    index = FT.build(ann, root, r18, 64, cache_dir=out, batch=8, progress=False)
    total = offsets[-1]
    assert sum(computed) == 2 * (total - saved_frames)  # only the frames after the last saved batch, each with its flip
    assert np.array_equal(np.load(npy), np.load(whole.with_suffix(".npy")))
    assert json.loads(index.read_text()) == json.loads(whole.read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([npy.name, index.name])  # no partial, progress, lock or stray
    assert "took over a stale lock" in capsys.readouterr().err  # the killed build's
    computed.clear()  # a build with another batch does not mix its batches into a partial of this one
    subprocess.run([sys.executable, "-c", _KILLED_BUILD, ann, root, r18, str(out), str(torch.get_num_threads())])
    FT.build(ann, root, r18, 64, cache_dir=out, batch=16, progress=False)
    assert sum(computed) == 2 * total
    assert np.array_equal(np.load(npy), np.load(whole.with_suffix(".npy")))
