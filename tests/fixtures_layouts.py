"""Tiny datasets in the official DFEW and FERV39k release layouts (DESIGN.md §4), for tests.

`make_dfew(root)` and `make_ferv39k(root)` write real 8x8 JPEG frames and the split files with the
releases' quirks (5-digit DFEW ids written as plain integers, FERV39k's header-less space-separated
lists, CRLF line ends, trailing blanks, frame names that only sort right naturally, a clip with 8
frames), and return the annotations the preparation commands must produce, one row per clip.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

from msstlib.labels import EMOTIONS

# DFEW: (video number, label 1-7, number of frames). Ten clips, two per test fold, every class.
DFEW_CLIPS = [(1, 1, 8), (2, 2, 12), (17, 3, 3), (230, 4, 16), (999, 5, 5),
              (1000, 6, 9), (4321, 7, 4), (12000, 1, 6), (16371, 3, 20), (16372, 2, 2)]

# FERV39k: (split, scene, emotion folder = name, 4-digit id, number of frames).
FERV39K_CLIPS = [
    ("train", "Daily_Life", "Happy", "0001", 8), ("train", "Daily_Life", "Sad", "0002", 12),
    ("train", "Crime", "Neutral", "0001", 3), ("train", "Crime", "Angry", "0007", 16),
    ("train", "Close_up_Shot", "Surprise", "0010", 5), ("train", "Crime", "Disgust", "0003", 9),
    ("train", "Daily_Life", "Fear", "0004", 4),
    ("test", "Daily_Life", "Happy", "0100", 6), ("test", "Close_up_Shot", "Fear", "0101", 10),
    ("test", "Crime", "Neutral", "0102", 2),
]


def jpeg_bytes(value: int, size: int = 8) -> bytes:
    """A real `size`x`size` JPEG of one grey level."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (value % 256,) * 3).save(buffer, "JPEG")
    return buffer.getvalue()


def write_frames(folder: Path, count: int, *, value: int = 128, style: str = "padded") -> None:
    """Write `count` frames named `00001.jpg` ... ("padded"), `1.jpg` ... ("plain": needs a natural
    sort to come out in order) or `frame_1.JPG` ... ("upper": upper-case suffix)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(value)
    for i in range(1, count + 1):
        name = {"padded": f"{i:05d}.jpg", "plain": f"{i}.jpg", "upper": f"frame_{i}.JPG"}[style]
        (folder / name).write_bytes(data)


def _style(index: int) -> str:
    return ("padded", "plain", "upper")[index % 3]


def make_dfew(root: str | Path) -> pd.DataFrame:
    """Build a 10-clip DFEW under `root`; return the expected annotations (sorted by clip).

    Clip i is in the test set of fold i % 5 + 1. Also written, as in the real release: a frame
    folder listed in no split file (DFEW's multi-labelled clips) and a non-image file in a folder.
    """
    root = Path(root)
    frames = root / "Clip" / "clip_224x224"
    rows = []
    for i, (number, label, count) in enumerate(DFEW_CLIPS):
        write_frames(frames / f"{number:05d}", count, value=30 * label, style=_style(i))
        rows.append({"clip": f"Clip/clip_224x224/{number:05d}", "num_frames": count,
                     "label": label - 1, "emotion": EMOTIONS[label - 1], "fold": i % 5 + 1})
    write_frames(frames / "00005", 7)  # a multi-labelled clip: in no single-labelled split
    (frames / f"{DFEW_CLIPS[0][0]:05d}" / "Thumbs.db").write_bytes(b"not a frame")

    for fold in range(1, 6):
        test = [c for i, c in enumerate(DFEW_CLIPS) if i % 5 + 1 == fold]
        train = [c for i, c in enumerate(DFEW_CLIPS) if i % 5 + 1 != fold]
        for part, clips in (("test", test), ("train", train)):
            lines = ["video_name,label"] + [f"{number},{label}" for number, label, _ in clips]
            path = dfew_split(root, part, fold)
            path.parent.mkdir(parents=True, exist_ok=True)
            # The last fold's files use CRLF line ends, as files edited on Windows do.
            path.write_bytes(("\r\n" if fold == 5 else "\n").join(lines).encode() + b"\n")
    return pd.DataFrame(rows).sort_values("clip", ignore_index=True)


def dfew_split(root: str | Path, part: str, fold: int) -> Path:
    """Path of DFEW's `train` or `test` split file of one fold."""
    return Path(root) / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{fold}.csv"


def make_ferv39k(root: str | Path) -> pd.DataFrame:
    """Build a 10-clip FERV39k under `root`; return the expected annotations (train, then test).

    train_All.csv has trailing spaces and a blank final line; test_All.csv has CRLF line ends.
    """
    root = Path(root)
    rows, lines = [], {"train": [], "test": []}
    for i, (split, scene, emotion, clip_id, count) in enumerate(FERV39K_CLIPS):
        rel = f"{scene}/{emotion}/{clip_id}"
        write_frames(root / "2_ClipsforFaceCrop" / rel, count, value=20 * i, style=_style(i))
        lines[split].append(f"{rel} {emotion}")
        rows.append({"clip": f"2_ClipsforFaceCrop/{rel}", "num_frames": count,
                     "label": EMOTIONS.index(emotion), "emotion": emotion, "split": split,
                     "scene": scene})
    train, test = ferv39k_split(root, "train"), ferv39k_split(root, "test")
    train.parent.mkdir(parents=True, exist_ok=True)
    train.write_text("".join(f"{line}  \n" for line in lines["train"]) + "\n")
    test.write_bytes("\r\n".join(lines["test"]).encode() + b"\r\n")
    return pd.DataFrame(rows)


def ferv39k_split(root: str | Path, split: str) -> Path:
    """Path of FERV39k's `train` or `test` split file."""
    return Path(root) / "4_setups" / "All_scenes" / f"{split}_All.csv"
