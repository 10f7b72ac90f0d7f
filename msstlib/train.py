"""Train and evaluate one configuration (``python -m msstlib.train``; DESIGN.md §3 and §5).

The defaults are the paper's recipe: SGD, lr 0.1, momentum 0.9, weight decay 1e-4, 40 epochs,
lr x0.1 at epochs 20 and 35, cross-entropy, end-to-end training (batch size 32 as Former-DFER:
not stated by the paper). The reported result is the **last epoch** on the full test split with
deterministic sampling; the best test epoch is logged beside it, labelled as selected on the test
set, and never reported as the result.

Every epoch writes ``checkpoint.pt`` atomically and appends to ``log.csv``; ``--resume`` continues
from the checkpoint and reaches the same final result as an uninterrupted run (CPU, same seed).
The final ``result.json`` holds every config field, the metrics, FLOPs, parameters, wall time and
versions. A NaN loss stops the run (exit status 3) and keeps the last good checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import ClipDataset, DataConfig
from .flops import count_gmacs, param_count
from .labels import EMOTIONS
from .metrics import evaluate
from .model import PRESETS as MODEL_PRESETS, MSSTConfig, build_model

EXIT_NAN = 3


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe. Defaults are the paper's (§3) and Former-DFER's where it is silent.

    Args:
        epochs: training epochs (paper: 40).
        batch_size: clips per step. *Not stated*; 32 as Former-DFER.
        optimizer: ``"sgd"`` (paper) or ``"adamw"`` (a deviation for short CPU budgets, see README).
        lr: initial learning rate of the new layers (and of the backbone unless ``backbone_lr`` is set).
        momentum: SGD momentum (Former-DFER: 0.9).
        weight_decay: (Former-DFER: 1e-4).
        schedule: ``"step"`` (x ``gamma`` at ``milestones``, paper) or ``"cosine"``.
        milestones: step-schedule milestones as fractions of ``epochs`` (paper: 20/40 and 35/40), so a
            shortened schedule keeps the paper's shape.
        gamma: step factor (paper: 0.1).
        warmup_epochs: linear warm-up length (0: none, as the paper).
        freeze_backbone: keep the ResNet-18 fixed (weights and BatchNorm statistics). A deviation:
            the paper trains end to end. Used with a pre-trained ``backbone_weights``.
        backbone_lr: learning rate of the backbone when it is trained; ``None`` = ``lr``.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        label_smoothing: cross-entropy label smoothing (0, as the paper).
        channels_last: run the model in channels-last memory format. On by default on every device:
            on the two-core CPU it made a frozen-backbone step 1.2-1.3x faster (``benchmarks/``).
        num_workers: DataLoader worker processes (0 = load in the training process).
        threads: torch CPU threads (0 = torch's default).
    """

    epochs: int = 40
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.875)
    gamma: float = 0.1
    warmup_epochs: int = 0
    freeze_backbone: bool = False
    backbone_lr: float | None = None
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    channels_last: bool = True
    num_workers: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: expected 'sgd' or 'adamw'")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: expected 'step' or 'cosine'")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    def milestone_epochs(self) -> list[int]:
        return [int(round(m * self.epochs)) for m in self.milestones]


@dataclass(frozen=True)
class Preset:
    """A named starting point: model, data and training configs that belong together."""

    model: MSSTConfig
    train: TrainConfig
    data: DataConfig


PRESETS: dict[str, Preset] = {
    "paper": Preset(MODEL_PRESETS["paper"], TrainConfig(), DataConfig(image_size=MODEL_PRESETS["paper"].image_size)),
    # The CPU study (issue 4, README "The CPU preset"): a frozen ResNet-18 pre-trained on single
    # SynDFER frames, a LayerNorm before each MELayer projection, AdamW for the new layers.
    "cpu": Preset(
        MODEL_PRESETS["cpu"].replace(embed_norm=True),
        TrainConfig(epochs=5, batch_size=16, optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine",
                    freeze_backbone=True),
        # No random-resized-crop: with a frozen backbone it cost WAR in calibration (README); flip only.
        DataConfig(image_size=MODEL_PRESETS["cpu"].image_size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
    ),
}


# --------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RunSpec:
    """Where the data are and what this run is; with the three configs it defines a run fully."""

    annotations: str
    root: str
    out: str
    dataset: str
    fold: int | None = None
    split: str | None = None
    preset: str = "paper"
    seed: int = 0
    device: str = "auto"


def versions() -> dict:
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "platform": platform.platform()}


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lr_factor(epoch: float, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at (fractional) epoch ``epoch``."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestone_epochs())


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
    if backbone:
        blr = cfg.backbone_lr if cfg.backbone_lr is not None else cfg.lr
        groups.append({"params": backbone, "lr": blr, "base_lr": blr})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, ps = [], []
    for x, y in tqdm(loader, desc="test", leave=False, disable=not progress, mininterval=5):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x.to(device, non_blocking=True))
        ps.append(logits.argmax(1).cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(ys), np.concatenate(ps)


def train_run(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig,
              resume: bool = False, progress: bool = True) -> dict:
    """Train and evaluate one configuration; return (and write) the result dictionary."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    if data_cfg.image_size != model_cfg.image_size:
        raise ValueError(f"data image_size {data_cfg.image_size} != model image_size {model_cfg.image_size}")
    if data_cfg.frames > model_cfg.max_frames:
        raise ValueError(f"frames={data_cfg.frames} exceeds the model's max_frames={model_cfg.max_frames}")
    device = resolve_device(spec.device)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(spec.seed)

    sel = {"fold": spec.fold} if spec.fold is not None else {"split": spec.split}
    test_sel = sel if spec.fold is not None else {"split": "test"}
    train_set = ClipDataset(spec.annotations, spec.root, train=True, cfg=data_cfg, seed=spec.seed, **sel)
    test_set = ClipDataset(spec.annotations, spec.root, train=False, cfg=data_cfg, **test_sel)

    model = build_model(model_cfg)
    if train_cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
    model = model.to(device, memory_format=torch.channels_last if train_cfg.channels_last else torch.preserve_format)
    optimizer = make_optimizer(model, train_cfg)
    test_loader = DataLoader(test_set, batch_size=train_cfg.batch_size * 2, shuffle=False,
                             num_workers=train_cfg.num_workers)

    config = {"model": asdict(model_cfg), "train": asdict(train_cfg), "data": asdict(data_cfg), "run": asdict(spec)}
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    start_epoch, log_rows, wall_before = 0, [], 0.0
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["config"] != json.loads(json.dumps(config)):
            raise ValueError(f"{ckpt_path} was written by a different configuration; use a new --out or drop --resume")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.random.set_rng_state(ckpt["torch_rng"])
        start_epoch, log_rows, wall_before = ckpt["epoch"], ckpt["log"], ckpt["wall_s"]
        print(f"resuming from {ckpt_path} after epoch {start_epoch}")
    elif ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose a new --out")

    t0, m = time.time(), None
    steps_per_epoch = math.ceil(len(train_set) / train_cfg.batch_size)
    for epoch in range(start_epoch, train_cfg.epochs):
        model.train()
        if train_cfg.freeze_backbone:
            model.backbone.eval()  # frozen BatchNorm statistics too
        train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=train_cfg.batch_size, shuffle=True, drop_last=False,
                            num_workers=train_cfg.num_workers,
                            generator=torch.Generator().manual_seed(spec.seed * 100_003 + epoch))
        t_epoch, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{train_cfg.epochs}", disable=not progress,
                   mininterval=10, leave=True)  # sparse updates keep papermill logs readable
        for step, (x, y) in enumerate(bar):
            factor = lr_factor(epoch + step / steps_per_epoch, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=train_cfg.label_smoothing)
            if not torch.isfinite(loss):
                msg = (f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopping. The last good "
                       f"checkpoint ({ckpt_path}, after epoch {epoch}) is kept. Lower --lr or set --grad-clip.")
                raise FloatingPointError(msg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
        train_s = time.time() - t_epoch
        y_true, y_pred = predict(model, test_loader, device)
        m = evaluate(y_true, y_pred)
        log_rows.append({"epoch": epoch + 1, "loss": loss_sum / seen, "lr": optimizer.param_groups[0]["lr"],
                         "train_acc": correct / seen, "test_war": m.war, "test_uar": m.uar,
                         "seconds": time.time() - t_epoch, "clips_per_s": seen / train_s})
        print(f"epoch {epoch + 1}: loss {loss_sum / seen:.4f}  train acc {correct / seen:.3f}  "
              f"test WAR {m.war:.4f} UAR {m.uar:.4f}  ({seen / train_s:.0f} clips/s)", flush=True)
        _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "torch_rng": torch.random.get_rng_state(), "epoch": epoch + 1, "log": log_rows,
                            "config": json.loads(json.dumps(config)), "wall_s": wall_before + time.time() - t0},
                           ckpt_path)
        pd.DataFrame(log_rows).to_csv(log_path.with_suffix(".tmp"), index=False)
        os.replace(log_path.with_suffix(".tmp"), log_path)

    if m is None:  # resumed a finished run: evaluate the last epoch's weights again
        y_true, y_pred = predict(model, test_loader, device)
        m = evaluate(y_true, y_pred)
    log = pd.DataFrame(log_rows)
    best = log.loc[log["test_war"].idxmax()]
    result = {
        "dataset": spec.dataset, "fold": spec.fold, "split": spec.split,
        "frames": data_cfg.frames, "depths": list(model_cfg.depths), "variant": model_cfg.variant,
        "preset": spec.preset, "epochs": train_cfg.epochs, "seed": spec.seed,
        **m.to_dict(), "test_clips": int(len(y_true)),
        "train_clips": len(train_set),
        "best_epoch_selected_on_test": {"note": "for reference only: chosen on the test set, not a result",
                                        "epoch": int(best["epoch"]), "war": float(best["test_war"]),
                                        "uar": float(best["test_uar"])},
        "gflops": count_gmacs(model_cfg, data_cfg.frames, model)["total"], "params": param_count(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "wall_s": wall_before + time.time() - t0, "device": str(device),
        "config": config, "versions": versions(),
    }
    _atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result


def run(*, annotations: str, root: str, frames: int, depths, variant: str = "msstnet", preset: str = "paper",
        fold: int | None = None, split: str | None = None, dataset: str | None = None, epochs: int | None = None,
        seed: int = 0, work_dir: str, result_dir: str | None = None, threads: int = 0,
        overrides: dict | None = None, progress: bool = True) -> dict:
    """One run from plain parameters (what ``train_eval.ipynb`` calls).

    ``overrides`` maps config field names (of :class:`MSSTConfig`, :class:`TrainConfig` or
    :class:`DataConfig`) to values. Resumes automatically when ``work_dir`` holds a checkpoint.
    ``result_dir``, when given, receives copies of ``result.json`` and ``log.csv``.
    """
    p = PRESETS[preset]
    over = dict(overrides or {})
    pick = lambda cls: {f.name: over.pop(f.name) for f in dataclasses.fields(cls) if f.name in over}  # noqa: E731
    model_cfg = p.model.replace(depths=tuple(depths), variant=variant, **pick(MSSTConfig))
    train_over = pick(TrainConfig)
    if epochs:
        train_over["epochs"] = epochs
    if threads:
        train_over["threads"] = threads
    data_over = {**pick(DataConfig), "frames": frames, "image_size": model_cfg.image_size}
    if over:
        raise ValueError(f"unknown config fields: {sorted(over)}")
    spec = RunSpec(annotations=str(annotations), root=str(root), out=str(work_dir),
                   dataset=dataset or infer_dataset(annotations, root), fold=fold, split=split, preset=preset,
                   seed=seed)
    resume = (Path(work_dir) / "checkpoint.pt").exists()
    try:
        result = train_run(spec, model_cfg, dataclasses.replace(p.train, **train_over),
                           dataclasses.replace(p.data, **data_over), resume=resume, progress=progress)
    except FloatingPointError as exc:
        if result_dir:  # a divergence is an outcome worth keeping: what, where, and the log so far
            dest = Path(result_dir)
            dest.mkdir(parents=True, exist_ok=True)
            log = Path(work_dir) / "log.csv"
            record = {"status": "diverged", "message": str(exc), "dataset": spec.dataset, "fold": fold,
                      "split": split, "frames": frames, "depths": list(depths), "variant": variant,
                      "preset": preset, "seed": seed, "overrides": overrides or {},
                      "log": pd.read_csv(log).to_dict("records") if log.exists() else []}
            _atomic_write_text(dest / "diverged.json", json.dumps(record, indent=1))
        raise
    if result_dir:
        dest = Path(result_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("log.csv", "result.json"):  # result.json last: its presence marks the row done
            tmp = dest / (name + ".tmp")
            tmp.write_bytes((Path(work_dir) / name).read_bytes())
            os.replace(tmp, dest / name)
    return result


# --------------------------------------------------------------------------------------------- CLI

_HANDLED = {"depths", "variant", "epochs", "frames"}  # explicit contract flags


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title, f"override fields of {cls.__name__} (default: the preset's)")
    taken = {a.dest for a in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in _HANDLED or f.name in taken:  # DataConfig.image_size follows the model's
            continue
        kind = str(f.type)
        if "tuple" in kind:
            elem = float if "float" in kind else (int if "int" in kind else str)
            group.add_argument(_flag(f.name), type=elem, nargs="+", default=None)
        elif kind.startswith("bool"):
            group.add_argument(_flag(f.name), type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                               metavar="BOOL")
        elif "float" in kind:
            group.add_argument(_flag(f.name), type=float, default=None)
        elif "int" in kind:
            group.add_argument(_flag(f.name), type=int, default=None)
        else:
            group.add_argument(_flag(f.name), type=str, default=None)


def _overrides(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in _HANDLED and getattr(args, f.name, None) is not None}


def infer_dataset(annotations: str, root: str) -> str:
    table = pd.read_csv(annotations, nrows=1)
    if "split" in table.columns:
        return "ferv39k"
    return "synthetic" if (Path(root) / "syndfer_params.json").exists() else "dfew"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.train", description="Train and evaluate one MSSTNet configuration.")
    p.add_argument("--annotations", required=True, help="annotations.csv written by data_prep")
    p.add_argument("--root", required=True, help="dataset root the clip paths are relative to")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--fold", type=int, help="DFEW-layout fold k (test = fold k, train = the others)")
    where.add_argument("--split", help="FERV39k training split name (test = 'test')")
    p.add_argument("--frames", type=int, default=16, help="T, frames per clip (default 16)")
    p.add_argument("--depths", type=int, nargs=3, default=None, metavar=("L1", "L2", "L3"))
    p.add_argument("--variant", choices=("msstnet", "resnet18-mean"), default=None)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=("synthetic", "dfew", "ferv39k"), default=None,
                   help="name recorded in the result (default: inferred from the annotations/root)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    _add_dataclass_flags(p, MSSTConfig, "model")
    _add_dataclass_flags(p, TrainConfig, "training")
    _add_dataclass_flags(p, DataConfig, "data")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[MSSTConfig, TrainConfig, DataConfig]:
    preset = PRESETS[args.preset]
    model_over = _overrides(args, MSSTConfig)
    if args.depths is not None:
        model_over["depths"] = tuple(args.depths)
    if args.variant is not None:
        model_over["variant"] = args.variant
    train_over = _overrides(args, TrainConfig)
    if args.epochs is not None:
        train_over["epochs"] = args.epochs
    data_over = _overrides(args, DataConfig)
    data_over["frames"] = args.frames
    model_cfg = preset.model.replace(**model_over)
    data_over["image_size"] = model_cfg.image_size  # the data follow the model's resolution
    return model_cfg, dataclasses.replace(preset.train, **train_over), dataclasses.replace(preset.data, **data_over)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model_cfg, train_cfg, data_cfg = configs_from_args(args)
        spec = RunSpec(annotations=args.annotations, root=args.root, out=args.out,
                       dataset=args.dataset or infer_dataset(args.annotations, args.root), fold=args.fold,
                       split=args.split, preset=args.preset, seed=args.seed, device=args.device)
        result = train_run(spec, model_cfg, train_cfg, data_cfg, resume=args.resume, progress=not args.no_progress)
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NAN
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"result: WAR {result['war']:.4f}  UAR {result['uar']:.4f}  -> {Path(args.out) / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
