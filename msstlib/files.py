"""Files written safely and read back with a clear error (issue 26; DESIGN.md §7).

Three rules for every file the project writes into a run or results folder:

* **Atomic, through a fresh name.** A file is written to a new temporary file in its own folder
  (:func:`tempfile.mkstemp`: a name nobody could have planted a symbolic link at) and renamed over
  the target with :func:`os.replace`. A reader sees the old file or the whole new one; a kill leaves
  a stray ``.<name>.*.tmp`` at worst, never a half-written target.
* **One writer per folder.** :class:`FolderLock` holds ``<folder>/.lock``, created with
  ``O_CREAT | O_EXCL``, which records the host, the pid and a random token for as long as the
  writer runs; a background thread touches it every :data:`HEARTBEAT_S` seconds. A second writer
  is refused (:class:`LockHeld`) and told who holds it. A lock is *stale*, and taken over with a
  message, when its pid is dead on this host, or when it has not been touched for
  :data:`STALE_S` seconds (a writer on another host that was killed or pre-empted: a requeued
  SLURM job resumes its row on another node).
* **Readers tolerate a damaged file.** :func:`read_json` turns an empty, half-written or
  non-UTF-8 JSON file into :class:`BadFile`, which names the file and what to do.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .config import ConfigError

LOCK_NAME = ".lock"
HEARTBEAT_S = 30.0  # how often a holder touches its lock
STALE_S = 600.0  # a lock untouched this long is stale, whichever host wrote it


class BadFile(ConfigError):
    """A file the project wrote (or should have) is empty, half-written or not what it claims."""


class LockHeld(ConfigError):
    """Another writer holds the folder's lock."""


# ----------------------------------------------------------------------------------- writing


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode a plain ``open(path, "w")`` would give (0666 less the umask). mkstemp makes its file
# 0600, which a results folder shared with a group (a cluster's project space) could not read.
FILE_MODE = 0o666 & ~_umask()


def _fresh(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` with :data:`FILE_MODE`: ``(fd, name)``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


@contextmanager
def atomic_path(path: str | Path):
    """A fresh temporary path beside ``path``; renamed onto ``path`` when the block ends normally,
    removed when it raises. For writers that need a file name (``torch.save``, ``np.save``,
    ``open_memmap``)."""
    path = Path(path)
    fd, tmp = _fresh(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    fd, tmp = _fresh(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, indent: int | None = None) -> None:
    write_text(path, json.dumps(obj, indent=indent))


def copy_file(src: str | Path, dest: str | Path) -> None:
    """Copy ``src`` to ``dest`` atomically."""
    write_bytes(dest, Path(src).read_bytes())


# ----------------------------------------------------------------------------------- reading


def read_json(path: str | Path, what: str = "", fix: str = "") -> dict:
    """A JSON file's object; :class:`BadFile` naming the file when it is empty, cut short, not
    UTF-8 or not a JSON object. ``what`` says what the file is, ``fix`` what to do about it."""
    path = Path(path)
    label = f"{path}" + (f" ({what})" if what else "")
    fix = fix or "remove it; the step that writes it will write it again"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadFile(f"{label} is not UTF-8 text (byte {exc.start}); {fix}") from None
    if not text.strip():
        raise BadFile(f"{label} is empty (a write was interrupted, or another process is writing it); {fix}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFile(f"{label} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}: "
                      f"half-written or damaged); {fix}") from None
    if not isinstance(obj, dict):
        raise BadFile(f"{label} holds a JSON {type(obj).__name__}, not an object; {fix}")
    return obj


# ------------------------------------------------------------------------------------ locking


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (since {when})"


class FolderLock:
    """One writer per folder: ``with FolderLock(folder, "run"):`` (see the module docstring).

    ``what`` names the folder in messages ("run folder", "results folder"). ``say`` receives the
    message when a stale lock is taken over (default: print to stderr). ``name``: the lock file's
    name in the folder; another name locks one file's writer instead of the whole folder's (the
    feature cache, ``.<cache>.lock``)."""

    def __init__(self, folder: str | Path, what: str = "folder", say=None, name: str = LOCK_NAME):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / name
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.token = ""
        self._stop: threading.Event | None = None

    # -- the lock file
    def _read(self) -> dict | None:
        """The holder's record; {} while it is being written or unreadable; None when absent."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return info if isinstance(info, dict) else {}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        self.token = secrets.token_hex(8)
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                       "token": self.token}, f)
        return True

    def stale(self, info: dict) -> str:
        """Why the lock described by ``info`` is stale ("" when it is live)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it is gone"
        if age > STALE_S:
            return f"it has not been touched for {age:.0f} s"
        if not info:
            # Being written (a holder writes it right after creating it) unless it stays unreadable.
            return "it is unreadable" if age > 5 else ""
        pid = info.get("pid")
        if info.get("host") == socket.gethostname() and not (isinstance(pid, int) and pid > 0 and pid_alive(pid)):
            return f"its pid {info.get('pid')} is not running on this host"
        return ""

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            if self._create():
                self._start_heartbeat()
                return self
            info = self._read()
            if info is None:
                continue  # released between our two calls
            why = self.stale(info)
            if not why:
                if not info:
                    time.sleep(0.05)  # its holder is writing it
                    continue
                raise LockHeld(
                    f"{self.what} {self.folder} is in use: {_describe(info)} holds {self.path}. Wait for it to "
                    f"finish, choose another folder, or, if that process is gone (another host, killed), remove "
                    f"{self.path}")
            self._take_over(info, why)
        raise LockHeld(f"{self.what} {self.folder}: could not take {self.path} (contended); try again")

    def _take_over(self, info: dict, why: str) -> None:
        """Remove a stale lock, if it is still the one judged stale. A short-lived guard file makes
        the take-over one process's: two that found the same stale lock cannot both remove it (the
        second would remove the first one's new lock)."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > 10:  # its taker died mid-way
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
            return
        os.close(fd)
        try:
            if self._read() == info:
                self.path.unlink(missing_ok=True)
                self.say(f"note: {self.what} {self.folder}: took over a stale lock ({why}; it was held by "
                         f"{_describe(info)})")
        finally:
            guard.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        stop, path = self._stop, self.path

        def beat():
            while not stop.wait(HEARTBEAT_S):
                try:
                    os.utime(path)
                except OSError:
                    return

        threading.Thread(target=beat, name=f"lock {path}", daemon=True).start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        if self.token and (self._read() or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = ""

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
