"""The training loop's parts: the optimiser and its schedule, one epoch, a test pass, the checkpoint,
and the result record.

:func:`msstlib.train.train_run` builds a run's :class:`Parts` (data, model, optimiser, loaders)
and drives them: for each epoch :func:`train_epoch`, then :func:`evaluate` when the epoch is
tested, then :func:`save` (the checkpoint a resumed run continues from, :func:`restore`); after
the last epoch :func:`result_record`, what ``result.json`` holds. Every part runs the same on one
process or under ``torchrun`` (:mod:`msstlib.distributed`): sums and predictions are gathered
over processes, and only rank 0 writes.

Why the loop is written as it is: loss and accuracy accumulate on the device, and on a GPU the
NaN check waits for it only every :data:`CHECK_EVERY_CUDA` steps, so no step waits for the
GPU; the checkpoint holds the random generator's state, so that a resumed run draws what an
uninterrupted one would have drawn, bit for bit on the CPU.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .checkpoint import CheckpointError
from .checkpoint import load as _load_plain
from .checkpoint import save as save_checkpoint
from .config import DataConfig, MSSTConfig, TrainConfig
from .distributed import Dist, all_sum, mixed_precision
from .identity import build_of, config_id

if TYPE_CHECKING:  # torch, numpy and the parts built on them load when a run starts, not on import
    import torch
    from torch.utils.data import DataLoader

    from .data import EpochBatches
    from .features import FeatureStore
    from .metrics import Metrics

CHECK_EVERY_CUDA = 50  # steps between NaN checks on a GPU (each check waits for the GPU)


# ------------------------------------------------------------------------------ optimiser, schedule


def lr_factor(epoch: float, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at (fractional) epoch ``epoch``."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestone_epochs())


def decays(name: str, param) -> bool:
    """Whether ``weight_decay_on="matrices"`` decays a parameter: a linear or convolution weight,
    not a norm, a bias or a position embedding (``MELayer.pos``)."""
    return param.ndim >= 2 and not name.endswith(".pos")


def make_optimizer(model, cfg: TrainConfig):
    """The optimiser over the trainable parameters: the new layers at ``lr``, the backbone (when
    trained) at ``backbone_lr``; with ``weight_decay_on="matrices"`` each of them split into a
    decayed and an undecayed group (:func:`decays`)."""
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    blr = cfg.backbone_lr if cfg.backbone_lr is not None else cfg.lr
    parts = [([(n, p) for n, p in named if not n.startswith("backbone.")], cfg.lr),
             ([(n, p) for n, p in named if n.startswith("backbone.")], blr)]
    groups = []
    for members, lr in parts:
        if not members:
            continue
        if cfg.weight_decay_on == "all":
            groups.append({"params": [p for _, p in members], "lr": lr, "base_lr": lr})
            continue
        for decay in (True, False):
            chosen = [p for n, p in members if decays(n, p) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "base_lr": lr,
                               "weight_decay": cfg.weight_decay if decay else 0.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


# ------------------------------------------------------------------------------------------ epochs


@dataclass(frozen=True)
class Parts:
    """What the loop runs on, built once per run (:func:`msstlib.train.build`)."""

    device: torch.device
    model: torch.nn.Module  # what the checkpoint holds
    net: torch.nn.Module  # what is called: the model, behind the feature cache's input and DDP when used
    optimizer: torch.optim.Optimizer
    prepare: Callable  # a loaded batch -> the model's input on the device
    train_batches: EpochBatches  # the train loader's sampler: re-seeded every epoch
    train_loader: DataLoader
    test_loader: DataLoader
    train_clips: int
    store: FeatureStore | None  # the frozen backbone's outputs, read instead of computed (None: frames)
    residency: str  # whether the cache the run reads was pinned in memory (msstlib.data.keep_resident)


def train_epoch(parts: Parts, cfg: TrainConfig, epoch: int, dist: Dist, *, progress: bool, ckpt_path: Path) -> dict:
    """One epoch of optimiser steps (``epoch`` counts from 0), the learning rate set before each
    step (:func:`lr_factor`). Returns the epoch's mean ``loss``, ``train_acc``, ``clips`` and
    ``train_s`` over all processes. A non-finite loss raises :class:`FloatingPointError` naming
    the step and the last good checkpoint, ``ckpt_path``."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    device, net, optimizer, batches = parts.device, parts.net, parts.optimizer, parts.train_batches
    steps_per_epoch = max(len(batches), 1)
    check_every = 1 if device.type == "cpu" else CHECK_EVERY_CUDA
    net.train()
    if cfg.freeze_backbone:
        parts.model.backbone.eval()  # frozen BatchNorm statistics too
    batches.set_epoch(epoch)
    t_epoch, seen = time.time(), 0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)  # the first non-finite loss of the epoch, and its step
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    step_t = torch.zeros((), dtype=torch.long, device=device)
    # A bar fed by hand: tqdm.auto wrapping the loader would make a second DataLoader iterator per
    # epoch (its constructor calls iter()), and with workers that discards their prefetched batches.
    bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (progress and dist.main), mininterval=10, leave=True)  # sparse: readable logs
    for step, (x, y) in enumerate(parts.train_loader):
        bar.update()
        factor = lr_factor(epoch + step / steps_per_epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        n_local = len(y)
        x, y = parts.prepare(x), y.to(device, non_blocking=True)
        with mixed_precision(device):
            logits = net(x)
            if dist.world == 1:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            else:  # this process's share of the global batch's mean; DDP averages over processes
                n_global = batches.global_size(step)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing,
                                       reduction="sum") * (dist.world / n_global)
        finite = torch.isfinite(loss.detach())
        first = ~finite & (bad_step < 0)
        bad_loss = torch.where(first, loss.detach(), bad_loss)
        bad_step = torch.where(first, step_t, bad_step)
        step_t += 1
        if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
            stop = all_sum([(bad_step >= 0).long()], device, dist)[0] > 0
            if stop:
                raise FloatingPointError(_nan_message(float(bad_loss), epoch, int(bad_step), ckpt_path))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.grad_clip)
        optimizer.step()
        seen += n_local
        correct += (logits.argmax(1) == y).sum()
        per_clip = loss.detach() if dist.world == 1 else loss.detach() * n_global / dist.world / max(n_local, 1)
        loss_sum += per_clip * n_local
    bar.close()
    train_s = time.time() - t_epoch
    loss_total, correct_total, seen_total = all_sum([loss_sum, correct, seen], device, dist)
    return {"loss": loss_total / seen_total, "train_acc": correct_total / seen_total, "clips": seen_total,
            "train_s": train_s}


def _nan_message(value: float, epoch: int, step: int, ckpt_path: Path) -> str:
    return (f"loss became {value} at epoch {epoch + 1}, step {step + 1}; stopping. The last good checkpoint "
            f"({ckpt_path}, after epoch {epoch}) is kept. Lower --lr or set --grad-clip.")


# ------------------------------------------------------------------------------------------ testing


def predict(model, loader, device, prepare, dist: Dist = Dist(), progress: bool = False):
    """Predicted and true labels of every clip the loader yields, gathered over processes (each
    test clip is dealt to exactly one process; the result is in clip order). ``prepare`` turns a
    loaded batch into the model's input on ``device``."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    model.eval()
    keys, ys, ps = [], [], []
    with torch.no_grad():
        # The test sampler is deterministic, so iterating it beside the loader gives each batch's keys.
        for batch_keys, (x, y) in tqdm(zip(loader.batch_sampler, loader), desc="test", leave=False,
                                       disable=not progress, mininterval=5, total=len(loader)):
            with mixed_precision(device):
                logits = model(prepare(x))
            ps.append(logits.argmax(1))  # stays on the device until the end
            ys.append(y)
            keys += [k for k, _ in batch_keys]
    y_true = torch.cat(ys).numpy() if ys else np.zeros(0, np.int64)
    y_pred = torch.cat(ps).cpu().numpy() if ps else np.zeros(0, np.int64)
    if dist.world > 1:
        import torch.distributed as tdist

        gathered = [None] * dist.world
        tdist.all_gather_object(gathered, (keys, y_true.tolist(), y_pred.tolist()))
        keys = [k for p in gathered for k in p[0]]
        y_true = np.asarray([v for p in gathered for v in p[1]], np.int64)
        y_pred = np.asarray([v for p in gathered for v in p[2]], np.int64)
    order = np.argsort(np.asarray(keys, np.int64), kind="stable")
    return y_true[order], y_pred[order]


def evaluate(parts: Parts, dist: Dist) -> tuple[Metrics, int]:
    """The test split's metrics (WAR, UAR, ...: :func:`msstlib.metrics.evaluate`) and its clip count."""
    from . import metrics

    y_true, y_pred = predict(parts.net, parts.test_loader, parts.device, parts.prepare, dist)
    return metrics.evaluate(y_true, y_pred), len(y_true)


# --------------------------------------------------------------------------------------- checkpoint


def load_checkpoint(path: Path) -> dict:
    """A checkpoint with every tensor on the CPU, whatever device wrote it or will read it (the
    RNG states must be CPU byte tensors; the model and optimizer copy to their device on load).
    Read without running code (:mod:`msstlib.checkpoint`): a file holding anything but tensors and
    plain types, or an unreadable one, is refused with :class:`CheckpointError`."""
    return _load_plain(path, "checkpoint", fix="remove it or choose another --out")


def rng_state(device) -> dict:
    import torch

    return {"torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(ckpt: dict, device) -> None:
    import torch

    torch.random.set_rng_state(ckpt["torch_rng"])
    if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], device)


def save(path: Path, parts: Parts, *, epochs_done: int, log_rows: list[dict], rid: str, ident: dict, config: dict,
         wall_s: float) -> None:
    """Writes the checkpoint after ``epochs_done`` epochs, atomically (:mod:`msstlib.checkpoint`):
    everything :func:`restore` needs to continue, and the run's id to refuse another run's file."""
    save_checkpoint({"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
                     **rng_state(parts.device), "epoch": epochs_done, "log": log_rows, "run_id": rid,
                     "identity": ident, "config": json.loads(json.dumps(config)), "wall_s": wall_s}, path)


def restore(ckpt: dict, model, optimizer, device, path: Path) -> tuple[int, list[dict], float]:
    """Loads a checkpoint of this run (already checked by its id) into the model, the optimiser
    and the random generator; returns the epochs done, the log so far and the seconds spent."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the parameters' device
        restore_rng(ckpt, device)
        return int(ckpt["epoch"]), list(ckpt["log"]), float(ckpt["wall_s"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or not a plain checkpoint of this run "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}): "
                              f"remove it or choose another --out") from None


# ------------------------------------------------------------------------------------------- result


def git_commit() -> str | None:
    """The commit of the code that ran (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict:
    import numpy as np
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            # the SIMD kernels torch picked: pre-trained weights differ across them (msstlib.runs.other_builds)
            "cpu_capability": f"CPU capability {torch.backends.cpu.get_cpu_capability()}", "git_commit": git_commit()}


def result_record(spec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, parts: Parts,
                  result: Metrics, n_test: int, log_rows: list[dict], *, rid: str, ident: dict,
                  config: dict, wall_s: float, dist: Dist) -> dict:
    """What ``result.json`` holds: the last epoch's test metrics (the result), the best tested
    epoch beside them (labelled as selected on the test set: a reference, never the result), the
    model's cost, and what made the run (identity, config, versions). ``spec``: the run's
    :class:`~msstlib.train.RunSpec`."""
    import pandas as pd

    from .flops import count_gmacs, param_count

    log = pd.DataFrame(log_rows)
    best = log.loc[log["test_war"].idxmax()]  # among the evaluated epochs (TrainConfig.test_every)
    model = parts.model
    return {
        "dataset": spec.dataset, "fold": spec.fold, "split": spec.split,
        "frames": data_cfg.frames, "depths": list(model_cfg.depths), "variant": model_cfg.variant,
        "preset": spec.preset, "epochs": train_cfg.epochs, "seed": spec.seed, "tag": spec.tag,
        "run_id": rid, "config_id": config_id(ident),
        "build": {"name": spec.build or None, "id": build_of(ident)},
        **result.to_dict(), "test_clips": int(n_test),
        "train_clips": parts.train_clips,
        "best_epoch_selected_on_test": {"note": "for reference only: chosen on the test set, not a result",
                                        "epoch": int(best["epoch"]), "war": float(best["test_war"]),
                                        "uar": float(best["test_uar"])},
        "gflops": count_gmacs(model_cfg, data_cfg.frames, model)["total"], "params": param_count(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "wall_s": wall_s, "device": str(parts.device), "world_size": dist.world,
        "input": f"feature cache {parts.store.path.name}" if parts.store is not None else "frames",
        "cache_residency": parts.residency, "identity": ident, "config": config, "versions": versions(),
    }
