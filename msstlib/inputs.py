"""A run's inputs, checked before any work, in one pass that reports every problem (issue 26).

What ``python -m msstlib.train``, ``train.run()`` (every notebook and study row), the caches and
``predict`` are given is checked here before a folder is made or a frame decoded:

* the annotations file: UTF-8 text, the columns ``data_prep`` writes, on every row a clip path that
  stays under ``--root`` (no absolute path, no ``..`` out of it), a frame count >= 1, a label
  0..6 (DFEW's order, :mod:`msstlib.labels`) and, in the DFEW layout, a fold 1..5;
* the root, and every clip folder the run reads (a ``stat``, not a decode);
* the fold or split asked for, which must be in the file;
* the output folder: not under a file, and writable (probed with a temporary file that is removed).

Every problem found is listed, each naming the file, the line and the column, or the flag, and
the fix; :class:`InputError` (a :class:`~msstlib.config.ConfigError`: exit status 2) carries them
all. Nothing is written.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from . import paths
from .config import ConfigError
from .labels import EMOTIONS, NUM_CLASSES

FOLDS = (1, 2, 3, 4, 5)  # DFEW's five folds
SHOWN = 20  # problems listed in full; the rest are counted
FIX_PREP = "re-run data_prep to rewrite it"


class InputError(ConfigError):
    """One or more bad inputs; the message lists each with its fix."""


class Problems:
    """Problems found in one pass: ``add(...)``, then ``raise_if_any()``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:  # one line, as every error of a command
            raise InputError(f"{self.items[0]}. Nothing was written")
        shown = self.items[:SHOWN]
        more = len(self.items) - len(shown)
        lines = "\n".join(f"  - {m}" for m in shown) + (f"\n  ... and {more} more" if more else "")
        raise InputError(f"{len(self.items)} bad inputs; nothing was written:\n{lines}")


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def escapes(clip: str) -> bool:
    """Whether a clip path leaves the folder it is relative to (absolute, or ``..`` out of it)."""
    norm = os.path.normpath(clip)
    return os.path.isabs(clip) or norm == ".." or norm.startswith(".." + os.sep)


def read_rows(annotations: Path, problems: Problems, given: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and ``(line, row)`` pairs of an annotations file; undecodable lines are problems."""
    try:
        data = annotations.read_bytes()
    except OSError as exc:
        problems.add(f"--annotations {given}: cannot be read ({exc.strerror}); check the path and its permissions")
        return [], []
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problems.add(f"{given}, line {number}: byte {raw[exc.start]:#04x} at column {exc.start + 1} is not UTF-8 "
                         f"text; {FIX_PREP} (or save the file as UTF-8)")
            lines.append("")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = next(reader, [])
    rows = []
    for number, values in enumerate(reader, start=2):
        if not values or not any(v.strip() for v in values):
            continue  # a blank line (the final newline, or a line that did not decode)
        if len(values) != len(header):
            problems.add(f"{given}, line {number}: {len(values)} fields where the header has {len(header)}; "
                         f"{FIX_PREP}")
            continue
        rows.append((number, dict(zip(header, values))))
    return header, rows


def check_annotations(annotations: str, root: str, *, fold: int | None = None, split: str | None = None,
                      labels: bool = True, problems: Problems | None = None) -> tuple[str, str]:
    """Check an annotations file against its root (see the module docstring); returns both paths
    resolved (:func:`msstlib.paths.resolve`). ``labels``: the rows must carry labels (training and
    evaluation; ``predict`` reads unlabelled clips). Problems go to ``problems`` when given
    (the caller raises), else are raised here."""
    own = problems is None
    problems = problems if problems is not None else Problems()
    path, folder = Path(paths.resolve(annotations)), Path(paths.resolve(root))
    if not path.is_file():
        problems.add(f"--annotations {annotations}: no such file; prepare the dataset first (python -m "
                     f"data_prep.dfew --root ROOT --out DIR writes DIR/annotations.csv)")
    if not folder.is_dir():
        problems.add(f"--root {root}: no such folder; give the dataset root that the clip paths in {annotations} "
                     f"are relative to")
    if not path.is_file():
        if own:
            problems.raise_if_any()
        return str(path), str(folder)
    header, rows = read_rows(path, problems, annotations)
    missing = [c for c in ("clip", "num_frames", "label") if c not in header]
    if missing:
        problems.add(f"{annotations}, line 1: no column {', '.join(repr(c) for c in missing)} (header: "
                     f"{','.join(header) or 'empty'}); {FIX_PREP}")
    elif not rows:
        problems.add(f"{annotations}: no clip rows; {FIX_PREP}")
    has_fold, has_split = "fold" in header, "split" in header
    if fold is not None:
        if fold not in FOLDS:
            problems.add(f"--fold {fold}: DFEW's folds are 1..5; choose one of them")
        elif has_fold and rows and not any(_int(r["fold"]) == fold for _, r in rows):
            problems.add(f"--fold {fold}: {annotations} has no clip in fold {fold}; choose a fold it holds")
        elif not has_fold and not missing:
            problems.add(f"--fold {fold}: {annotations} has no 'fold' column (a FERV39k layout?); use --split")
    if split is not None and not missing:
        if not has_split:
            problems.add(f"--split {split}: {annotations} has no 'split' column (a DFEW layout?); use --fold")
        elif rows and not any(r["split"].strip() == split for _, r in rows):
            problems.add(f"--split {split}: {annotations} has no clip in split {split!r}; choose a split it holds")
    if missing:
        if own:
            problems.raise_if_any()
        return str(path), str(folder)
    used = {split, "test"} if split is not None else None
    absent, checked = [], 0  # clip folders not under the root (one problem for all of them)
    for line, r in rows:
        where = f"{annotations}, line {line}"
        clip = r["clip"].strip()
        if not clip:
            problems.add(f"{where}, column 'clip': empty; {FIX_PREP}")
        elif escapes(clip):
            problems.add(f"{where}, column 'clip': {clip!r} leaves --root (an absolute path or '..'); clip paths "
                         f"are relative to the dataset root: {FIX_PREP}")
        elif folder.is_dir() and (used is None or (has_split and r["split"].strip() in used)):
            checked += 1
            if not (folder / clip).is_dir():
                absent.append((line, clip))
        n = _int(r["num_frames"])
        if n is None or n < 1:
            problems.add(f"{where}, column 'num_frames': {r['num_frames']!r} is not a frame count >= 1; {FIX_PREP}")
        if labels or r["label"].strip():
            label = _int(r["label"])
            if label is None or not 0 <= label < NUM_CLASSES:
                problems.add(f"{where}, column 'label': {r['label']!r} is not a label 0..{NUM_CLASSES - 1} "
                             f"({', '.join(f'{i} {e}' for i, e in enumerate(EMOTIONS))}); fix that row or {FIX_PREP}")
        if has_fold and (labels or r["fold"].strip()):
            k = _int(r["fold"])
            if k not in FOLDS:
                problems.add(f"{where}, column 'fold': {r['fold']!r} is not a fold 1..5; fix that row or {FIX_PREP}")
    if absent and len(absent) == checked:
        problems.add(f"--root {root}: none of the {checked} clip folders of {annotations} is under it (line "
                     f"{absent[0][0]}: {absent[0][1]}); give the root the annotations were prepared from")
    elif absent:
        lines = ", ".join(str(line) for line, _ in absent[:10]) + (", ..." if len(absent) > 10 else "")
        problems.add(f"{annotations}, column 'clip': {len(absent)} of {checked} clip folders are not under --root "
                     f"{root} (lines {lines}; e.g. {absent[0][1]}); re-extract those clips' frames, or remove their "
                     f"rows and re-run data_prep")
    if own:
        problems.raise_if_any()
    return str(path), str(folder)


def check_out(out: str | Path, flag: str = "--out", problems: Problems | None = None) -> None:
    """An output folder can be made and written: not a file, not under a file, writable (probed
    with a temporary file in the nearest existing folder, removed at once)."""
    own = problems is None
    problems = problems if problems is not None else Problems()
    p = Path(out)
    if p.exists() and not p.is_dir():
        problems.add(f"{flag} {out} is a file, not a folder; choose another {flag}")
    else:
        here = p.absolute()
        while not here.exists() and here != here.parent:
            here = here.parent
        if not here.is_dir():
            problems.add(f"{flag} {out}: {here} is a file, so no folder can be made under it; choose another {flag}")
        else:
            try:
                fd, tmp = tempfile.mkstemp(prefix=".msstlib-write-probe.", dir=here)
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                problems.add(f"{flag} {out}: cannot write in {here} ({exc.strerror}); choose a folder you can "
                             f"write to")
    if own:
        problems.raise_if_any()


def check_size(size: int, flag: str = "--size", problems: Problems | None = None) -> None:
    """A frame size in pixels: a positive integer."""
    if not isinstance(size, int) or size < 1:
        message = f"{flag} {size}: a frame size is a positive number of pixels, e.g. 64 (the cpu preset's)"
        if problems is None:
            raise InputError(message)
        problems.add(message)


# Errors a command reports in one line with exit status 2, never as a traceback: the project's own
# (ConfigError and its kinds, ClipError: all ValueErrors) and the operating system's.
USAGE_ERRORS = (ValueError, OSError)


def describe(exc: BaseException) -> str:
    """A one-line message for a usage error: the project's own as written; a bare OSError (``[Errno
    13] Permission denied: 'x'``) as the file, what went wrong and what to check."""
    if isinstance(exc, OSError) and str(exc).startswith("[Errno"):
        where = exc.filename if exc.filename is not None else "a file"
        other = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
        return (f"{where}{other}: {exc.strerror or exc}; check that the path exists, that it is the kind of file "
                f"expected, and that you may read or write it")
    return str(exc)
