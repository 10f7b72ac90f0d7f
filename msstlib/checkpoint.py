"""Checkpoints that cannot run code (issue 26): what one holds, how it is written and read.

Researchers share checkpoints, and a pickle can carry code that runs when it is opened. So a
checkpoint here holds **only tensors and plain types** (dicts, lists, tuples, strings, numbers,
booleans, None): :func:`plain` checks that before anything is written, and :func:`load` reads with
``torch.load(..., weights_only=True)``, whose unpickler builds nothing else. A file that holds
anything else, or that is empty, cut short or not a torch file at all, is refused with
:class:`CheckpointError` (a :class:`~msstlib.config.ConfigError`: exit status 2 at the command
line), and nothing of it runs. Every ``torch.load`` of a file a user may have been given goes
through here: resume, automatic resume inside ``train.run()``, Grad-CAM, backbone weights.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from . import files
from .config import ConfigError


class CheckpointError(ConfigError):
    """A checkpoint (or weights file) that is unreadable or not plain."""


PLAIN = (str, int, float, bool, type(None))


def plain(obj, where: str = "checkpoint"):
    """``obj`` with numpy scalars made Python numbers; :class:`TypeError` naming the key path of
    anything that is not a tensor or a plain type (so it is never written)."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, dict):  # an OrderedDict (a state dict) stays one: weights_only reads it
        if type(obj) not in (dict, OrderedDict):
            raise TypeError(f"{where}: a {type(obj).__name__} is not a plain type")
        out = type(obj)()
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not a string or an integer")
            out[k] = plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, torch.Size):
        return obj
    raise TypeError(f"{where}: a {type(obj).__name__} is not a tensor or a plain type; a checkpoint holds only those")


def save(obj: dict, path: str | Path) -> None:
    """Write a checkpoint atomically (through a fresh temporary name, :mod:`msstlib.files`)."""
    import torch

    obj = plain(obj)
    with files.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path, what: str = "checkpoint", fix: str = "remove it or choose another --out") -> dict:
    """A checkpoint's dictionary, every tensor on the CPU; :class:`CheckpointError` when the file is
    unreadable or holds anything but tensors and plain types (nothing of it runs)."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path}: no such file") from None
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc) or "weights_only" in str(exc):
            reason = "it holds objects other than tensors and plain types (a pickle that could run code)"
        raise CheckpointError(f"{what} {path} is unreadable or not a plain checkpoint ({reason[:200]}): "
                              f"{fix}. Nothing of it was run") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {path} is unreadable or not a plain checkpoint (it holds a "
                              f"{type(obj).__name__}, not a dictionary): {fix}")
    return obj

