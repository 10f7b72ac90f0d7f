"""What the benchmarks share, written once: the frozen-backbone set-up, the paper preset's end-to-end
step, SynDFER draws and their caches, and the yardsticks (a device's measured matrix-product peak,
public spec-sheet peaks, peak memory).

Every script here runs as ``python benchmarks/NAME.py`` from the repository root and imports this
module as ``from benchmarks import common`` (each script puts the repository on ``sys.path``
first); the tests import it the same way.

* :func:`frozen_setup`: the ``cpu`` preset's model with its ResNet-18 frozen (weights and BatchNorm
  statistics: ``model.backbone.eval()``), its optimiser, and the network a step calls --
  :class:`msstlib.features.FeatureInput` on packed features when given the feature cache's layout,
  the model itself on frames otherwise. Six benchmarks used to copy these lines by hand.
* :func:`paper_setup`: the ``paper`` preset end to end (ResNet-18 trained from random
  initialisation, SGD at lr 0.1) for one variant, on one device.
* :func:`train_step`: one optimiser step, in fp32 or under bf16 autocast; returns the loss.
* :func:`syndfer`, :func:`subset`, :func:`frame_cache`: a SynDFER draw prepared like DFEW (made once,
  reused), a subset of its clips, and its frame cache at a size.
* :func:`gemm_peak_tflops`, :data:`SPEC_PEAKS`, :func:`peak_rss_mb`: what a step's counted FLOPs/s
  are compared with (MFU), and memory.
* :class:`ArgumentParser`, :func:`data_parser`, :func:`fail`: a bad flag or input is one line on stderr, exit status 2.

Importing it loads no torch (each function imports what it needs), so a script checks its flags in
a moment before paying for torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msstlib.config import PRESETS, DataConfig, resolve  # no torch: flags are checked before it loads

if TYPE_CHECKING:  # annotations only
    import torch

    from msstlib import features

ROOT = Path(__file__).resolve().parents[1]

EXIT_USAGE = 2


@dataclass(frozen=True)
class StudyData:
    """The study's SynDFER, backbone and feature cache as ``make bench`` builds them."""

    annotations: str = "build/syndfer/prepared/annotations.csv"
    root: str = "build/syndfer"
    weights: str = "build/backbones/resnet18_syndfer_64px.pt"


STUDY = StudyData()

# Public spec-sheet peaks, TFLOP/s (dense, no sparsity), for devices no figure was measured on:
# NVIDIA's H100 SXM and H200 datasheets (the same GH100 chip: 989 bf16 tensor, 67 fp32 non-tensor)
# and the TITAN RTX's (130 fp16 tensor, 16.3 fp32). The TITAN RTX has no bf16 tensor cores: its
# 16-bit figure is fp16.
SPEC_PEAKS = {
    "H100 SXM": {"bf16": 989.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "TITAN RTX": {"fp16": 130.0, "fp32": 16.3},
}


def spec_peak(device_name: str) -> tuple[str, dict] | tuple[None, None]:
    """The spec-sheet entry for a CUDA device name (``"NVIDIA H100 80GB HBM3"`` -> H100 SXM), or (None, None)."""
    name = device_name.upper()
    if "H200" in name:
        return "H200", SPEC_PEAKS["H200"]
    if "H100" in name and "PCIE" not in name:
        return "H100 SXM", SPEC_PEAKS["H100 SXM"]
    if "TITAN RTX" in name:
        return "TITAN RTX", SPEC_PEAKS["TITAN RTX"]
    return None, None


# ------------------------------------------------------------------------------------ errors, flags


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a bad flag reported on one line (``prog: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def data_parser(script: str, doc: str) -> ArgumentParser:
    """The parser of a benchmark that reads a prepared SynDFER and its backbone: ``--annotations``,
    ``--root`` and ``--backbone-weights`` (all required; ``make bench`` passes :data:`STUDY`'s),
    with the script's ``prog`` and the first line of its docstring as its description."""
    parser = ArgumentParser(prog=f"python benchmarks/{script}", description=doc.splitlines()[0])
    parser.add_argument("--annotations", required=True, help="the prepared annotations.csv")
    parser.add_argument("--root", required=True, help="the dataset root its paths are relative to")
    parser.add_argument("--backbone-weights", required=True, help="the pre-trained ResNet-18 (.pt)")
    return parser


def fail(message: str) -> None:
    """A bad input found after parsing: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer >= 1")
    return value


# ---------------------------------------------------------------------------- the frozen backbone


@dataclass(frozen=True)
class Step:
    """A model ready to train: ``net`` is what a step calls (the model, or a feature-cache wrapper)."""

    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer


def cpu_data(frames: int) -> DataConfig:
    """The cpu preset's data config at ``frames`` frames (flip only, no random crop)."""
    return dataclasses.replace(PRESETS["cpu"].data, frames=frames)


def frozen_setup(*, depths=(1, 1, 1), weights: str | None = None, layout=None, channels_last: bool = False,
                 seed: int = 0, **model_changes) -> Step:
    """The cpu preset's MSSTNet (depth 1 unless told) as the study trains it: ResNet-18 frozen and in
    eval mode (its BatchNorm statistics fixed), the rest training, the preset's optimiser. With
    ``layout`` (a feature cache's, :attr:`msstlib.features.FeatureStore.layout`) the step reads packed
    features; without, frames. ``model_changes`` are MSSTConfig fields (``embed_dim=64``)."""
    import torch

    from msstlib import features
    from msstlib.model import build_model
    from msstlib.train import make_optimizer

    torch.manual_seed(seed)
    preset = PRESETS["cpu"]
    model = build_model(preset.model.replace(depths=tuple(depths), backbone_weights=weights, **model_changes))
    model.backbone.requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    model.backbone.eval()
    net = features.FeatureInput(model, layout) if layout is not None else model
    return Step(model, net, make_optimizer(model, preset.train))


def require_features(annotations: str, root: str, weights: str, size: int = 64,
                     stages=PRESETS["cpu"].model.stages) -> features.FeatureStore:
    """The matching feature cache, or a one-line error saying how to build it."""
    from msstlib import features

    for flag, path in (("annotations", annotations), ("backbone weights", weights)):
        if not Path(path).is_file():
            fail(f"{flag} {path}: no such file (make bench builds the study's SynDFER, backbone and feature cache)")
    store = features.open_store(annotations, root, weights, size, tuple(stages))
    if store is None:
        fail(f"no feature cache for {annotations} at {size} px with {weights}: build it with `python -m "
             f"msstlib.features --annotations {annotations} --root {root} --backbone-weights {weights} --size {size}` "
             f"(make bench does)")
    return store


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               bf16: bool = False) -> torch.Tensor:
    """One optimiser step on ``(x, y)``; under bf16 autocast on ``x``'s device when ``bf16``. Returns the
    (detached) loss."""
    import torch
    import torch.nn.functional as functional

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = functional.cross_entropy(net(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ------------------------------------------------------------------------------- the paper preset


@dataclass(frozen=True)
class PaperStep:
    """The paper preset of one variant, built on one device, and what one clip costs."""

    variant: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    configs: tuple  # (MSSTConfig, TrainConfig, DataConfig)
    gmacs: float  # forward multiply-accumulates per clip (Table 3's "GFLOPs"; msstlib.flops)

    @property
    def train_flops(self) -> float:
        """FLOPs of one training clip: forward + backward = 3 x forward, 2 FLOPs per MAC."""
        return 6e9 * self.gmacs


def paper_configs(variant: str = "msstnet", *, frames: int = 16, size: int | None = None, lr: float | None = None,
                  overrides: dict | None = None):
    """The paper preset's (model, train, data) configs (``size``, ``lr``: the preset's unless given;
    ``overrides``: any other config fields); a :class:`~msstlib.config.ConfigError` or ``ValueError``
    says why a size or frame count cannot be built (e.g. MSSTNet at 112 px)."""
    overrides = {**({} if size is None else {"image_size": size}), **({} if lr is None else {"lr": lr}),
                 **(overrides or {})}
    return resolve("paper", frames=frames, variant=variant, overrides=overrides)


def paper_setup(variant: str = "msstnet", *, frames: int = 16, size: int | None = None, device="cpu",
                seed: int = 0, lr: float | None = None, overrides: dict | None = None) -> PaperStep:
    """The paper preset end to end: random-init ResNet-18 trained with the rest, SGD at the preset's lr
    (unless ``lr``; ``overrides``: other config fields), channels-last as the preset says, on
    ``device``. The FLOPs are counted before training starts."""
    import torch

    from msstlib.flops import count_gmacs
    from msstlib.model import build_model
    from msstlib.train import make_optimizer

    model_cfg, train_cfg, data_cfg = paper_configs(variant, frames=frames, size=size, lr=lr, overrides=overrides)
    torch.manual_seed(seed)
    layout = torch.channels_last if train_cfg.channels_last else torch.preserve_format
    model = build_model(model_cfg).to(device, memory_format=layout)
    gmacs = count_gmacs(model_cfg, frames, model)["total"]  # leaves the model in eval mode
    model.train()
    return PaperStep(variant, model, make_optimizer(model, train_cfg), (model_cfg, train_cfg, data_cfg), gmacs)


# ------------------------------------------------------------------------------------ data, caches


def syndfer(folder: str | Path, clips: int, size: int, seed: int = 0, jobs: int | None = None) -> tuple[str, str]:
    """A SynDFER draw of ``clips`` clips rendered at ``size`` px in ``folder``, prepared like DFEW
    (``folder/prepared/annotations.csv``); made once and reused while its parameters match. Returns
    ``(annotations, root)``."""
    from data_prep import dfew
    from data_prep.synthetic import SynDFERConfig, generate

    folder = Path(folder)
    annotations = folder / "prepared" / "annotations.csv"
    params = folder / "syndfer_params.json"
    made = None
    if params.is_file():
        made = json.loads(params.read_text())
    if not (made and made.get("clips") == clips and made.get("seed") == seed
            and made.get("config", {}).get("size") == size and annotations.is_file()):
        folder.parent.mkdir(parents=True, exist_ok=True)
        generate(folder, SynDFERConfig(size=size), clips=clips, seed=seed, jobs=jobs, force=True, verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):  # its per-class table is not a benchmark's output
            if dfew.main(["--root", str(folder), "--out", str(annotations.parent)]) != 0:
                fail(f"preparing the SynDFER draw at {folder} failed")
    return str(annotations), str(folder)


def subset(annotations: str | Path, out: str | Path, rows) -> str:
    """An annotations file holding only the given rows (positions) of ``annotations``, in its own
    folder (so its caches are its own); returns its path."""
    import pandas as pd

    table = pd.read_csv(annotations, dtype={"clip": str})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.iloc[list(rows)].to_csv(out, index=False)
    return str(out)


def frame_cache(annotations: str, root: str, size: int) -> float:
    """Builds the frame cache at ``size`` px unless a valid one exists; the seconds it took (0: it existed)."""
    from msstlib.data import ClipDataset, build_cache

    fold = int(next(iter(sorted(set(_column(annotations, "fold"))))))
    if ClipDataset(annotations, root, fold=fold, train=False, cfg=DataConfig(image_size=size)).cached:
        return 0.0
    start = time.perf_counter()
    build_cache(annotations, root, size, progress=False)
    return time.perf_counter() - start


def _column(annotations: str, name: str) -> list:
    import pandas as pd

    return pd.read_csv(annotations, dtype={"clip": str})[name].tolist()


def loader_clips_per_s(dataset, clips: int, batch: int, workers: int, threads: int | None = None,
                       steady: bool = False) -> float:
    """Clips/s of a DataLoader over the first ``clips`` items of ``dataset``, its workers started inside
    the timing as an epoch starts them; ``steady``: from the first batch on instead (the rate a running
    epoch sustains, without the workers' start). ``threads``: torch threads of this process meanwhile
    (a DataLoader worker runs with one; ``None``: leave them)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, range(min(clips, len(dataset)))), batch_size=batch, num_workers=workers,
                        shuffle=False)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        start, seen = time.perf_counter(), 0
        for index, (_, labels) in enumerate(loader):
            if steady and index == 0:
                start = time.perf_counter()
                continue
            seen += len(labels)
        return seen / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)


# -------------------------------------------------------------------------------------- yardsticks


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak_tflops(device="cpu", dtype=None, size: int | None = None, repeats: int = 5) -> float:
    """This device's measured dense matrix-product rate, TFLOP/s: the median over ``repeats`` of one
    ``size x size`` by ``size x size`` product (2 size^3 FLOPs) at the current thread count, after one
    warm-up (``dtype``: float32 unless given). The denominator of a measured MFU."""
    import torch

    dtype = dtype or torch.float32
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    inner = 10 if device.type == "cuda" else 1  # several products per timing on a GPU (microseconds each)
    torch.mm(left, right)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(left, right)
        synchronize(device)
        times.append((time.perf_counter() - start) / inner)
    return 2 * size ** 3 / statistics.median(times) / 1e12


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (its high-water mark, not per phase), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def last_line_json(record: dict) -> None:
    """The machine-readable record, as the last line of the output."""
    print(json.dumps(record), flush=True)


def timing_weights(path: str | Path, seed: int = 0) -> str:
    """A randomly initialised ResNet-18 state dict at ``path`` (made once): what a frozen-backbone
    benchmark needs when only its time matters. The cpu preset refuses to freeze a backbone without
    weights, and the time of a step does not depend on their values; rows trained on it learn nothing
    worth reporting."""
    import torch
    from torchvision.models import resnet18

    path = Path(path)
    if not path.is_file():
        torch.manual_seed(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(resnet18(weights=None).state_dict(), path)
    return str(path)
