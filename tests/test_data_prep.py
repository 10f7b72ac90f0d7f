"""Tests of the real-dataset preparation commands `data_prep.dfew` and `data_prep.ferv39k`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fixtures_layouts import (dfew_split, ferv39k_split, jpeg_bytes, make_dfew, make_ferv39k,
                              write_frames)

from data_prep import dfew, ferv39k
from data_prep.common import list_frames, natural_key

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dfew_root(tmp_path):
    root = tmp_path / "DFEW"
    return root, make_dfew(root)


@pytest.fixture
def ferv_root(tmp_path):
    root = tmp_path / "FERV39k"
    return root, make_ferv39k(root)


def run(module, root, out, *extra):
    return module.main(["--root", str(root), "--out", str(out), *extra])


def assert_rejected(capsys, module, root, out, *needles, extra=()):
    """The command exits 2, writes nothing, and its stderr names every needle."""
    status = run(module, root, out, *extra)
    err = capsys.readouterr().err
    assert status == 2, err
    assert not (out / "annotations.csv").exists()
    assert not out.exists() or not any(out.iterdir()), "no temporary file may be left behind"
    for needle in needles:
        assert str(needle) in err, f"{needle!r} not in:\n{err}"
    return err


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture changed: {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------- frames


def test_list_frames_natural_order_and_filter(tmp_path):
    for name in ["10.jpg", "2.jpg", "1.JPG", "frame3.png", "a.jpeg", "notes.txt", "._2.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "11.jpg").mkdir()  # a folder is never a frame
    assert [p.name for p in list_frames(tmp_path)] == [
        "1.JPG", "2.jpg", "10.jpg", "a.jpeg", "frame3.png"]
    assert sorted(["img10", "img2", "img1"], key=natural_key) == ["img1", "img2", "img10"]


# ---------------------------------------------------------------- round trips


def test_dfew_round_trip(dfew_root, tmp_path, capsys):
    root, expected = dfew_root
    assert run(dfew, root, tmp_path / "out") == 0
    got = pd.read_csv(tmp_path / "out" / "annotations.csv")
    assert list(got.columns) == ["clip", "num_frames", "label", "emotion", "fold"]
    pd.testing.assert_frame_equal(got, expected, check_like=True)
    assert (got["num_frames"] < 16).any(), "short clips are kept"
    out = capsys.readouterr().out
    assert "fold 1" in out and "published" in out and "2341" in out and "11697" in out


def test_ferv39k_round_trip(ferv_root, tmp_path, capsys):
    root, expected = ferv_root
    assert run(ferv39k, root, tmp_path / "out") == 0
    got = pd.read_csv(tmp_path / "out" / "annotations.csv", dtype={"clip": str})
    assert list(got.columns) == ["clip", "num_frames", "label", "emotion", "split", "scene"]
    pd.testing.assert_frame_equal(got, expected)
    out = capsys.readouterr().out
    assert "published train" in out and "31088" in out and "7847" in out


def test_dfew_subprocess_success_and_failure(dfew_root, tmp_path):
    root, expected = dfew_root
    cmd = [sys.executable, "-m", "data_prep.dfew", "--root", str(root), "--out"]
    ok = subprocess.run([*cmd, str(tmp_path / "ok")], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(pd.read_csv(tmp_path / "ok" / "annotations.csv")) == len(expected)
    assert "Happy" in ok.stdout

    shutil.rmtree(root / "Clip" / "clip_224x224" / "00017")
    bad = subprocess.run([*cmd, str(tmp_path / "bad")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "00017" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad" / "annotations.csv").exists()


def test_failure_keeps_previous_output(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotations.csv").write_text("previous\n")
    (dfew_split(root, "test", 1)).unlink()
    assert run(dfew, root, out) == 2
    assert (out / "annotations.csv").read_text() == "previous\n"
    assert [p.name for p in out.iterdir()] == ["annotations.csv"]


# ---------------------------------------------------------------- DFEW problems


def test_missing_root(tmp_path, capsys):
    assert_rejected(capsys, dfew, tmp_path / "nowhere", tmp_path / "out", tmp_path / "nowhere")
    assert_rejected(capsys, ferv39k, tmp_path / "nowhere", tmp_path / "out", "nowhere")


def test_dfew_missing_split_file(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    path = dfew_split(root, "train", 3)
    path.unlink()
    assert_rejected(capsys, dfew, root, tmp_path / "out", path, "split file missing")


def test_dfew_missing_frames_folder(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    shutil.rmtree(root / "Clip")
    err = assert_rejected(capsys, dfew, root, tmp_path / "out", "clip_224x224", "frames folder")
    assert err.count("\n") < 5, "one problem, not one per clip"


def test_dfew_split_file_without_clips(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    header_only, blank = dfew_split(root, "test", 4), dfew_split(root, "train", 1)
    header_only.write_text("video_name,label\n")
    blank.write_text("\n \n")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{header_only}: split file lists no",
                    f"{blank}: split file is empty")


def test_dfew_wrong_header(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    path = dfew_split(root, "test", 2)
    edit(path, "video_name,label", "video,emotion")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{path}:1", "video_name,label")


def test_dfew_malformed_line(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    path = dfew_split(root, "test", 1)  # lines: header, 1,1 and 1000,6
    edit(path, "1000,6", "1000;6")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{path}:3", "malformed")


@pytest.mark.parametrize("bad", ["0", "8", "x"])
def test_dfew_label_out_of_range(dfew_root, tmp_path, capsys, bad):
    root, _ = dfew_root
    path = dfew_split(root, "test", 1)
    edit(path, "1000,6", f"1000,{bad}")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{path}:3", "1-7", "01000")


def test_dfew_listed_clip_without_folder(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    shutil.rmtree(root / "Clip" / "clip_224x224" / "04321")
    assert_rejected(capsys, dfew, root, tmp_path / "out", root / "Clip/clip_224x224/04321",
                    "folder missing", f"{dfew_split(root, 'test', 2)}:3")


def test_dfew_empty_folder(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    folder = root / "Clip" / "clip_224x224" / "00999"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames here")
    assert_rejected(capsys, dfew, root, tmp_path / "out", folder, "no frames")


def test_dfew_duplicate_in_file(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    path = dfew_split(root, "test", 1)
    path.write_text(path.read_text() + "1,1\n")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{path}:4", "00001", "twice")


def test_dfew_clip_in_two_test_folds(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    path = dfew_split(root, "test", 3)
    path.write_text(path.read_text() + "1,1\n")
    assert_rejected(capsys, dfew, root, tmp_path / "out", f"{path}:4", "00001",
                    f"{dfew_split(root, 'test', 1)} (line 2)", "disjoint")


def test_dfew_train_set_inconsistent(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    train2 = dfew_split(root, "train", 2)
    edit(train2, "17,3\n", "")  # clip 00017 (test fold 3) dropped from train set 2
    train4 = dfew_split(root, "train", 4)
    edit(train4, "\n2,2\n", "\n2,3\n")  # 00002 has label 2 in test set 2
    err = assert_rejected(capsys, dfew, root, tmp_path / "out", train2, "00017", "missing")
    assert f"{train4}: labels differ from the test sets for clips 00002 (line 3)" in err
    assert "also in test set" not in err and "in no test set" not in err


def test_dfew_train_clip_leaks_test(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    train1 = dfew_split(root, "train", 1)
    train1.write_text(train1.read_text() + "1,1\n")  # 00001 is in test set 1
    assert_rejected(capsys, dfew, root, tmp_path / "out", train1, "also in test set 1",
                    "00001 (line 10)")


def test_dfew_verify_images_finds_truncated_jpeg(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    frame = root / "Clip" / "clip_224x224" / "12000" / "00003.jpg"
    frame.write_bytes(jpeg_bytes(40)[:-2])  # end-of-image marker cut off
    assert run(dfew, root, tmp_path / "plain") == 0, "frames are only decoded on request"
    capsys.readouterr()
    assert_rejected(capsys, dfew, root, tmp_path / "out", frame, "cannot be decoded",
                    extra=["--verify-images"])


def test_dfew_collects_every_problem(dfew_root, tmp_path, capsys):
    root, _ = dfew_root
    edit(dfew_split(root, "test", 1), "1000,6", "1000,9")
    shutil.rmtree(root / "Clip" / "clip_224x224" / "00002")
    dfew_split(root, "train", 5).unlink()
    err = assert_rejected(capsys, dfew, root, tmp_path / "out", "01000", "00002",
                          dfew_split(root, "train", 5))
    assert "3 problem(s)" in err


# ---------------------------------------------------------------- FERV39k problems


def test_ferv39k_missing_split_file(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    path = ferv39k_split(root, "test")
    path.unlink()
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", path, "split file missing")


def test_ferv39k_malformed_line(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    path = ferv39k_split(root, "train")  # line 3: Crime/Neutral/0001 Neutral
    edit(path, "Crime/Neutral/0001 Neutral", "Crime/0001 Neutral")
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", f"{path}:3", "malformed")


def test_ferv39k_unknown_emotion(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    path = ferv39k_split(root, "test")
    edit(path, "Crime/Neutral/0102 Neutral", "Crime/Neutral/0102 Contempt")
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", f"{path}:3", "Contempt")


def test_ferv39k_listed_clip_without_folder(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    folder = root / "2_ClipsforFaceCrop" / "Crime" / "Angry" / "0007"
    shutil.rmtree(folder)
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", folder,
                    f"{ferv39k_split(root, 'train')}:4")


def test_ferv39k_empty_folder(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    folder = root / "2_ClipsforFaceCrop" / "Daily_Life" / "Fear" / "0004"
    shutil.rmtree(folder)
    folder.mkdir()
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", folder, "no frames")


def test_ferv39k_duplicate_in_file(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    path = ferv39k_split(root, "train")
    path.write_text(path.read_text().rstrip("\n") + "\nCrime/Neutral/0001 Neutral\n")
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", f"{path}:8", "twice")


def test_ferv39k_clip_in_train_and_test(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    path = ferv39k_split(root, "test")
    path.write_text(path.read_text() + "Crime/Neutral/0001 Neutral\n")
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", f"{path}:4",
                    f"{ferv39k_split(root, 'train')}:3", "disjoint")


def test_ferv39k_verify_images(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    frame = root / "2_ClipsforFaceCrop" / "Crime" / "Neutral" / "0102" / "1.jpg"
    frame.write_bytes(jpeg_bytes(40)[:100])
    assert_rejected(capsys, ferv39k, root, tmp_path / "out", frame, extra=["--verify-images"])


def test_ferv39k_folder_name_mismatch_is_a_warning(ferv_root, tmp_path, capsys):
    root, _ = ferv_root
    write_frames(root / "2_ClipsforFaceCrop" / "Crime" / "Sad" / "0200", 3)
    path = ferv39k_split(root, "test")
    path.write_text(path.read_text() + "Crime/Sad/0200 Happy\n")
    assert run(ferv39k, root, tmp_path / "out") == 0
    assert "emotion folder" in capsys.readouterr().err
    got = pd.read_csv(tmp_path / "out" / "annotations.csv")
    assert got.iloc[-1]["emotion"] == "Happy" and got.iloc[-1]["label"] == 0
