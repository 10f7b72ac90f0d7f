"""A run's identity: exactly the fields that change its result, and the ids hashed from them.

A **run** is one configuration trained and evaluated once (DESIGN.md §7). :func:`identity` lists
exactly the fields that change its result -- every config field except those marked
``identity=False`` (threads, workers, memory layout: how fast or where the same computation
runs), the backbone weights by their *content* (not their path), the data by a fingerprint of
their *content* (annotations and, for SynDFER, its generator parameters), the dataset, fold or
split, and the seed. :func:`run_id` is a short hash of it: two runs with the same id are the same
run (skip it, resume it on any machine, from any mount, with any thread count); two runs that
differ in a result-changing field never share a folder, a checkpoint or a table cell.
:func:`config_id` names a table cell (the identity without fold, split and seed) and
:func:`build_of` the data and backbone a run was built on.

The three configs (:mod:`msstlib.config`) mark their fields with :data:`IDENTITY`; this module
reads those marks and imports no config, so :mod:`msstlib.config` can offer all of it as its own
(``config.run_id`` is this module's :func:`run_id`). It imports torch only to digest a state dict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

# Field metadata key saying how a field enters a run's identity:
#   True (default)   the value, always;
#   False            never: it changes how fast or where the run goes, not what it computes;
#   "content"        a file path, entered as a digest of its content (never the path): for a
#                    torch state dict, of its tensors (torch.save's bytes are not: they hold a
#                    random serialization id and the file's name); for any other file, of its bytes;
#   "if-changed"     only when it differs from its default (fields added after runs were recorded:
#                    old runs keep their ids).
IDENTITY = "identity"


@lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """A short digest of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file: its bytes are its content
        return _digest(path, size, mtime_ns)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return _digest(path, size, mtime_ns)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def weights_digest(path: str | Path) -> str:
    """A short digest of a state dict's tensors (names, dtypes, shapes, values), so that the same
    weights saved twice, or under another name, are the same weights (:func:`file_digest` of two
    ``torch.save`` files of one state dict differs). Other files: :func:`file_digest`."""
    st = os.stat(path)
    return _weights_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def data_fingerprint(annotations: str | Path, root: str | Path) -> str:
    """What the run's data are, by content: the annotations' bytes and, for SynDFER, the generator's
    parameters (two draws with the same clip list but other knobs are different data)."""
    h = hashlib.sha256(file_digest(annotations).encode())
    params = Path(root) / "syndfer_params.json"
    if params.is_file():
        h.update(file_digest(params).encode())
    return h.hexdigest()[:16]


def _config_identity(cfg) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        how = f.metadata.get(IDENTITY, True)
        value = getattr(cfg, f.name)
        if how is False or (how == "if-changed" and value == f.default):
            continue
        if how == "content":
            value = weights_digest(value) if value else None
        out[f.name] = value
    return out


def identity(model, train, data, *, dataset: str, fold: int | None, split: str | None, seed: int,
             annotations: str | Path, root: str | Path) -> dict:
    """Exactly the fields that change a run's result (DESIGN.md §7); see the module docstring.
    ``model``, ``train``, ``data``: the run's :class:`~msstlib.config.MSSTConfig`,
    :class:`~msstlib.config.TrainConfig` and :class:`~msstlib.config.DataConfig`."""
    ident = {"model": _config_identity(model), "train": _config_identity(train), "data": _config_identity(data),
             "dataset": dataset, "fold": fold, "split": split, "seed": int(seed),
             "data_fingerprint": data_fingerprint(annotations, root)}
    return json.loads(json.dumps(ident))  # tuples -> lists, as stored in JSON


def run_id(ident: dict) -> str:
    """A short, stable hash of an :func:`identity` (10 hex digits)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]


def identity_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The fields in which two identities differ, as ``"train.lr: 0.001 != 0.01"`` lines."""
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            lines += identity_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            lines.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return lines


# Identity fields the study *builds* rather than configures: the data and the pre-trained backbone.
BUILD_FIELDS = ("data_fingerprint", "model.backbone_weights")


def build_of(ident: dict) -> str:
    """A run's build, ``data/backbone`` (:data:`BUILD_FIELDS` of its identity). Runs of two builds
    are never paired by a claim (:func:`msstlib.claims.paired`): a backbone pre-trained on another
    kind of CPU has other weights (README "Builds")."""
    return "/".join(str(_dotted(ident, f) or "-") for f in BUILD_FIELDS)


def _dotted(ident: dict, name: str):
    for part in name.split("."):
        ident = ident.get(part, {}) if isinstance(ident, dict) else {}
    return ident or None


def config_id(ident: dict) -> str:
    """The id of a table cell: the identity without fold, split and seed. Runs that differ only in
    where they were tested or their seed share it and are averaged together; nothing else is."""
    return run_id({k: v for k, v in ident.items() if k not in ("fold", "split", "seed")})
