"""ResNet-18 weights from the layouts DFER work passes around (``--backbone-weights``; issue 27).

DFER models commonly start from a ResNet-18 pre-trained on faces (MS-Celeb-1M, as Former-DFER and
its followers), saved in other layouts than torchvision's state dict. :func:`load_resnet18` reads
any of these, without running code (:mod:`msstlib.checkpoint`), and maps it onto torchvision's
keys:

* torchvision's own ``resnet18`` state dict (ImageNet, or ours from ``msstlib.pretrain``);
* a wrapper dictionary holding it under ``state_dict``, ``model``, ``net`` or ``model_state_dict``
  (a training checkpoint), other entries (epoch, optimizer, ...) ignored;
* keys prefixed ``module.`` (saved from ``DataParallel``), ``features.`` / ``feature.`` /
  ``backbone.`` / ``encoder.`` (a backbone inside a bigger model), in any combination;
* ``features`` as ``nn.Sequential(*list(resnet18().children())[:-1])``: numbered children
  (``0.weight`` is ``conv1``, ``4.0.conv1.weight`` is ``layer1.0.conv1``);
* an ``fc`` of another size (an 8,631-identity face classifier): not used, since only the
  convolutional stages feed MSSTNet.

What was mapped, ignored or missing is reported. A file that does not map to a ResNet-18 (a key
missing, or a tensor of another shape) is refused with :class:`~msstlib.checkpoint.CheckpointError`
(exit status 2), naming what is wrong.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

from .checkpoint import CheckpointError, load

WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "features.", "feature.", "backbone.", "encoder.")
# nn.Sequential(*list(resnet18().children())[:-1]): the numbered children and their names
SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4", "9": "fc"}
FIX = ("give a ResNet-18 state dict: torchvision's (torch.save(resnet18().state_dict(), FILE)), or a face-"
       "pretrained one in a common layout (README \"Real faces\")")


@lru_cache(maxsize=1)
def reference() -> dict:
    """torchvision ResNet-18's keys and shapes (built once, never downloaded). Built under
    ``fork_rng``: its random initialisation must not draw from the generator a run has just seeded
    (the first run of a process would otherwise train other weights under the same run id)."""
    import torch
    from torchvision.models import resnet18

    with torch.random.fork_rng(devices=[]):
        return {k: tuple(v.shape) for k, v in resnet18(weights=None).state_dict().items()}


def _is_state(obj) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def map_keys(state: dict, what: str = "--backbone-weights") -> tuple[dict, list[str]]:
    """``state`` (any layout above) as torchvision ResNet-18 keys (without ``fc``), and notes on what
    was done; :class:`CheckpointError` when it does not map."""
    import torch

    notes = []
    for key in WRAPPERS:
        if not _is_state(state) and isinstance(state.get(key), dict):
            state = state[key]
            notes.append(f"read its {key!r} entry")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if len(tensors) < len(state):
        notes.append(f"ignored {len(state) - len(tensors)} entries that are not tensors")
    mapped, stripped = {}, set()
    for key, value in tensors.items():
        k = key
        while True:
            hit = next((p for p in PREFIXES if k.startswith(p)), None)
            if hit is None:
                break
            stripped.add(hit)
            k = k[len(hit):]
        first, dot, rest = k.partition(".")
        if first.isdigit() and first in SEQUENTIAL:
            stripped.add("numbered children")
            k = SEQUENTIAL[first] + dot + rest
        mapped[k] = value
    if stripped:
        notes.append("mapped " + ", ".join(sorted(f"'{p}'" if p.endswith(".") else p for p in stripped)))
    ref = reference()
    if "fc.weight" in mapped and tuple(mapped["fc.weight"].shape) != ref["fc.weight"]:
        notes.append(f"its fc ({mapped['fc.weight'].shape[0]} outputs) is not used")
    mapped = {k: v for k, v in mapped.items() if not k.startswith("fc.")}
    need = {k: s for k, s in ref.items() if not k.startswith("fc.")}
    missing = [k for k in need if k not in mapped]
    shaped = [f"{k} {tuple(mapped[k].shape)} (expected {need[k]})" for k in need
              if k in mapped and tuple(mapped[k].shape) != need[k]]
    unexpected = [k for k in mapped if k not in need]
    deeper = [k for k in unexpected if re.match(r"(layer[1-4]|conv1|bn1)\.", k)]
    if deeper and not (missing or shaped):  # a ResNet-34 holds every ResNet-18 key, and more blocks
        raise CheckpointError(f"{what}: does not map to a torchvision ResNet-18: it has {len(deeper)} keys of "
                              f"blocks a ResNet-18 does not have (e.g. {', '.join(deeper[:3])}): a deeper ResNet? "
                              f"{FIX}")
    if missing or shaped:
        problem = (f"{len(missing)} of {len(need)} ResNet-18 keys missing (e.g. {', '.join(missing[:3])})"
                   if missing else f"{len(shaped)} tensors of another shape (e.g. {shaped[0]})")
        raise CheckpointError(f"{what}: does not map to a torchvision ResNet-18: {problem}"
                              + (f"; it has keys such as {', '.join(list(tensors)[:3])}" if tensors else "")
                              + f". {FIX}")
    if unexpected:
        notes.append(f"ignored {len(unexpected)} keys a ResNet-18 does not have (e.g. {', '.join(unexpected[:3])})")
        mapped = {k: v for k, v in mapped.items() if k in need}
    return mapped, notes


@lru_cache(maxsize=4)
def _mapped(resolved: str, size: int, mtime_ns: int, what: str, given: str) -> tuple[dict, list[str]]:
    """One read and mapping per file version: a run checks its weights before any work and builds
    its backbone from them after, and the feature cache reads them too. The tensors are shared, so
    callers copy them (``load_state_dict`` does)."""
    return map_keys(load(given, what=what, fix=FIX), what=f"{what} {given}")


def load_resnet18(path: str | Path, what: str = "--backbone-weights", quiet: bool = False) -> dict:
    """The ResNet-18 state dict (torchvision keys, no ``fc``) a weights file holds, in any layout of
    the module docstring; a line on stderr says what was mapped or ignored."""
    st = Path(path).stat() if Path(path).is_file() else None
    mapped, notes = _mapped(str(Path(path).resolve()), st.st_size if st else -1, st.st_mtime_ns if st else -1,
                            what, str(path))
    if notes and not quiet:
        print(f"note: {what} {Path(path).name}: " + "; ".join(notes), file=sys.stderr, flush=True)
    return mapped

