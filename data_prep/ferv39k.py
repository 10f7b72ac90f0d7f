"""Prepare FERV39k from its official release: `python -m data_prep.ferv39k --root ROOT --out DIR`.

Reads the layout of DESIGN.md §4 and writes `DIR/annotations.csv` with one row per clip: `clip`
(frame folder relative to ROOT), `num_frames`, `label` (0-6, canonical order, mapped from the
emotion *name* in the split file), `emotion`, `split` (train/test) and `scene`. Any problem stops
the command with status 2 and no output.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data_prep.common import Problems, count_frames, count_table, read_lines, run_cli
from msstlib.labels import EMOTIONS, label_of

FRAMES_DIR = "2_ClipsforFaceCrop"
SETUP_DIR = "4_setups/All_scenes"
SPLIT_FILES = {"train": "train_All.csv", "test": "test_All.csv"}
FIX_SPLIT = "Restore 4_setups/All_scenes from the official FERV39k archive."

# Published sizes of the real FERV39k (DESIGN.md §4), printed beside our counts.
PUBLISHED = {
    "train": dict(zip(EMOTIONS, (5854, 5523, 7790, 5906, 2502, 1833, 1680))),
    "test": dict(zip(EMOTIONS, (1473, 1393, 1958, 1487, 638, 467, 431))),
}


def split_path(root: Path, split: str) -> Path:
    """Path of the official `train` or `test` split file."""
    return root / SETUP_DIR / SPLIT_FILES[split]


def read_split_file(path: Path, split: str, problems: Problems) -> list[dict]:
    """Rows of one split file: `<Scene>/<Emotion>/<id> <EmotionName>` per line, no header."""
    rows: list[dict] = []
    first_line: dict[str, int] = {}
    mismatched = 0
    for number, text in read_lines(path, problems, FIX_SPLIT) or []:
        fields = text.rsplit(maxsplit=1)
        parts = fields[0].strip("/").split("/") if len(fields) == 2 else []
        if len(parts) != 3 or not all(parts):
            problems.add(path, f"malformed line {text!r}: expected '<Scene>/<Emotion>/<id> "
                         "<EmotionName>'", FIX_SPLIT, line=number)
            continue
        try:
            label = label_of(fields[1])
        except KeyError:
            problems.add(path, f"unknown emotion name {fields[1]!r}; expected one of "
                         f"{', '.join(EMOTIONS)}", FIX_SPLIT, line=number)
            continue
        clip = f"{FRAMES_DIR}/{'/'.join(parts)}"
        if clip in first_line:
            problems.add(path, f"clip {'/'.join(parts)} listed twice (first at line "
                         f"{first_line[clip]})", "Remove the duplicate line.", line=number)
            continue
        first_line[clip] = number
        mismatched += parts[1].strip().lower() != EMOTIONS[label].lower()
        rows.append({"clip": clip, "label": label, "emotion": EMOTIONS[label], "split": split,
                     "scene": parts[0], "line": number})
    if mismatched:
        # The label comes from the emotion name, as the release intends; a folder that disagrees
        # is suspicious but not proof of a wrong label, so it is a warning, not a problem.
        problems.warn(f"{path}: {mismatched} clip(s) sit in an emotion folder that differs from "
                      "their emotion name; the name was used as the label")
    return rows


def read_ferv39k(root: Path, problems: Problems, *, verify_images: bool = False) -> pd.DataFrame:
    """Annotations of every FERV39k clip under `root`; problems go to `problems`."""
    rows, clips = [], []
    seen: dict[str, str] = {}  # clip -> "path:line" that first listed it
    for split in SPLIT_FILES:
        path = split_path(root, split)
        for row in read_split_file(path, split, problems):
            line = row.pop("line")
            if row["clip"] in seen:
                problems.add(path, f"clip {row['clip']} is also listed at {seen[row['clip']]}; "
                             "train and test must be disjoint", FIX_SPLIT, line=line)
                continue
            seen[row["clip"]] = f"{path}:{line}"
            rows.append(row)
            clips.append((row["clip"], seen[row["clip"]]))

    counts = count_frames(root, FRAMES_DIR, clips, problems, verify_images=verify_images)
    annotations = pd.DataFrame(rows, columns=["clip", "label", "emotion", "split", "scene"])
    annotations.insert(1, "num_frames", counts)
    return annotations


def summarize(annotations: pd.DataFrame) -> str:
    """Clips per split and emotion, with the published sizes of the real FERV39k."""
    table = count_table(annotations, "split").reindex(["train", "test", "all"], fill_value=0)
    for split, per_class in PUBLISHED.items():
        table.loc[f"published {split} (real FERV39k)"] = {
            **per_class, "total": sum(per_class.values())}
    return (f"FERV39k clips per split and emotion ({annotations['scene'].nunique()} scenes; "
            "the real release has 22).\n"
            "'published' rows are the figures for the real FERV39k release, for comparison.\n"
            + table.to_string())


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, prog="python -m data_prep.ferv39k",
                   description="Prepare FERV39k (official release layout): write annotations.csv.",
                   read=read_ferv39k, summarize=summarize)


if __name__ == "__main__":
    sys.exit(main())
