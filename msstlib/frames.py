"""The frames of a clip on disk, in order: the one definition both ``data_prep`` and ``msstlib``
read (the ground floor, docs/layout.md). It imports nothing of the project."""

from __future__ import annotations

import os
import re
from pathlib import Path

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: "frame2.jpg" before "frame10.jpg"."""
    # re.split with a capture group alternates text, number, text, ...: odd positions are numbers.
    parts = re.split(r"(\d+)", name)
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The frame files of one clip folder, in natural order.

    Frames are plain files ending in .jpg/.jpeg/.png (any case). Hidden files are skipped: archives
    unpacked on macOS carry `._0001.jpg` resource forks that are not images.
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if e.name.lower().endswith(FRAME_SUFFIXES) and not e.name.startswith(".")
                 and e.is_file()]
    return [Path(folder, name) for name in sorted(names, key=natural_key)]
