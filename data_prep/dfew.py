"""Prepare DFEW from its official release: `python -m data_prep.dfew --root ROOT --out DIR`.

Reads the layout of DESIGN.md §4 and writes `DIR/annotations.csv` with one row per single-labelled
clip: `clip` (frame folder relative to ROOT), `num_frames`, `label` (0-6, canonical order),
`emotion` and `fold` (the k whose test set `set_<k>.csv` lists the clip). Train set k is checked to
be exactly "all clips minus test set k". Any problem stops the command with status 2 and no output.
SynDFER (`data_prep.synthetic`) is written in this same layout, so it goes through this module too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data_prep.common import Problems, count_frames, count_table, read_lines, run_cli
from msstlib.labels import EMOTIONS

FRAMES_DIR = "Clip/clip_224x224"
SPLIT_DIR = "EmoLabel_DataSplit"
FOLDS = (1, 2, 3, 4, 5)
HEADER = "video_name,label"
FIX_SPLIT = "Restore EmoLabel_DataSplit from the official DFEW archive."

# Published sizes of the real DFEW (DESIGN.md §4), printed beside our counts.
PUBLISHED_TEST = {1: 2341, 2: 2341, 3: 2340, 4: 2339, 5: 2336}
PUBLISHED_TRAIN = {1: 9356, 2: 9356, 3: 9357, 4: 9358, 5: 9361}
PUBLISHED_PER_CLASS = dict(zip(EMOTIONS, (2445, 1894, 2669, 2173, 1469, 145, 902)))

# clip id (5 digits) -> (line number, label 0..6 or None when the line's label was bad)
SplitFile = dict[str, tuple[int, int | None]]


def split_path(root: Path, part: str, fold: int) -> Path:
    """Path of the official `train` or `test` split file of one fold."""
    return root / SPLIT_DIR / f"{part}(single-labeled)" / f"set_{fold}.csv"


def read_split_file(path: Path, problems: Problems) -> SplitFile | None:
    """Parse one `set_<k>.csv`; None if the file is missing or its header is wrong."""
    lines = read_lines(path, problems, FIX_SPLIT)
    if lines is None:
        return None
    if lines[0][1].replace(" ", "") != HEADER:
        problems.add(path, f"expected the header {HEADER!r}, found {lines[0][1]!r}", FIX_SPLIT,
                     line=lines[0][0])
        return None
    if len(lines) == 1:
        problems.add(path, "split file lists no clips", FIX_SPLIT)
    entries: SplitFile = {}
    for number, text in lines[1:]:
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 2 or not fields[0].isdecimal() or int(fields[0]) == 0:
            problems.add(path, f"malformed line {text!r}: expected '<video number>,<label 1-7>'",
                         FIX_SPLIT, line=number)
            continue
        clip_id = f"{int(fields[0]):05d}"
        label = int(fields[1]) - 1 if fields[1].isdecimal() else None
        if label is None or not 0 <= label < len(EMOTIONS):
            problems.add(path, f"label {fields[1]!r} of clip {clip_id} is not an integer in 1-7",
                         FIX_SPLIT, line=number)
            label = None
        if clip_id in entries:
            problems.add(path, f"clip {clip_id} listed twice (first at line {entries[clip_id][0]})",
                         "Remove the duplicate line.", line=number)
            continue
        entries[clip_id] = (number, label)
    return entries


def _examples(ids: set[str], entries: SplitFile | None = None, limit: int = 5) -> str:
    """A few ids (with their line numbers when known), for messages about many clips."""
    shown = sorted(ids)[:limit]
    text = ", ".join(f"{i} (line {entries[i][0]})" if entries else i for i in shown)
    return text + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def check_train_sets(root: Path, test: dict[int, SplitFile], train: dict[int, SplitFile],
                     problems: Problems) -> None:
    """Train set k must hold exactly the clips of the other four test sets, with the same labels."""
    every_clip = {clip: entry for fold in FOLDS for clip, entry in test[fold].items()}
    for fold in FOLDS:
        path, listed = split_path(root, "train", fold), train[fold]
        expected = set(every_clip) - set(test[fold])
        leaked = set(listed) & set(test[fold])
        unknown = set(listed) - set(every_clip)
        missing = expected - set(listed)
        mismatched = {c for c in set(listed) & expected
                      if None not in (listed[c][1], every_clip[c][1])
                      and listed[c][1] != every_clip[c][1]}
        fix = (f"Train set {fold} must list every clip except those of test set {fold}, with the "
               "same labels; restore EmoLabel_DataSplit from the official DFEW archive.")
        if leaked:
            problems.add(path, f"clips also in test set {fold}: {_examples(leaked, listed)}", fix)
        if unknown:
            problems.add(path, f"clips in no test set: {_examples(unknown, listed)}", fix)
        if missing:
            problems.add(path, f"clips of the other test sets missing: {_examples(missing)}", fix)
        if mismatched:
            problems.add(path, "labels differ from the test sets for clips "
                         f"{_examples(mismatched, listed)}", fix)


def read_dfew(root: Path, problems: Problems, *, verify_images: bool = False) -> pd.DataFrame:
    """Annotations of every single-labelled DFEW clip under `root`; problems go to `problems`."""
    test = {k: read_split_file(split_path(root, "test", k), problems) for k in FOLDS}
    train = {k: read_split_file(split_path(root, "train", k), problems) for k in FOLDS}

    rows, where = [], {}  # where: clip id -> (path, line) of the test set that holds it
    for fold, entries in test.items():
        for clip_id, (number, label) in (entries or {}).items():
            path = split_path(root, "test", fold)
            if clip_id in where:
                first, first_line = where[clip_id]
                problems.add(path, f"clip {clip_id} is also in {first} (line {first_line}); "
                             "the five test sets must be disjoint", FIX_SPLIT, line=number)
                continue
            where[clip_id] = (path, number)
            if label is not None:
                rows.append({"clip": f"{FRAMES_DIR}/{clip_id}", "label": label,
                             "emotion": EMOTIONS[label], "fold": fold,
                             "source": f"{path}:{number}"})

    if None not in (*test.values(), *train.values()):
        check_train_sets(root, test, train, problems)

    rows.sort(key=lambda row: row["clip"])
    clips = [(row["clip"], row.pop("source")) for row in rows]
    counts = count_frames(root, FRAMES_DIR, clips, problems, verify_images=verify_images)
    annotations = pd.DataFrame(rows, columns=["clip", "label", "emotion", "fold"])
    annotations.insert(1, "num_frames", counts)
    return annotations


def summarize(annotations: pd.DataFrame) -> str:
    """Test clips per fold and emotion, train sizes, and the published sizes of the real DFEW."""
    table = count_table(annotations, "fold").astype("Int64")
    table["train"] = table.loc["all", "total"] - table["total"]
    table.loc["all", "train"] = pd.NA
    table["published test"] = pd.Series({**PUBLISHED_TEST, "all": sum(PUBLISHED_TEST.values())})
    table["published train"] = pd.Series(PUBLISHED_TRAIN)
    table.loc["published (real DFEW)"] = pd.Series(
        {**PUBLISHED_PER_CLASS, "total": sum(PUBLISHED_PER_CLASS.values())})
    table = table.astype("Int64").astype(object).fillna("-")
    table.index = [f"fold {i}" if isinstance(i, int) else i for i in table.index]
    return ("DFEW test clips per fold and emotion (train = all clips minus that fold's test set)\n"
            "'published' columns and row: the real DFEW release's figures, for comparison.\n"
            + table.to_string())


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, prog="python -m data_prep.dfew",
                   description="Prepare DFEW (official release layout): write annotations.csv.",
                   read=read_dfew, summarize=summarize)


if __name__ == "__main__":
    sys.exit(main())
