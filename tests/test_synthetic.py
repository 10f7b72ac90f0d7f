"""SynDFER (data_prep.synthetic): DFEW layout, determinism, imbalance, masks, and the benchmark's
premise that one frame is ambiguous while the movement over time is not."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import synthetic as syn
from data_prep.syndfer_render import MASK_EXPRESSION, MASK_TALKING, render_clip
from msstlib.labels import EMOTIONS

CLIPS = 70
SPLITS = "EmoLabel_DataSplit"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return syn.generate(tmp_path_factory.mktemp("syn") / "root", syn.SynDFERConfig(size=64),
                        clips=CLIPS, seed=7, jobs=2, verbose=False)


def read_split(root: Path, part: str, k: int) -> tuple[list[str], list[list[str]]]:
    with open(root / SPLITS / f"{part}(single-labeled)" / f"set_{k}.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def read_meta(root: Path) -> list[dict[str, str]]:
    with open(root / "syndfer_meta.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_layout_matches_dfew(dataset):
    clip_dir = dataset / "Clip" / "clip_224x224"
    ids = sorted(p.name for p in clip_dir.iterdir())
    assert ids == [f"{i:05d}" for i in range(1, CLIPS + 1)]
    meta = {int(r["video_name"]): r for r in read_meta(dataset)}
    for cid in ids[:10]:
        names = sorted(p.name for p in (clip_dir / cid).iterdir())
        n = int(meta[int(cid)]["num_frames"])
        assert sorted(names) == sorted(f"{k}.jpg" for k in range(1, n + 1))
        with Image.open(clip_dir / cid / "1.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))

    tests = {}
    for k in range(1, 6):
        header, rows = read_split(dataset, "test", k)
        assert header == ["video_name", "label"]
        assert all(re.fullmatch(r"[1-9]\d*", v) for v, _ in rows), "video_name: integer, no padding"
        assert {int(lab) for _, lab in rows} <= set(range(1, 8))
        tests[k] = {int(v): int(lab) for v, lab in rows}
        # stratified: every class in every test fold
        assert set(tests[k].values()) == set(range(1, 8))
    every = [v for k in tests for v in tests[k]]
    assert len(every) == len(set(every)) == CLIPS, "test folds must be disjoint and cover all"
    sizes = [len(t) for t in tests.values()]
    assert max(sizes) - min(sizes) <= 1
    labels = {v: lab for t in tests.values() for v, lab in t.items()}
    for k in range(1, 6):
        header, rows = read_split(dataset, "train", k)
        assert header == ["video_name", "label"]
        train = {int(v): int(lab) for v, lab in rows}
        assert set(train) == set(labels) - set(tests[k])
        assert all(labels[v] == lab for v, lab in train.items())
    for v, r in meta.items():  # meta uses canonical 0..6 labels and names the test fold
        assert int(r["label"]) + 1 == labels[v] and r["emotion"] == EMOTIONS[int(r["label"])]
        assert v in tests[int(r["fold"])]


def test_dfew_preparation_reads_it(dataset, tmp_path):
    dfew = pytest.importorskip("data_prep.dfew")
    assert dfew.main(["--root", str(dataset), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "annotations.csv", newline="") as f:
        ann = {r["clip"]: r for r in csv.DictReader(f)}
    meta = read_meta(dataset)
    assert len(ann) == CLIPS
    for r in meta:
        a = ann[r["clip"]]
        assert (a["num_frames"], a["label"], a["fold"]) == (r["num_frames"], r["label"], r["fold"])


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    again = syn.generate(tmp_path / "again", syn.SynDFERConfig(size=64), clips=CLIPS, seed=7,
                         jobs=1, verbose=False)
    a, b = all_files(dataset), all_files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = all_files(syn.generate(tmp_path / "other", syn.SynDFERConfig(size=64), clips=CLIPS,
                                   seed=8, jobs=1, verbose=False))
    assert sum(a[k] != other.get(k) for k in a) > len(a) // 2


def test_imbalance_like_dfew(dataset):
    counts = np.bincount([int(r["label"]) for r in read_meta(dataset)], minlength=7)
    assert counts[EMOTIONS.index("Disgust")] == counts.min() >= 5
    big = syn.class_counts(3200)
    assert big.sum() == 3200 and np.argmin(big) == EMOTIONS.index("Disgust")
    assert np.sort(big)[1] > 2 * big.min()  # Disgust clearly the rarest
    share = np.array(syn.DFEW_COUNTS) / sum(syn.DFEW_COUNTS)
    assert np.abs(big / 3200 - share).max() < 0.002


def test_clip_lengths_vary_and_include_short_clips(dataset):
    n = np.array([int(r["num_frames"]) for r in read_meta(dataset)])
    assert n.min() >= 8 and n.max() <= 47 and (n < 16).any() and n.std() > 5
    motions = syn.dataset_motions(syn.SynDFERConfig(), clips=1000, seed=0)
    n = np.array([m.num_frames for m in motions])
    assert 25 < n.mean() < 31 and 0.04 < np.mean(n < 16) < 0.2


def test_masks_mark_expression_frames_only(dataset):
    meta = read_meta(dataset)
    checked_neutral = 0
    for r in meta:
        with np.load(dataset / "Masks" / f"{int(r['video_name']):05d}.npz") as z:
            mask, au, env = z["mask"], z["au"], z["envelope"]
        n = int(r["num_frames"])
        assert mask.shape == (n, 64, 64) and mask.dtype == np.uint8
        assert au.shape == (n, 8) and env.shape == (n,)
        expr = (mask & MASK_EXPRESSION).reshape(n, -1).any(1)
        talk = (mask & MASK_TALKING).any()
        assert talk == (r["talking"] == "1")
        if r["emotion"] == "Neutral":
            assert not expr.any()
            if r["talking"] == "0":
                assert not mask.any()
                checked_neutral += 1
        else:
            onset, offset = int(r["onset"]), int(r["offset"])
            assert 1 <= onset <= int(r["apex"]) <= offset <= n
            frames = np.arange(1, n + 1)
            assert (expr == ((frames >= onset) & (frames <= offset))).all()
            assert (mask[expr] & MASK_EXPRESSION).reshape(-1, 64 * 64).mean(1).max() < 0.35
    assert checked_neutral > 0


def test_masks_cover_what_changes_in_the_picture():
    """Without nuisance, the pixels that change between rest and apex lie inside the mask."""
    cfg = syn.SynDFERConfig(noise=0, jitter=0, head_drift=0, flicker=0, drift=0, talking_prob=0,
                            blink_rate=0, burst_share=0, lead_range=(0.2, 0.3))
    for label in range(7):
        if label == EMOTIONS.index("Neutral"):
            continue
        inside = []
        for index in range(6):
            m = syn.clip_motion(index, label, cfg, seed=3)
            frames, mask = render_clip(m, 64)
            apex = syn.expression_timing(m)[1] - 1
            changed = np.abs(frames[apex].astype(int) - frames[0].astype(int)).max(-1) > 10
            region = (mask[apex] & MASK_EXPRESSION) > 0
            grown = region.copy()  # 2-pixel margin: the feature also left where it was
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    grown |= np.roll(region, (dy, dx), (0, 1))
            assert changed.sum() > 20, f"{EMOTIONS[label]}: the expression should be visible"
            inside.append(changed[grown].sum() / changed.sum())
        assert np.mean(inside) > 0.95, (EMOTIONS[label], inside)


def _accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    half = len(y) // 2
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    model.fit(x[:half], y[:half])
    return float(np.mean(model.predict(x[half:]) == y[half:]))


def _one_frame_vs_sequence(cfg: syn.SynDFERConfig, clips: int = 1500, frames: int = 8):
    motions = syn.dataset_motions(cfg, clips=clips, seed=1)
    y = np.array([m.label for m in motions])
    one = np.array([m.au[m.num_frames // 2] for m in motions])

    def sequence(m):  # segment centres in order, plus how much each dimension moves
        s = m.au[np.floor((np.arange(frames) + 0.5) * m.num_frames / frames).astype(int)]
        return np.concatenate([s.ravel(), s.std(0), np.ptp(s, axis=0)])

    return _accuracy(one, y), _accuracy(np.array([sequence(m) for m in motions]), y)


def test_one_frame_is_ambiguous_the_trajectory_is_not():
    one, seq = _one_frame_vs_sequence(syn.SynDFERConfig())
    assert one < 0.45
    assert seq - one > 0.2, (one, seq)


def test_resting_face_range_is_the_ambiguity_knob():
    one_wide, _ = _one_frame_vs_sequence(syn.SynDFERConfig(rest_range=1.5), clips=1000)
    one_fixed, _ = _one_frame_vs_sequence(syn.SynDFERConfig(rest_range=0.0), clips=1000)
    assert one_fixed > one_wide + 0.15, (one_wide, one_fixed)


def test_mirror_pairs_differ_only_in_the_order_of_frames():
    """Happy from s to s + change holds, as a set, the frames of Sad from s + change to s."""
    cfg = syn.SynDFERConfig(drift=0, talking_prob=0, burst_share=0)
    happy, sad = EMOTIONS.index("Happy"), EMOTIONS.index("Sad")
    ranges = {c: np.array([np.ptp(syn.clip_motion(i, c, cfg, 0).au, 0) for i in range(300)])
              for c in (happy, sad)}
    values = {c: np.concatenate([syn.clip_motion(i, c, cfg, 0).au for i in range(300)])
              for c in (happy, sad)}
    # the same muscles move by the same amounts, over the same range of values ...
    assert np.abs(ranges[happy].mean(0) - ranges[sad].mean(0)).max() < 0.05
    assert np.abs(values[happy].mean(0) - values[sad].mean(0)).max() < 0.1
    # ... but in opposite directions over time
    delta = {c: np.array([(m.au[-1] - m.au[0])[4] for m in
                          (syn.clip_motion(i, c, cfg, 0) for i in range(100))]) for c in ranges}
    assert (delta[happy] > 0.3).mean() > 0.9 and (delta[sad] < -0.3).mean() > 0.9


def test_bad_arguments_exit_with_status_2(tmp_path, capsys):
    for args, message in ((["--clips", "20"], "at least 35"), (["--size", "8"], "size"),
                          (["--seed", "-1"], "seed"), (["--burst-share", "1.5"], "burst_share")):
        with pytest.raises(SystemExit) as exc:
            syn.main(["--out", str(tmp_path / "x"), *args])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        syn.main(["--out", str(tmp_path / "busy"), "--clips", "35", "--force"])
    assert exc.value.code == 2 and "not overwriting" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "x").exists()


def test_existing_dataset_needs_force(tmp_path):
    out = syn.generate(tmp_path / "d", clips=35, seed=0, jobs=1, verbose=False)
    with pytest.raises(FileExistsError, match="--force"):
        syn.generate(out, clips=35, seed=1, jobs=1, verbose=False)
    syn.generate(out, clips=40, seed=1, jobs=1, force=True, verbose=False)
    assert len(read_meta(out)) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no leftovers


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []

    def failing(motion, size):
        calls.append(motion.index)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return render_clip(motion, size)

    monkeypatch.setattr(syn, "render_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        syn.generate(tmp_path / "d", clips=35, seed=0, jobs=1, verbose=False)
    assert not (tmp_path / "d").exists()
    monkeypatch.undo()
    out = syn.generate(tmp_path / "d", clips=35, seed=0, jobs=1, verbose=False)
    assert len(read_meta(out)) == 35
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_cli_writes_params_and_summary(tmp_path, capsys):
    assert syn.main(["--out", str(tmp_path / "d"), "--clips", "35", "--seed", "3", "--jobs", "1",
                     "--size", "48", "--gain", "0.8", "--lead-range", "0.1", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "35 clips" in out and "clips/s" in out and "shorter than 16" in out
    import json
    params = json.loads((tmp_path / "d" / "syndfer_params.json").read_text())
    assert params["seed"] == 3 and params["clips"] == 35
    assert params["config"]["size"] == 48 and params["config"]["gain"] == 0.8
    assert params["config"]["lead_range"] == [0.1, 0.3]
    with Image.open(next((tmp_path / "d" / "Clip" / "clip_224x224" / "00001").iterdir())) as im:
        assert im.size == (48, 48)


def test_dfew_like_regime_lets_one_frame_carry_the_class():
    """DESIGN.md §9: in the DFEW-like regime a single frame carries most of the signal; in the
    default regime it does not (the sequence is still at least as good in both)."""
    one_default, seq_default = _one_frame_vs_sequence(syn.regime_config("default"), clips=1000)
    one_dfew, seq_dfew = _one_frame_vs_sequence(syn.regime_config("dfew-like"), clips=1000)
    # measured (1,000 clips, the middle frame, a linear model): 0.27 vs 0.42; ratios 0.33 vs 0.53
    assert one_dfew > one_default + 0.1, (one_default, one_dfew)
    assert one_dfew / seq_dfew > 0.45 > one_default / seq_default, (one_dfew, seq_dfew, one_default, seq_default)
    with pytest.raises(ValueError, match="unknown SynDFER regime"):
        syn.regime_config("dfew")
    with pytest.raises(ValueError, match="rest_anchor"):
        syn.SynDFERConfig(rest_anchor=1.5)


def test_default_params_keep_their_bytes_and_regime_flags_can_be_changed(tmp_path):
    """A field added later (rest_anchor) is recorded only when changed: a default draw writes the same
    syndfer_params.json as before it existed, so the committed runs keep their identity."""
    import json

    assert syn.main(["--out", str(tmp_path / "d"), "--clips", "35", "--jobs", "1"]) == 0
    config = json.loads((tmp_path / "d" / "syndfer_params.json").read_text())["config"]
    assert "rest_anchor" not in config and config["rest_range"] == 0.7
    assert syn.main(["--out", str(tmp_path / "l"), "--clips", "35", "--jobs", "1", "--regime", "dfew-like"]) == 0
    assert json.loads((tmp_path / "l" / "syndfer_params.json").read_text())["config"]["rest_anchor"] == 1.0
    assert syn.main(["--out", str(tmp_path / "m"), "--clips", "35", "--jobs", "1", "--regime", "dfew-like",
                     "--rest-anchor", "0.5"]) == 0  # a flag beats the regime's value
    assert json.loads((tmp_path / "m" / "syndfer_params.json").read_text())["config"]["rest_anchor"] == 0.5


def test_every_regime_is_read_back_from_its_recorded_settings():
    """A draw's syndfer_params.json names its regime: each regime's settings are told apart from the
    others' (the calibrated regime is the DFEW-like one with two more changes), and a draw with other
    settings has none."""
    import dataclasses

    for name in syn.REGIMES:
        recorded = syn.params_config(syn.regime_config(name))
        assert syn.recorded_regime(recorded) == name, name
    assert syn.REGIMES["dfew-calibrated"] == {**syn.REGIMES["dfew-like"], "burst_share": 0.1, "gain": 2.0}
    other = dataclasses.asdict(syn.regime_config("dfew-like", gain=2.0))  # half of the calibration
    assert syn.recorded_regime(other) is None
