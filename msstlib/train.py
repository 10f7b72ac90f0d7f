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

This module is the run: :class:`RunSpec`, :func:`train_run` (:func:`build` the parts, then each
epoch trained, tested and checkpointed), :func:`run` for notebooks and the study, and the CLI. The
loop's parts -- one epoch, a test pass, the checkpoint, the result record, the optimiser -- are
:mod:`msstlib.loop`; where a process computes (torchrun, device, bf16) is :mod:`msstlib.distributed`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import config, files, inputs, loop, paths
from .config import PRESETS, ConfigError, DataConfig, MSSTConfig, TrainConfig  # noqa: F401 (re-exported)
from .distributed import Dist, barrier, default_workers, init_distributed, resolve_device
from .loop import load_checkpoint, make_optimizer
from .loop import versions  # noqa: F401 (re-exported: the study records it from here)
from .resnet_weights import load_resnet18

EXIT_NAN = 3
EXIT_USAGE = 2


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
        return config.identity(model_cfg, train_cfg, data_cfg, dataset=self.dataset, fold=self.fold, split=self.split,
                          seed=self.seed, annotations=self.annotations, root=self.root)


def recorded_config(model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, spec: RunSpec) -> dict:
    """The configuration as ``result.json`` records it: its paths repository-relative
    (:func:`msstlib.paths.relative`), so that committed results hold no machine paths."""
    recorded = {"model": asdict(model_cfg), "train": asdict(train_cfg), "data": asdict(data_cfg), "run": asdict(spec)}
    recorded["model"]["backbone_weights"] = paths.relative(model_cfg.backbone_weights) or None
    for key in ("annotations", "root", "out"):
        recorded["run"][key] = paths.relative(recorded["run"][key])
    return recorded


def train_run(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig,
              resume: bool = False, progress: bool = True) -> dict:
    """Train and evaluate one configuration; return (and, on rank 0, write) the result dictionary.

    The run folder has one writer (:class:`msstlib.files.FolderLock`, held by rank 0 for the whole
    run): a second run on the same ``out`` is refused (:class:`~msstlib.files.LockHeld`). A
    checkpoint to resume is read without running code and checked to be this run's before anything
    else is built. A run refused or failed before its first checkpoint leaves no ``out`` behind."""
    config.check(model_cfg, train_cfg, data_cfg)
    out = Path(spec.out)
    ckpt_path = out / "checkpoint.pt"
    ident = spec.identity(model_cfg, train_cfg, data_cfg)
    rid = config.run_id(ident)
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
                diff = (config.identity_diff(ckpt["identity"], ident) if isinstance(ckpt.get("identity"), dict)
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


def build(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, dist: Dist,
          ckpt: dict | None = None, ckpt_path: Path | None = None) -> tuple[loop.Parts, tuple[int, list[dict], float]]:
    """A run's parts (:class:`msstlib.loop.Parts`): the datasets, the feature store when a matching
    one exists, the model and its optimiser, the checkpoint ``ckpt`` restored into them, the loaders.
    Returns them with the epochs done, the log so far and the seconds spent (none without ``ckpt``).

    The order is the run's: the seed, then the datasets and the model's initial weights, then the
    restored random state, so that a fresh and a resumed run draw what they always drew."""
    import torch
    from torch.utils.data import DataLoader

    from . import features
    from .data import ClipDataset, EpochBatches, keep_resident, to_model_input
    from .model import build_model

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
                                    model_cfg.stages, candidates=data_cfg.candidate_frames,
                                    precision=data_cfg.feature_precision)
    if store is None and data_cfg.feature_precision != "float16":  # it describes the cache: the run must read one
        why = features.unusable(model_cfg, train_cfg, data_cfg) or (
            "the feature cache is switched off" if not train_cfg.feature_cache else
            f"no {data_cfg.feature_precision} feature cache was found for this data, backbone and size")
        raise ConfigError(f"feature_precision={data_cfg.feature_precision} says how a frozen-backbone feature cache "
                          f"stores features, but {why}; build it with `python -m msstlib.features --annotations ... "
                          f"--precision {data_cfg.feature_precision}`, or leave feature_precision at float16")
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
    done = loop.restore(ckpt, model, optimizer, device, ckpt_path) if ckpt is not None else (0, [], 0.0)

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
    return loop.Parts(device=device, model=model, net=net, optimizer=optimizer, prepare=prepare,
                      train_batches=train_batches, train_loader=train_loader, test_loader=test_loader,
                      train_clips=len(train_set), store=store, residency=residency), done


def _train(spec: RunSpec, model_cfg: MSSTConfig, train_cfg: TrainConfig, data_cfg: DataConfig, ckpt: dict | None,
           ident: dict, rid: str, dist: Dist, progress: bool) -> dict:
    """:func:`train_run`'s body, under the run folder's lock (``ckpt``: the checkpoint to resume):
    :func:`build`, then every epoch trained, tested when due and checkpointed, then the result."""
    import pandas as pd

    out = Path(spec.out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    parts, (start_epoch, log_rows, wall_before) = build(spec, model_cfg, train_cfg, data_cfg, dist, ckpt, ckpt_path)
    if ckpt is not None and dist.main:
        print(f"resuming run {rid} from {ckpt_path} after epoch {start_epoch}", flush=True)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    recorded = recorded_config(model_cfg, train_cfg, data_cfg, spec)

    t0, m = time.time(), None
    for epoch in range(start_epoch, train_cfg.epochs):
        t_epoch = time.time()
        trained = loop.train_epoch(parts, train_cfg, epoch, dist, progress=progress, ckpt_path=ckpt_path)
        last = epoch + 1 == train_cfg.epochs
        tested = last or (train_cfg.test_every > 0 and (epoch + 1) % train_cfg.test_every == 0)
        if tested:
            m, n_test = loop.evaluate(parts, dist)
        log_rows.append({"epoch": epoch + 1, "loss": trained["loss"], "lr": parts.optimizer.param_groups[0]["lr"],
                         "train_acc": trained["train_acc"], "test_war": m.war if tested else float("nan"),
                         "test_uar": m.uar if tested else float("nan"), "seconds": time.time() - t_epoch,
                         "clips_per_s": trained["clips"] / trained["train_s"]})
        if dist.main:
            tested_s = f"test WAR {m.war:.4f} UAR {m.uar:.4f}  " if tested else ""
            print(f"epoch {epoch + 1}: loss {trained['loss']:.4f}  train acc {trained['train_acc']:.3f}  "
                  f"{tested_s}({trained['clips'] / trained['train_s']:.0f} clips/s)", flush=True)
            loop.save(ckpt_path, parts, epochs_done=epoch + 1, log_rows=log_rows, rid=rid, ident=ident, config=recorded,
                      wall_s=wall_before + time.time() - t0)
            files.write_text(log_path, pd.DataFrame(log_rows).to_csv(index=False))
        barrier(dist)

    if m is None:  # resumed a finished run: evaluate the last epoch's weights again
        m, n_test = loop.evaluate(parts, dist)
    result = loop.result_record(spec, model_cfg, train_cfg, data_cfg, parts, m, n_test, log_rows, rid=rid,
                                ident=ident, config=recorded, wall_s=wall_before + time.time() - t0, dist=dist)
    if dist.main:
        files.write_json(out / "result.json", result, indent=1)
    barrier(dist)
    return result


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
        over["backbone_weights"] = paths.resolve(over["backbone_weights"])
    annotations, root, (model_cfg, train_cfg, data_cfg) = check_inputs(
        annotations, root, fold=fold, split=split, outs={"work_dir": work_dir, "result_dir": result_dir},
        configs=lambda: config.resolve(preset, frames=frames, depths=depths, variant=variant, epochs=epochs, overrides=over))
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
                      "identity": ident, "run_id": config.run_id(ident),
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
            group.add_argument(config.flag(f.name), type=elem, nargs="+", default=None)
        elif kind.startswith("bool"):
            group.add_argument(config.flag(f.name), type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None,
                               metavar="BOOL")
        elif "float" in kind:
            group.add_argument(config.flag(f.name), type=float, default=None)
        elif "int" in kind:
            group.add_argument(config.flag(f.name), type=int, default=None)
        else:
            group.add_argument(config.flag(f.name), type=str, default=None)


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
    p.add_argument("--variant", choices=config.VARIANTS, default=None)
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
    for cls in config.CONFIG_CLASSES:
        over.update(_overrides(args, cls))
    if getattr(args, "no_feature_cache", False):
        over["feature_cache"] = False
    return config.resolve(args.preset, frames=args.frames, depths=args.depths, variant=args.variant, epochs=args.epochs,
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
