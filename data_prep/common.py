"""Machinery shared by the dataset preparation commands (`data_prep.dfew`, `data_prep.ferv39k`).

A preparation command reads an official release layout, collects *every* problem it finds in a
`Problems` list instead of stopping at the first, and only when the list is empty writes
`annotations.csv` (atomically) and prints a per-split, per-class count table. `run_cli` holds that
flow, so each dataset module only says how to read its own layout.

`list_frames` (the one definition of "the frames of a clip, in order") lives on the ground floor,
`msstlib.frames`, which the data loader and this package both import.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from msstlib.files import write_text
from msstlib.frames import FRAME_SUFFIXES, list_frames, natural_key  # noqa: F401 (the ground floor)
from msstlib.labels import EMOTIONS

EXIT_PROBLEMS = 2


def unreadable_frame(path: Path) -> str | None:
    """Why `path` cannot be decoded as an image, or None if it decodes.

    A full `load()` is needed: `Image.verify()` accepts a JPEG whose end-of-image marker is missing.
    """
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... depending on format
        return f"{type(err).__name__}: {err}"
    return None


@dataclass
class Problems:
    """Problems found in a dataset, each with where (file, line), what is wrong and what to do."""

    items: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, path: str | os.PathLike, what: str, fix: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        self.items.append(f"{where}: {what}. {fix}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def __len__(self) -> int:
        return len(self.items)


def check_clip_folder(root: Path, clip: str, source: str, problems: Problems, *,
                      verify_images: bool) -> int:
    """Number of frames in `root/clip`, recording a problem if the folder is missing or empty.

    `source` names the split file and line that listed the clip, so the message leads back to it.
    Returns 0 when there is a problem.
    """
    folder = root / clip
    if not folder.is_dir():
        problems.add(folder, f"frame folder missing (clip listed at {source})",
                     "Restore the clip folder from the official archive, or fix the split file.")
        return 0
    try:
        frames = list_frames(folder)
    except OSError as err:
        problems.add(folder, f"cannot list frame folder ({err.strerror})", "Check its permissions.")
        return 0
    if not frames:
        problems.add(folder, f"no frames (.jpg/.jpeg/.png) in the folder (clip listed at {source})",
                     "Re-extract the clip from the official archive.")
        return 0
    if verify_images:
        for frame in frames:
            reason = unreadable_frame(frame)
            if reason is not None:
                problems.add(frame, f"frame cannot be decoded ({reason})",
                             "Re-extract the clip from the official archive.")
    return len(frames)


def count_frames(root: Path, frames_dir: str, clips: Sequence[tuple[str, str]], problems: Problems,
                 *, verify_images: bool) -> list[int]:
    """Frame count of each (clip, source) pair; see `check_clip_folder`.

    If the frames folder `root/frames_dir` itself is missing, that is one problem, not one per clip.
    """
    if not (root / frames_dir).is_dir():
        problems.add(root / frames_dir, "frames folder missing",
                     "Unpack the official frame archive under the dataset root.")
        return [0] * len(clips)
    # Decoding every frame of a real dataset takes a while: show progress on a terminal.
    progress = tqdm(clips, desc="decoding frames", unit="clip",
                    disable=None if verify_images else True)
    return [check_clip_folder(root, clip, source, problems, verify_images=verify_images)
            for clip, source in progress]


def read_lines(path: Path, problems: Problems, fix_missing: str) -> list[tuple[int, str]] | None:
    """Non-blank lines of a split file as (line number, stripped text); None if missing or empty.

    Tolerates CRLF line ends, a UTF-8 byte-order mark, trailing spaces and blank lines.
    """
    if not path.is_file():
        problems.add(path, "split file missing", fix_missing)
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        problems.add(path, f"cannot read split file ({err})",
                     "Restore it from the official archive.")
        return None
    numbered = enumerate(text.splitlines(), start=1)
    lines = [(number, line.strip()) for number, line in numbered if line.strip()]
    if not lines:
        problems.add(path, "split file is empty", "Restore it from the official archive.")
        return None
    return lines


def count_table(annotations: pd.DataFrame, by: str) -> pd.DataFrame:
    """Clips per `by` value (rows) and emotion (columns, canonical order), with totals."""
    table = pd.crosstab(annotations[by], annotations["emotion"])
    table = table.reindex(columns=list(EMOTIONS), fill_value=0)
    table["total"] = table.sum(axis=1)
    table.loc["all"] = table.sum(axis=0)
    table.columns.name = None
    return table


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, frame.to_csv(index=False))


# What a dataset module supplies: read ROOT into an annotations table (recording problems), and
# render the count table for a user to compare with the published sizes.
Reader = Callable[..., pd.DataFrame]
Summary = Callable[[pd.DataFrame], str]


def run_cli(argv: Sequence[str] | None, *, prog: str, description: str, read: Reader,
            summarize: Summary) -> int:
    """Parse --root/--out/--verify-images, read the dataset, then report problems or write output.

    Returns the exit status: 0 on success, 2 when the dataset has problems, 1 when --out is not
    writable; nothing is written unless it is 0.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--root", required=True, type=Path, help="dataset root (official layout)")
    parser.add_argument("--out", required=True, type=Path, help="folder for annotations.csv")
    parser.add_argument("--verify-images", action="store_true",
                        help="decode every frame and report unreadable files (slow)")
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing on success (problems still go to stderr)")
    args = parser.parse_args(argv)

    problems = Problems()
    if not args.root.is_dir():
        problems.add(args.root, "dataset root does not exist or is not a folder",
                     "Pass --root the folder that holds the unpacked official release.")
        annotations = None
    else:
        annotations = read(args.root, problems, verify_images=args.verify_images)
    for message in problems.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if problems:
        for message in problems.items:
            print(message, file=sys.stderr)
        print(f"\n{len(problems)} problem(s) found in {args.root}; nothing was written.",
              file=sys.stderr)
        return EXIT_PROBLEMS

    out = args.out / "annotations.csv"
    try:
        write_csv_atomic(annotations, out)
    except OSError as err:
        print(f"{out}: cannot write ({err.strerror or err}). Choose a writable --out.",
              file=sys.stderr)
        return 1
    if not args.quiet:
        print(summarize(annotations))
        print(f"\nWrote {len(annotations)} clips to {out}")
    return 0


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
