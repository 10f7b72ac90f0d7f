"""Train and evaluate one configuration (``python -m msstlib.train``; DESIGN.md §3, §5 and §7).

The defaults are the paper's recipe: SGD, lr 0.1, momentum 0.9, weight decay 1e-4, 40 epochs,
lr x0.1 at epochs 20 and 35, cross-entropy, end-to-end training (batch size 32 as Former-DFER:
not stated by the paper). The reported result is the **last epoch** on the full test split with
deterministic sampling; the best test epoch is logged beside it, labelled as selected on the test
set, and never reported as the result. Configs and presets live in :mod:`msstlib.config`.

A run has an identity (:func:`msstlib.config.run_id`): every epoch writes ``checkpoint.pt``
atomically with it, and ``--resume`` continues any checkpoint of the *same* run -- on another
machine, from another mount, with another thread or worker count, on the CPU or a GPU -- and
refuses one of a different run, naming the fields that differ. On the CPU a resumed run reaches
the same result as an uninterrupted one, bit for bit. A NaN loss stops the run (exit status 3)
and keeps the last good checkpoint.

One script for one process or many: under ``torchrun --nproc-per-node K -m msstlib.train ...``
it trains with DistributedDataParallel (gloo on the CPU, NCCL on GPUs). ``batch_size`` stays the
global batch, each process takes its share of every batch (:class:`~msstlib.data.EpochBatches`)
and the loss is scaled so the averaged gradient is the one-process gradient; every test clip is
evaluated exactly once and the predictions are gathered; only rank 0 writes.

Input pipeline: one DataLoader for the whole run (epochs re-seed its sampler); on CUDA, worker
processes, pinned memory and persistent workers by default; frames travel as uint8 and are
normalised on the device; loss and accuracy accumulate on the device, so no step waits for the GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import config as C
from . import files, inputs
from . import paths as P
from .checkpoint import CheckpointError
from .checkpoint import load as _load_plain
from .checkpoint import save as save_checkpoint
from .config import PRESETS, ConfigError, DataConfig, MSSTConfig, TrainConfig  # noqa: F401 (re-exported)
from .resnet_weights import load_resnet18

EXIT_NAN = 3
EXIT_USAGE = 2
CHECK_EVERY_CUDA = 50  # steps between NaN checks on a GPU (each check waits for the GPU)


@dataclass(frozen=True)
class RunSpec:
    """Where the data are and what this run is; with the three configs it defines a run fully.

    ``annotations``, ``root``, ``out`` and ``device`` say where, not what: they are not part of the
    run's identity. ``tag`` is the study's label for what a row tests ("no-pos-embed", ...);
    ``build`` the name of the build the data and backbone are (``"b01"``, :mod:`msstlib.builds`; a
    label: the identity holds the build itself, by content)."""

    annotations: str
    root: str
    out: str
    dataset: str
    fold: int | None = None
    split: str | None = None
    preset: str = "paper"
    seed: int = 0
    device: str = "auto"
    tag: str = ""
    build: str = ""

    def identity(self, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig) -> dict:
        return C.identity(model_cfg, train_cfg, data_cfg, dataset=self.dataset, fold=self.fold, split=self.split,
                          seed=self.seed, annotations=self.annotations, root=self.root)


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
            # the SIMD kernels torch picked: pre-trained weights differ across them (msstlib.study.other_builds)
            "cpu_capability": f"CPU capability {torch.backends.cpu.get_cpu_capability()}", "git_commit": git_commit()}


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


# ------------------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` launch (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Reads torchrun's environment and joins the process group (gloo on the CPU, NCCL on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def resolve_device(name: str, dist: Dist = Dist()):
    """``auto``: this process's GPU (``cuda:LOCAL_RANK`` under torchrun; the first visible one
    otherwise -- a scheduler gives each job its own through CUDA_VISIBLE_DEVICES), else the CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            return device
        return torch.device("cpu")
    return torch.device(name)


def default_workers(device, dist: Dist) -> int:
    """DataLoader workers when ``num_workers`` is None: none on the CPU, where the frame cache is
    cheaper than a worker hand-off and every core trains; on CUDA the process's share of its CPUs
    (at most 8), so decoding and augmentation never wait on the training step."""
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(dist.local_world, 1) - 1))


def _all_sum(values: list, device, dist: Dist) -> list[float]:
    """Sums device scalars over processes; one transfer to the host for all of them."""
    import torch

    t = torch.stack([v.double() if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64, device=device)
                     for v in values])
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.all_reduce(t)
    return t.tolist()


def mixed_precision(device):
    """The one bf16 decision, for training and testing alike: autocast to bfloat16 on CUDA, full
    precision elsewhere, as every committed CPU run was made."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


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

        parts = [None] * dist.world
        tdist.all_gather_object(parts, (keys, y_true.tolist(), y_pred.tolist()))
        keys = [k for p in parts for k in p[0]]
        y_true = np.asarray([v for p in parts for v in p[1]], np.int64)
        y_pred = np.asarray([v for p in parts for v in p[2]], np.int64)
    order = np.argsort(np.asarray(keys, np.int64), kind="stable")
    return y_true[order], y_pred[order]


# ------------------------------------------------------------------------------------------ run


def load_checkpoint(path: Path) -> dict:
    """A checkpoint with every tensor on the CPU, whatever device wrote it or will read it (the
    RNG states must be CPU byte tensors; the model and optimizer copy to their device on load).
    Read without running code (:mod:`msstlib.checkpoint`): a file holding anything but tensors and
    plain types, or an unreadable one, is refused with :class:`CheckpointError`."""
    return _load_plain(path, "checkpoint", fix="remove it or choose another --out")


def _rng_state(device) -> dict:
    import torch

    return {"torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _restore_rng(ckpt: dict, device) -> None:
    import torch

    torch.random.set_rng_state(ckpt["torch_rng"])
    if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], device)


def recorded_config(model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, spec: RunSpec) -> dict:
    """The configuration as ``result.json`` records it: its paths repository-relative
    (:func:`msstlib.paths.relative`), so that committed results hold no machine paths."""
    config = {"model": asdict(model_cfg), "train": asdict(train_cfg), "data": asdict(data_cfg), "run": asdict(spec)}
    config["model"]["backbone_weights"] = P.relative(model_cfg.backbone_weights) or None
    for key in ("annotations", "root", "out"):
        config["run"][key] = P.relative(config["run"][key])
    return config


def train_run(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig,
              resume: bool = False, progress: bool = True) -> dict:
    """Train and evaluate one configuration; return (and, on rank 0, write) the result dictionary.

    The run folder has one writer (:class:`msstlib.files.FolderLock`, held by rank 0 for the whole
    run): a second run on the same ``out`` is refused (:class:`~msstlib.files.LockHeld`). A
    checkpoint to resume is read without running code and checked to be this run's before anything
    else is built. A run refused or failed before its first checkpoint leaves no ``out`` behind."""
    C.check(model_cfg, train_cfg, data_cfg)
    out = Path(spec.out)
    ckpt_path = out / "checkpoint.pt"
    ident = spec.identity(model_cfg, train_cfg, data_cfg)
    rid = C.run_id(ident)
    dist = init_distributed()
    made = not out.exists()
    lock = files.FolderLock(out, "run folder") if dist.main else None
    try:
        if lock is not None:
            lock.acquire()
        if ckpt_path.exists() and not resume:
            raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose a new --out")
        ckpt = None
        if resume and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path)  # refuses a file that is not plain: nothing of it runs
            if ckpt.get("run_id") != rid:
                diff = (C.identity_diff(ckpt["identity"], ident) if isinstance(ckpt.get("identity"), dict)
                        else ["(no run id: written by an older msstlib)"])
                raise ConfigError(f"{ckpt_path} belongs to run {ckpt.get('run_id')}, not to this run {rid}; they "
                                  f"differ in: " + "; ".join(diff) + ". Use a new --out, or drop --resume and remove "
                                  f"the checkpoint")
        return _train(spec, model_cfg, train_cfg, data_cfg, ckpt, ident, rid, dist, progress)
    finally:
        if lock is not None:
            lock.release()
            if made and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # refused or failed before writing anything: leave no empty --out behind


def _train(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, ckpt: dict | None,
           ident: dict, rid: str, dist: Dist, progress: bool) -> dict:
    """:func:`train_run`'s body, under the run folder's lock (``ckpt``: the checkpoint to resume)."""
    import pandas as pd
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from . import features
    from .data import ClipDataset, EpochBatches, keep_resident, to_model_input
    from .flops import count_gmacs, param_count
    from .metrics import evaluate
    from .model import build_model

    out = Path(spec.out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    device = resolve_device(spec.device, dist)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(spec.seed)

    sel = {"fold": spec.fold} if spec.fold is not None else {"split": spec.split}
    test_sel = sel if spec.fold is not None else {"split": "test"}
    train_set = ClipDataset(spec.annotations, spec.root, train=True, cfg=data_cfg, seed=spec.seed, raw=True, **sel)
    test_set = ClipDataset(spec.annotations, spec.root, train=False, cfg=data_cfg, raw=True, **test_sel)

    store = None
    if train_cfg.feature_cache and features.unusable(model_cfg, train_cfg, data_cfg) is None:
        store = features.open_store(spec.annotations, spec.root, model_cfg.backbone_weights, model_cfg.image_size,
                                    model_cfg.stages)
    cached = store.array if store is not None else train_set._store
    residency = keep_resident(cached) if train_cfg.cache_in_memory and cached is not None else "not pinned"
    if store is not None:  # the frozen backbone's outputs, read instead of computed
        train_set, test_set = features.FeatureClipDataset(store, train_set), features.FeatureClipDataset(store, test_set)

        def prepare(x):
            return x.to(device, non_blocking=True).float()
    else:
        def prepare(x):
            return to_model_input(x, data_cfg.normalize, device)

    model = build_model(model_cfg)
    if train_cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
    model = model.to(device, memory_format=torch.channels_last if train_cfg.channels_last else torch.preserve_format)
    optimizer = make_optimizer(model, train_cfg)

    config = recorded_config(model_cfg, train_cfg, data_cfg, spec)
    start_epoch, log_rows, wall_before = 0, [], 0.0
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the parameters' device
            _restore_rng(ckpt, device)
            start_epoch, log_rows, wall_before = int(ckpt["epoch"]), list(ckpt["log"]), float(ckpt["wall_s"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {ckpt_path} is unreadable or not a plain checkpoint of this run "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}): "
                                  f"remove it or choose another --out") from None
        if dist.main:
            print(f"resuming run {rid} from {ckpt_path} after epoch {start_epoch}", flush=True)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    net = model if store is None else features.FeatureInput(model, store.layout)
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    workers = train_cfg.num_workers if train_cfg.num_workers is not None else default_workers(device, dist)
    loader_kw = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                     **({"prefetch_factor": 4} if workers > 0 else {}))
    train_batches = EpochBatches(len(train_set), train_cfg.batch_size, shuffle=True, seed=spec.seed,
                                 rank=dist.rank, world=dist.world)
    train_loader = DataLoader(train_set, batch_sampler=train_batches, **loader_kw)
    test_loader = DataLoader(test_set, batch_sampler=EpochBatches(len(test_set), train_cfg.batch_size * 2,
                                                                  shuffle=False, rank=dist.rank, world=dist.world),
                             generator=torch.Generator(), **loader_kw)  # its own: test passes never shift training draws

    def evaluate_now():
        y_true, y_pred = predict(net, test_loader, device, prepare, dist)
        return evaluate(y_true, y_pred), len(y_true)

    t0, m = time.time(), None
    steps_per_epoch = max(len(train_batches), 1)
    check_every = 1 if device.type == "cpu" else CHECK_EVERY_CUDA
    for epoch in range(start_epoch, train_cfg.epochs):
        net.train()
        if train_cfg.freeze_backbone:
            model.backbone.eval()  # frozen BatchNorm statistics too
        train_batches.set_epoch(epoch)
        t_epoch, seen = time.time(), 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        bad_loss = torch.zeros((), device=device)  # the first non-finite loss of the epoch, and its step
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        step_t = torch.zeros((), dtype=torch.long, device=device)
        # A bar fed by hand: tqdm.auto wrapping the loader would make a second DataLoader iterator per
        # epoch (its constructor calls iter()), and with workers that discards their prefetched batches.
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{train_cfg.epochs}",
                   disable=not (progress and dist.main), mininterval=10, leave=True)  # sparse: readable logs
        for step, (x, y) in enumerate(train_loader):
            bar.update()
            factor = lr_factor(epoch + step / steps_per_epoch, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            n_local = len(y)
            x, y = prepare(x), y.to(device, non_blocking=True)
            with mixed_precision(device):
                logits = net(x)
                if dist.world == 1:
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=train_cfg.label_smoothing)
                else:  # this process's share of the global batch's mean; DDP averages over processes
                    n_global = train_batches.global_size(step)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=train_cfg.label_smoothing,
                                           reduction="sum") * (dist.world / n_global)
            finite = torch.isfinite(loss.detach())
            first = ~finite & (bad_step < 0)
            bad_loss = torch.where(first, loss.detach(), bad_loss)
            bad_step = torch.where(first, step_t, bad_step)
            step_t += 1
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                stop = _all_sum([(bad_step >= 0).long()], device, dist)[0] > 0
                if stop:
                    raise FloatingPointError(_nan_message(float(bad_loss), epoch, int(bad_step), ckpt_path))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            seen += n_local
            correct += (logits.argmax(1) == y).sum()
            per_clip = loss.detach() if dist.world == 1 else loss.detach() * n_global / dist.world / max(n_local, 1)
            loss_sum += per_clip * n_local
        bar.close()
        train_s = time.time() - t_epoch
        loss_total, correct_total, seen_total = _all_sum([loss_sum, correct, seen], device, dist)
        last = epoch + 1 == train_cfg.epochs
        tested = last or (train_cfg.test_every > 0 and (epoch + 1) % train_cfg.test_every == 0)
        if tested:
            m, n_test = evaluate_now()
        log_rows.append({"epoch": epoch + 1, "loss": loss_total / seen_total, "lr": optimizer.param_groups[0]["lr"],
                         "train_acc": correct_total / seen_total, "test_war": m.war if tested else float("nan"),
                         "test_uar": m.uar if tested else float("nan"),
                         "seconds": time.time() - t_epoch, "clips_per_s": seen_total / train_s})
        if dist.main:
            tested_s = f"test WAR {m.war:.4f} UAR {m.uar:.4f}  " if tested else ""
            print(f"epoch {epoch + 1}: loss {loss_total / seen_total:.4f}  train acc {correct_total / seen_total:.3f}  "
                  f"{tested_s}({seen_total / train_s:.0f} clips/s)", flush=True)
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **_rng_state(device),
                                "epoch": epoch + 1, "log": log_rows, "run_id": rid, "identity": ident,
                                "config": json.loads(json.dumps(config)), "wall_s": wall_before + time.time() - t0},
                               ckpt_path)
            files.write_text(log_path, pd.DataFrame(log_rows).to_csv(index=False))
        _barrier(dist)

    if m is None:  # resumed a finished run: evaluate the last epoch's weights again
        m, n_test = evaluate_now()
    log = pd.DataFrame(log_rows)
    best = log.loc[log["test_war"].idxmax()]  # among the evaluated epochs (TrainConfig.test_every)
    result = {
        "dataset": spec.dataset, "fold": spec.fold, "split": spec.split,
        "frames": data_cfg.frames, "depths": list(model_cfg.depths), "variant": model_cfg.variant,
        "preset": spec.preset, "epochs": train_cfg.epochs, "seed": spec.seed, "tag": spec.tag,
        "run_id": rid, "config_id": C.config_id(ident),
        "build": {"name": spec.build or None, "id": C.build_of(ident)},
        **m.to_dict(), "test_clips": int(n_test),
        "train_clips": len(train_set),
        "best_epoch_selected_on_test": {"note": "for reference only: chosen on the test set, not a result",
                                        "epoch": int(best["epoch"]), "war": float(best["test_war"]),
                                        "uar": float(best["test_uar"])},
        "gflops": count_gmacs(model_cfg, data_cfg.frames, model)["total"], "params": param_count(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "wall_s": wall_before + time.time() - t0, "device": str(device), "world_size": dist.world,
        "input": f"feature cache {store.path.name}" if store is not None else "frames", "cache_residency": residency,
        "identity": ident, "config": config, "versions": versions(),
    }
    if dist.main:
        files.write_json(out / "result.json", result, indent=1)
    _barrier(dist)
    return result


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


def _nan_message(value: float, epoch: int, step: int, ckpt_path: Path) -> str:
    return (f"loss became {value} at epoch {epoch + 1}, step {step + 1}; stopping. The last good checkpoint "
            f"({ckpt_path}, after epoch {epoch}) is kept. Lower --lr or set --grad-clip.")


def check_inputs(annotations: str, root: str, *, fold: int | None = None, split: str | None = None,
                 outs: dict[str, str | None] | None = None, configs=None):
    """Every input of a run checked before anything is written, in one pass (:mod:`msstlib.inputs`):
    the annotations file row by row against the root, the fold or split, each output folder in
    ``outs`` (flag -> path) and ``configs`` (a callable returning the three configs, whose
    :class:`ConfigError` joins the list). Returns ``(annotations, root, configs())`` with the paths
    found (:func:`msstlib.paths.resolve`); :class:`~msstlib.inputs.InputError` lists every problem."""
    problems = inputs.Problems()
    annotations, root = inputs.check_annotations(annotations, root, fold=fold, split=split, problems=problems)
    for flag, path in (outs or {}).items():
        if path:
            inputs.check_out(path, flag, problems)
    made = None
    if configs is not None:
        try:
            made = configs()
        except (ConfigError, ValueError) as exc:
            problems.add(str(exc))
    if made is not None and made[0].backbone_weights and Path(made[0].backbone_weights).is_file():
        try:  # read (without running code) and mapped onto ResNet-18's keys, as the model will
            load_resnet18(made[0].backbone_weights, quiet=True)
        except ConfigError as exc:
            problems.add(str(exc))
    problems.raise_if_any()
    return annotations, root, made


def infer_dataset(annotations: str, root: str) -> str:
    """The dataset an annotations file describes (its inputs already checked by :func:`check_inputs`)."""
    header = Path(annotations).open().readline().strip().split(",")
    if "split" in header:
        return "ferv39k"
    return "synthetic" if (Path(root) / "syndfer_params.json").exists() else "dfew"


def run(*, annotations: str, root: str, frames: int, depths, variant: str = "msstnet", preset: str = "paper",
        fold: int | None = None, split: str | None = None, dataset: str | None = None, epochs: int | None = None,
        seed: int = 0, work_dir: str, result_dir: str | None = None, threads: int = 0,
        overrides: dict | None = None, progress: bool = True, tag: str = "", build: str = "") -> dict:
    """One run from plain parameters (what ``train_eval.ipynb`` calls).

    ``overrides`` maps config field names (of :class:`MSSTConfig`, :class:`TrainConfig` or
    :class:`DataConfig`) to values. Resumes automatically when ``work_dir`` holds a checkpoint of
    the same run. ``result_dir``, when given, receives copies of ``result.json`` and ``log.csv``
    (and, when the run diverges, ``diverged.json``; a later success removes it).
    """
    over = dict(overrides or {})
    if threads:
        over["threads"] = threads
    if over.get("backbone_weights"):  # inputs may be recorded repository-relative (msstlib.paths)
        over["backbone_weights"] = P.resolve(over["backbone_weights"])
    annotations, root, (model_cfg, train_cfg, data_cfg) = check_inputs(
        annotations, root, fold=fold, split=split, outs={"work_dir": work_dir, "result_dir": result_dir},
        configs=lambda: C.resolve(preset, frames=frames, depths=depths, variant=variant, epochs=epochs, overrides=over))
    spec = RunSpec(annotations=str(annotations), root=str(root), out=str(work_dir),
                   dataset=dataset or infer_dataset(annotations, root), fold=fold, split=split, preset=preset,
                   seed=seed, tag=tag, build=build)
    resume = (Path(work_dir) / "checkpoint.pt").exists()
    dest = Path(result_dir) if result_dir else None
    try:
        result = train_run(spec, model_cfg, train_cfg, data_cfg, resume=resume, progress=progress)
    except FloatingPointError as exc:
        if dest is not None and int(os.environ.get("RANK", "0")) == 0:
            # A divergence is an outcome worth keeping: what, where, and the log so far.
            dest.mkdir(parents=True, exist_ok=True)
            log = Path(work_dir) / "log.csv"
            import pandas as pd

            ident = spec.identity(model_cfg, train_cfg, data_cfg)  # as result.json: another build's study knows it
            record = {"status": "diverged", "message": str(exc), "dataset": spec.dataset, "fold": fold,
                      "split": split, "frames": frames, "depths": list(depths), "variant": variant,
                      "preset": preset, "seed": seed, "tag": tag, "overrides": overrides or {},
                      "identity": ident, "run_id": C.run_id(ident),
                      "log": pd.read_csv(log).to_dict("records") if log.exists() else []}
            files.write_json(dest / "diverged.json", record, indent=1)
        raise
    if dest is not None and int(os.environ.get("RANK", "0")) == 0:
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("log.csv", "result.json"):  # result.json last: its presence marks the row done
            files.copy_file(Path(work_dir) / name, dest / name)
        (dest / "diverged.json").unlink(missing_ok=True)  # an earlier divergence of this run is stale now
    return result


# --------------------------------------------------------------------------------------------- CLI

_HANDLED = {"depths", "variant", "epochs", "frames"}  # explicit contract flags


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title, f"override fields of {cls.__name__} (default: the preset's)")
    taken = {a.dest for a in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in _HANDLED or f.name in taken:  # DataConfig.image_size follows the model's
            continue
        kind = str(f.type)
        if "tuple" in kind:
            elem = float if "float" in kind else (int if "int" in kind else str)
            group.add_argument(C.flag(f.name), type=elem, nargs="+", default=None)
        elif kind.startswith("bool"):
            group.add_argument(C.flag(f.name), type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                               metavar="BOOL")
        elif "float" in kind:
            group.add_argument(C.flag(f.name), type=float, default=None)
        elif "int" in kind:
            group.add_argument(C.flag(f.name), type=int, default=None)
        else:
            group.add_argument(C.flag(f.name), type=str, default=None)


def _overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in _HANDLED and getattr(args, f.name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.train", description="Train and evaluate one MSSTNet configuration.")
    p.add_argument("--annotations", required=True, help="annotations.csv written by data_prep")
    p.add_argument("--root", required=True, help="dataset root the clip paths are relative to")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--fold", type=int, help="DFEW-layout fold k (test = fold k, train = the others)")
    where.add_argument("--split", help="FERV39k training split name (test = 'test')")
    p.add_argument("--frames", type=int, default=16, help="T, frames per clip (default 16)")
    p.add_argument("--depths", type=int, nargs=3, default=None, metavar=("L1", "L2", "L3"))
    p.add_argument("--variant", choices=C.VARIANTS, default=None)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=("synthetic", "dfew", "ferv39k"), default=None,
                   help="name recorded in the result (default: inferred from the annotations/root)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (the same run only)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-feature-cache", action="store_true",
                   help="run the frozen backbone even when a matching feature cache exists")
    for cls, title in ((MSSTConfig, "model"), (TrainConfig, "training"), (DataConfig, "data")):
        _add_dataclass_flags(p, cls, title)
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[MSSTConfig, TrainConfig, DataConfig]:
    over = {}
    for cls in C.CONFIG_CLASSES:
        over.update(_overrides(args, cls))
    if getattr(args, "no_feature_cache", False):
        over["feature_cache"] = False
    return C.resolve(args.preset, frames=args.frames, depths=args.depths, variant=args.variant, epochs=args.epochs,
                     overrides=over)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _, _, (model_cfg, train_cfg, data_cfg) = check_inputs(args.annotations, args.root, fold=args.fold,
                                                              split=args.split, outs={"--out": args.out},
                                                              configs=lambda: configs_from_args(args))
        spec = RunSpec(annotations=args.annotations, root=args.root, out=args.out,
                       dataset=args.dataset or infer_dataset(args.annotations, args.root), fold=args.fold,
                       split=args.split, preset=args.preset, seed=args.seed, device=args.device)
        result = train_run(spec, model_cfg, train_cfg, data_cfg, resume=args.resume, progress=not args.no_progress)
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NAN
    except inputs.USAGE_ERRORS as exc:  # bad inputs, a held lock, a bad checkpoint, a clip, the OS
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"result: WAR {result['war']:.4f}  UAR {result['uar']:.4f}  run {result['run_id']}  "
              f"-> {Path(args.out) / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
