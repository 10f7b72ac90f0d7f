"""Paths that travel: what results record, and how a recorded or typed path is found again.

Results are committed and re-run on other machines (DESIGN.md §7), so nothing we write may hold
this machine's absolute paths. The rule, in two functions:

* :func:`relative` -- how a path is *recorded* (``result.json``, papermill parameters, notebook
  metadata, printed locations): relative to the repository when it lies inside it, as a POSIX
  string; a path outside the repository (a DFEW copy under ``/data``) stays absolute, because no
  relative form would mean the same thing elsewhere.
* :func:`resolve` -- how an *input* path is found: absolute as is; relative from the current folder
  when it exists there (what a user typed where they stand), otherwise from the repository (what
  the study and committed results record). So ``results/synthetic/runs`` works from the repository
  root (papermill), from ``notebooks/`` (JupyterLab) and from a committed notebook's own folder.

Output paths are plain: relative to the current folder, as every command-line tool treats them.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from .files import pid_alive, write_text

REPO = Path(__file__).resolve().parents[1]


def relative(path: str | Path | None) -> str:
    """``path`` as results record it: repository-relative inside the repository, else absolute."""
    if path is None or str(path) == "":
        return ""
    p = Path(os.path.abspath(path))
    for candidate in (p, p.resolve()):  # as written, then with symbolic links followed
        try:
            return candidate.relative_to(REPO).as_posix() or "."
        except ValueError:
            pass
    return str(p)


def resolve(path: str | Path | None) -> str:
    """An input path, absolute: as given when absolute; from the current folder when it exists
    there; otherwise from the repository (where a recorded relative path points). An empty path
    stays empty (the notebooks' "not given")."""
    if path is None or str(path) == "":
        return ""
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    if p.exists() or not (REPO / p).exists():
        return os.path.abspath(p)
    return str(REPO / p)


def scratch(prefix: str) -> str:
    """A new temporary folder that is removed when this process exits (a notebook's kernel shuts
    down): the notebooks' tiny default data and runs leave nothing behind in the system's
    temporary folder. A kernel that was killed cannot clean up: the next call removes the scratch
    folders of processes that no longer exist (the owner's pid is in the name)."""
    import atexit
    import tempfile

    base = Path(tempfile.gettempdir())
    for old in base.glob("msstlib-*-pid*"):
        try:
            pid = int(old.name.rsplit("-pid", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            _remove(old)
    folder = tempfile.mkdtemp(prefix=f"msstlib-{prefix.strip('_-')}-pid{os.getpid()}-")
    atexit.register(_remove, folder)
    return folder


def _remove(folder: str | Path) -> None:
    import shutil

    for _ in range(3):  # jupyter_client interrupts a kernel before shutting it down: the SIGINT may
        try:            # land while this runs at exit; start again rather than leave half a folder
            shutil.rmtree(folder, ignore_errors=True)
            return
        except KeyboardInterrupt:
            continue


# Absolute paths of the machine that made a file, as they appear inside JSON strings.
_ABSOLUTE = re.compile(r'(?<=")(/(?:tmp|root|home|work|Users|mnt|data|scratch)/[^"\s]*)')


def relocate_text(text: str, base: str | Path = REPO) -> str:
    """``text`` with every absolute path under ``base`` (the repository that wrote it) made
    repository-relative; other absolute paths are left as they are."""
    prefix = re.escape(str(base).rstrip("/") + "/")
    text = re.sub(r"(?<![\w./-])" + prefix, "", text)
    return re.sub(r"(?<![\w./-])" + re.escape(str(base).rstrip("/")) + r"(?=[\"'\s])", ".", text)


def absolute_paths(text: str) -> list[str]:
    """The machine paths left in a JSON text (what the before-stop check and a test look for)."""
    return _ABSOLUTE.findall(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m msstlib.paths relocate FOLDER [--from OLD_REPO]``: rewrite results written by an
    older msstlib (or by another clone) so that they hold repository-relative paths. Only path
    strings change; ``--check`` lists the files that still hold machine paths (exit 1 if any)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m msstlib.paths", description=main.__doc__)
    p.add_argument("command", choices=("relocate",))
    p.add_argument("folder", help="a results folder, e.g. results/synthetic")
    p.add_argument("--from", dest="old", default=str(REPO),
                   help="the repository path the files were written under (default: this clone)")
    p.add_argument("--check", action="store_true", help="only list files that hold machine paths")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {args.folder}: no such folder; give a results folder such as results/synthetic",
              file=sys.stderr)
        return 2
    left, failed = [], []
    for f in sorted(folder.rglob("*")):
        if f.suffix not in (".json", ".ipynb", ".csv", ".md") or not f.is_file():
            continue
        try:
            text = f.read_text(encoding="utf-8")
            new = text if args.check else relocate_text(text, args.old)
            if new != text:
                if f.suffix in (".json", ".ipynb"):
                    json.loads(new)  # still valid JSON: only whole path prefixes were replaced
                write_text(f, new)
        except (OSError, ValueError) as exc:  # not UTF-8, not JSON, unreadable: named, the others still done
            print(f"error: {f}: {exc}; left as it was", file=sys.stderr)
            failed.append(f)
            continue
        if absolute_paths(new):
            left.append(f)
    for f in left:
        print(f"{relative(f)}: {', '.join(sorted(set(absolute_paths(f.read_text())))[:3])}")
    return 2 if failed else 1 if left and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
