"""The batch runner: every table row through papermill, one job per row (``python -m msstlib.study``).

The grid is plain data (:func:`grid`): the eight subsets of the three T-Formers at T=4 (one block
each), T in {4, 8, 12, 16} x depth in {1, 2, 3}, the ResNet-18 + temporal-mean baseline, plus rows
beyond the paper -- the T=4 depth-1 model without its temporal position embedding (the clean test
of temporal order), Table 3's same-backbone baselines run under our protocol (ResNet-18 + LSTM /
GRU / TCN, T=4), the T=4 depth-1 model with joint space-time attention, and two more seeds of one
row (seed-to-seed spread) -- times the chosen folds. Each row runs ``notebooks/train_eval.ipynb``
with papermill.

The claims (:mod:`msstlib.claims`) need more than one seed: ``--seeds 1 2`` adds every row a claim
compares with those seeds; ``--claims-only`` keeps only those rows, ``--frames 4`` only T=4 rows.
``--regime dfew-like`` runs on SynDFER's DFEW-like regime (one frame carries most of the signal):
data in ``build/syndfer-dfewlike``, results in ``results/synthetic-dfewlike``; its claims join the
default regime's claims table when the default study renders its tables.

Where things go (DESIGN.md §7). A row is a run with an identity (:func:`msstlib.config.run_id`);
its folder is ``<readable prefix>_<run id>``, e.g. ``T04_d111_s0_fold1_3f9c0a1b2d``:
``results/<dataset>/runs/<folder>/{result.json, log.csv, train_eval.ipynb}`` (committed) and
``<work-dir>/<results name>/runs/<folder>/{checkpoint.pt, job.json}`` (scratch). A row whose
``result.json`` exists is skipped; a row with a checkpoint resumes from it, on any machine. Another
preset, epoch count or override is another run: another folder, never a skipped row.

Executors, all through submitit (the job is :class:`RowJob`, a plain picklable callable):

* ``--executor local`` (default): jobs run on this machine, ``--jobs N`` at a time, each with
  ``cores / N`` threads and, on a machine with GPUs, its own GPU; the command waits and renders
  the tables at the end.
* ``--executor slurm``: one array job per row on a SLURM cluster; the command prints the job ids and
  returns. A job that times out or is pre-empted is requeued and resumes from its checkpoint.
  The job that lands the last row renders the tables (or run ``--collect``).

``--status`` lists rows as done / running / failed / todo; running the same command again submits
only what is missing. Optimiser probes (the paper's SGD on the ``cpu`` preset) may diverge: that
outcome is recorded in ``diverged.json`` and reported in the tables, not counted as a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import config as C
from . import files, inputs
from . import paths as P
from .builds import (BACKBONE, REGIME_SUFFIX, REGIMES, ROOT, UNIT_FOLD, Build, backbone_path,  # noqa: F401
                     check_regime, drop_feature_cache, prepare_synthetic, step)
from .fixtures import tiny_backbone, tiny_synthetic  # noqa: F401 (re-exported: moved to msstlib.fixtures)
from .notebooks import execute

NOTEBOOKS = ROOT / "notebooks"
QUICK_CAM_CLIPS = 24  # Grad-CAM scores of the quick run: a smoke test of the pipeline, not a measurement
QUICK_CLIPS = 400  # the quick run's SynDFER: 80 test clips per fold, enough for a smoke test of every step
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # the local executor's job time limit (submitit's default is 2 minutes)


@dataclass(frozen=True)
class Row:
    """One run of ``train_eval.ipynb``: a table row on one fold with one seed."""

    dataset: str
    fold: int | None
    split: str | None
    frames: int
    depths: tuple[int, int, int]
    variant: str
    seed: int = 0
    tag: str = ""  # what the row tests beyond Table 1 ("no-pos-embed", "seed-spread", ...)
    probe: bool = False  # an optimiser probe: a divergence is its outcome, not a failure
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    build: str = ""  # the build the row belongs to ("b01", "val": msstlib.builds); "" in the five-fold study

    @property
    def name(self) -> str:
        """The readable prefix of the row's folder (the run id follows it)."""
        where = f"fold{self.fold}" if self.fold is not None else self.split
        depth = "".join(map(str, self.depths))
        kind = self.variant.split("-", 1)[-1]
        base = ("r18" + kind if self.variant.startswith("resnet18-") else "me" + kind if self.variant.startswith("me-")
                else f"d{depth}")
        extra = f"_{self.tag}" if self.tag and self.tag != "seed-spread" else ""
        return f"{self.build + '_' if self.build else ''}T{self.frames:02d}_{base}{extra}_s{self.seed}_{where}"


# The paper's optimiser on the CPU preset's frozen-backbone set-up: does SGD train the new layers?
SGD_ROWS = (
    ("sgd", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
    ("sgd-warmup", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                    "warmup_epochs": 1}),
    ("sgd-lr0.01", {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
)


def grid(dataset: str, folds: list[int] | None = None, split: str | None = None, quick: bool = False,
         spread_seeds: tuple[int, ...] = (1, 2), sgd_rows: bool = False, seeds: tuple[int, ...] = (),
         frames: tuple[int, ...] | None = None, claims_only: bool = False) -> list[Row]:
    """All rows of the study for one dataset (``quick``: a handful of rows for a smoke run).

    ``sgd_rows`` adds the paper's optimiser (and with a warm-up) on the T=4 depth-1 row: only
    meaningful for presets that switch to AdamW (the ``cpu`` preset). ``seeds`` adds, for each
    seed, every row that a claim compares (:func:`msstlib.claims.compared_rows`), so that each claim
    has fold x seed units (DESIGN.md §9); seed 0 is always in the grid. ``frames`` keeps only the
    rows with those clip lengths (e.g. ``(4,)``: the cheap rows first); ``claims_only`` keeps only
    the rows a claim compares.
    """
    from .claims import compared_rows

    rows = _grid(dataset, folds, split, quick, spread_seeds, sgd_rows)
    compared = compared_rows()

    def is_compared(r: Row) -> bool:
        return (r.frames, r.depths, r.variant, "" if r.tag == "seed-spread" else r.tag) in compared

    if seeds and not quick:
        names = {r.name for r in rows}
        for s in sorted(set(seeds) - {0}):
            for r in list(rows):
                extra = replace(r, seed=s, tag="" if r.tag == "seed-spread" else r.tag)
                if r.seed == 0 and is_compared(r) and extra.name not in names:
                    rows.append(extra)
                    names.add(extra.name)
    if claims_only:
        rows = [r for r in rows if is_compared(r)]
    if frames:
        rows = [r for r in rows if r.frames in frames]
    return rows


def _grid(dataset: str, folds: list[int] | None, split: str | None, quick: bool, spread_seeds: tuple[int, ...],
          sgd_rows: bool) -> list[Row]:
    from .claims import LSTM_LEARNING_RATES
    from .model import table1_variants

    places = [(f, None) for f in (folds or [1])] if dataset != "ferv39k" else [(None, split or "train")]
    base = table1_variants()
    if quick:  # the temporal-mean baseline, MSSTNet at T=4 and 8, and the Grad-CAM control (the GRU)
        base = [r for r in base if r["frames"] == 4 and (r["variant"] == "resnet18-mean" or r["depths"] == (1, 1, 1))]
        base += [{"frames": 4, "depths": (0, 0, 0), "variant": "resnet18-gru"},
                 {"frames": 8, "depths": (1, 1, 1), "variant": "msstnet"}]
    rows = []
    for fold, sp in places:
        for r in base:
            rows.append(Row(dataset, fold, sp, r["frames"], tuple(r["depths"]), r["variant"]))
        if not quick:
            rows.append(Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag="no-pos-embed",
                            overrides=TAG_OVERRIDES["no-pos-embed"]))
            # Table 3's same-backbone temporal baselines, and joint space-time attention (§2.2)
            rows += [Row(dataset, fold, sp, 4, (0, 0, 0), v) for v in ("resnet18-lstm", "resnet18-gru", "resnet18-tcn")]
            # the LSTM barely leaves the prior at the shared lr (fold 1: train accuracy 0.20 -> 0.29 in 5 epochs):
            # the same budget at higher learning rates, so the claim does not rest on an undertrained baseline
            rows += [Row(dataset, fold, sp, 4, (0, 0, 0), "resnet18-lstm", tag=tag, overrides={"lr": lr})
                     for tag, lr in LSTM_LEARNING_RATES]
            rows.append(Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag="joint-attention",
                            overrides=TAG_OVERRIDES["joint-attention"]))
            rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", seed=s, tag="seed-spread") for s in spread_seeds]
            if sgd_rows:
                rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag=tag, overrides=o, probe=True)
                         for tag, o in SGD_ROWS]
    return rows


# What a tag changes in a row's configuration (the five-fold grid and the builds' grid share them).
TAG_OVERRIDES = {"no-pos-embed": {"temporal_pos_embed": False}, "joint-attention": {"attention": "joint"}}
# The validation draw's sweep of the LSTMs' budget (learning rate, epochs); the shared budget is (1e-3, 5).
LSTM_SWEEP = tuple((lr, epochs) for lr in (3e-4, 1e-3, 3e-3) for epochs in (5, 15))


def _depths(text: str) -> tuple[int, int, int]:
    return tuple(int(d) for d in text.split("-"))


def build_grid(dataset: str, build: str, fold: int = UNIT_FOLD) -> list[Row]:
    """The rows of one claim build (:mod:`msstlib.builds`): every configuration a build claim
    compares (:func:`msstlib.claims.build_claims`), once, on the build's fixed split, seed 0. The
    LSTMs run at their validated budget (``claims.LSTM_BUDGET``). The T=4 rows evaluate the test
    set after every epoch (``test_every=1``, for :func:`msstlib.claims.best_epoch_inflation`; the
    result is the last epoch's, as always)."""
    from .claims import BUDGET_TAG, LSTM_BUDGET, build_claims, compared_configs

    rows = []
    for cfg in compared_configs(build_claims()):
        over = dict(LSTM_BUDGET[cfg.variant] if cfg.tag == BUDGET_TAG else TAG_OVERRIDES.get(cfg.tag, {}))
        if cfg.frames == 4:
            over["test_every"] = 1
        rows.append(Row(dataset, fold, None, cfg.frames, _depths(cfg.depths), cfg.variant, tag=cfg.tag, overrides=over,
                        build=build))
    return rows


def validation_grid(dataset: str, fold: int = UNIT_FOLD) -> list[Row]:
    """The rows of the validation draw (build ``val``; no claim reads them): the LSTMs' budget
    sweep (:data:`LSTM_SWEEP`, ``resnet18-lstm`` and ``me-lstm``) beside MSSTNet and the GRUs at
    the shared budget, every row evaluating the test split (the validation draw's) after every
    epoch."""
    rows = [Row(dataset, fold, None, 4, depths, variant, tag=f"lr{lr:g}-ep{epochs}",
                overrides={"lr": lr, "epochs": epochs, "test_every": 1}, build="val")
            for variant, depths in (("resnet18-lstm", (0, 0, 0)), ("me-lstm", (1, 1, 1))) for lr, epochs in LSTM_SWEEP]
    rows += [Row(dataset, fold, None, 4, depths, variant, overrides={"test_every": 1}, build="val")
             for variant, depths in (("msstnet", (1, 1, 1)), ("resnet18-gru", (0, 0, 0)), ("me-gru", (1, 1, 1)))]
    return rows


@dataclass(frozen=True)
class Study:
    """What every row of one study shares: the data, the preset and its changes, where files go.

    ``threads`` is how many CPU threads each job gets: it changes speed, not results, and is not
    part of any run's identity. Paths are plain strings so a job pickles and runs on any node."""

    annotations: str
    root: str
    dataset: str
    preset: str
    results: str
    work: str
    epochs: int | None = None
    extra: dict = field(default_factory=dict)
    threads: int = 0

    def overrides(self, row: Row) -> dict:
        return {**self.extra, **row.overrides}

    def configs(self, row: Row):
        return C.resolve(self.preset, frames=row.frames, depths=row.depths, variant=row.variant, epochs=self.epochs,
                         overrides=self.overrides(row))

    def identity(self, row: Row) -> dict:
        model, train, data = self.configs(row)
        return C.identity(model, train, data, dataset=row.dataset, fold=row.fold, split=row.split, seed=row.seed,
                          annotations=self.annotations, root=self.root)

    def run_id(self, row: Row) -> str:
        return C.run_id(self.identity(row))

    def folder(self, row: Row) -> str:
        return f"{row.name}_{self.run_id(row)}"

    def result_dir(self, row: Row) -> Path:
        return Path(self.results) / "runs" / self.folder(row)

    def work_dir(self, row: Row) -> Path:
        return Path(self.work) / "runs" / self.folder(row)


def row_done(study: Study, row: Row) -> bool:
    """Whether a row has landed: its ``result.json`` (or a probe's ``diverged.json``) is there and
    reads (a damaged one is not a result: the row runs again, :func:`row_status` says why)."""
    out = study.result_dir(row)
    names = ("result.json", "diverged.json") if row.probe else ("result.json",)
    for name in names:
        if (out / name).exists():
            try:
                files.read_json(out / name)
                return True
            except files.BadFile:
                pass
    return False


def read_marker(work: Path) -> dict:
    """A row's ``job.json`` (which job runs it, where); {} when absent or damaged (it is bookkeeping:
    a damaged one is rewritten by the next job of the row)."""
    try:
        return files.read_json(work / "job.json") if (work / "job.json").exists() else {}
    except files.BadFile:
        return {}


def other_builds(study: Study, rows: list[Row]) -> list[tuple[str, str, list[str], dict]]:
    """Rows not done here that the results folder holds a result of, made with the same
    configuration but another build (other data, or another pre-trained backbone): ``(folder here,
    the result's folder, how their identities differ, the versions that result recorded)``.

    Pre-training is deterministic on one machine, but not bit for bit across CPUs (their SIMD
    kernels round differently), so a study continued on another machine gets a backbone with other
    weights, hence other run ids: it would run every committed row again beside the committed one.
    ``--allow-other-builds`` counts these rows as done and runs only the missing ones with this
    build; claims pair within a build (:func:`msstlib.claims.paired`)."""
    found = []
    for row in rows:
        if row_done(study, row):
            continue
        # A probe's outcome may be a divergence (diverged.json records its identity too).
        names = ("result.json", "diverged.json") if row.probe else ("result.json",)
        results = sorted(p for name in names for p in (Path(study.results) / "runs").glob(f"{row.name}_*/{name}"))
        mine = study.identity(row) if results else None
        for result in results:
            try:
                theirs = files.read_json(result)
            except files.BadFile:
                continue  # not a result: row_status reports it
            diff = C.identity_diff(theirs.get("identity", {}), mine)
            if diff and all(line.split(":")[0] in C.BUILD_FIELDS for line in diff):
                found.append((f"{row.name}_{C.run_id(mine)}", result.parent.name, diff, theirs.get("versions", {})))
                break  # one entry per row, even where several other builds hold it
    return found


def other_builds_message(study: Study, found: list) -> str:
    from .train import versions

    here, there, diff, recorded = found[0]
    now = versions()
    return (f"{P.relative(Path(study.results) / 'runs')} holds {len(found)} of these rows made with another "
            f"build, e.g. {there} (this build's run: {here}): {'; '.join(diff)}. That result was made with torch "
            f"{recorded.get('torch', '?')} ({recorded.get('cpu_capability', 'CPU capability not recorded')}); "
            f"this machine has torch {now['torch']} ({now['cpu_capability']}). A backbone pre-trained on another "
            f"CPU has other weights (floating-point results differ between SIMD kernels), so rows run with this "
            f"build would not pair with the committed ones. Either give the backbone those runs used "
            f"(--backbone-weights FILE), run this build as a study of its own (--results results/<another "
            f"folder>), or add this build's rows to those results (--allow-other-builds: rows they hold count as "
            f"done, claims pair only within a build)")


def row_parameters(study: Study, row: Row) -> dict:
    """``train_eval.ipynb``'s parameters for one row, its paths recorded repository-relative (the
    executed notebook is committed with them, DESIGN.md §7)."""
    over = study.overrides(row)
    if over.get("backbone_weights"):
        over = {**over, "backbone_weights": P.relative(over["backbone_weights"])}
    return {
        "annotations": P.relative(study.annotations), "root": P.relative(study.root), "dataset": row.dataset,
        "fold": row.fold if row.fold is not None else 0, "split": row.split or "",
        "frames": row.frames, "depths": list(row.depths), "variant": row.variant, "preset": study.preset,
        "epochs": study.epochs or 0, "seed": row.seed, "work_dir": P.relative(study.work_dir(row)), "tag": row.tag,
        "result_dir": P.relative(study.result_dir(row)), "threads": study.threads, "overrides": json.dumps(over),
        "show_progress": False, "build": row.build,
    }


def run_row(row: Row, study: Study, log_output: bool = False) -> tuple[Row, str | None]:
    """Execute ``train_eval.ipynb`` for one row; returns (row, error or None)."""
    out = study.result_dir(row)
    if row_done(study, row):
        return row, None
    out.mkdir(parents=True, exist_ok=True)
    (out / "error.txt").unlink(missing_ok=True)
    try:
        execute(NOTEBOOKS / "train_eval.ipynb", out / "train_eval.ipynb", row_parameters(study, row),
                log_output=log_output)
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        if row.probe and (out / "diverged.json").exists():
            return row, None  # the probe's outcome: recorded in diverged.json and shown in the tables
        message = f"{type(exc).__name__}: {exc}"
        files.write_text(out / "error.txt", message + "\n\n" + traceback.format_exc())
        return row, message.splitlines()[0] if message else type(exc).__name__
    if not (out / "result.json").exists():
        files.write_text(out / "error.txt", "the notebook finished without writing result.json\n")
        return row, "no result.json"
    return row, None


# ------------------------------------------------------------------------------------------- jobs


def _kill_children() -> None:
    """Stop this process's children (the papermill kernel that trains) before a requeue, so the
    requeued job is the only one writing the row's checkpoint."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()


class RowJob:
    """The job a scheduler runs for one row: ``RowJob(study, expected)(row)``.

    On pre-emption or time-out, submitit calls :meth:`checkpoint`, which stops the training kernel
    and returns this job for requeueing; the requeued job resumes the row from its last epoch
    checkpoint. ``expected``: the folders of every row of the study; when given, the job that
    lands the last of them renders the tables (the SLURM executor's way of collecting).
    """

    def __init__(self, study: Study, expected: list[str] | None = None):
        self.study, self.expected = study, expected

    def __call__(self, row: Row) -> tuple[str, str | None]:
        work = self.study.work_dir(row)
        work.mkdir(parents=True, exist_ok=True)
        marker = work / "job.json"
        record = read_marker(work)
        job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID") or os.environ.get("SLURM_JOB_ID")
        if job_id and record.get("job_id") not in (None, job_id) and "SLURM_ARRAY_JOB_ID" not in os.environ:
            record = {"job_id": job_id}  # this job, not an earlier one of the row
        record.update(started=time.time(), host=socket.gethostname(), pid=os.getpid())
        files.write_json(marker, record)
        _, error = run_row(row, self.study)
        if error is None and self.expected and all_landed(self.study, self.expected):
            render_tables(Path(self.study.results), self.study.dataset, lock=True)
        return row.name, error

    def checkpoint(self, row: Row):
        import submitit

        _kill_children()
        return submitit.helpers.DelayedSubmission(RowJob(self.study, self.expected), row)


def all_landed(study: Study, folders: list[str]) -> bool:
    runs = Path(study.results) / "runs"
    return all((runs / f / "result.json").exists() or (runs / f / "diverged.json").exists() for f in folders)


LIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                     "REQUEUE_HOLD", "REQUEUE_FED"}


def job_state(record: dict) -> str | None:
    """``"running"`` / ``"queued"`` for a live job, None when it is gone or unknown."""
    if record.get("executor") == "local":
        alive = record.get("host") == socket.gethostname() and P.pid_alive(int(record.get("job_id", 0)))
        return "running" if alive else None
    if record.get("executor") == "slurm":
        import logging

        logging.getLogger("submitit").setLevel(logging.ERROR)  # its per-call sacct warnings
        try:
            import submitit

            state = submitit.SlurmJob(folder=record["folder"], job_id=record["job_id"]).state
        except Exception:
            state = "UNKNOWN"
        if state.upper().startswith("UNKNOWN"):  # no sacct here (--status from a laptop): cannot tell
            return "submitted (state unknown: no sacct here)"
        return ("queued" if state == "PENDING" else "running") if state.split()[0] in LIVE_SLURM_STATES else None
    return None


def row_status(study: Study, row: Row) -> tuple[str, str]:
    """(``done`` | ``running`` | ``queued`` | ``failed`` | ``todo``, a detail line)."""
    out, work = study.result_dir(row), study.work_dir(row)
    if (out / "result.json").exists():
        try:
            r = files.read_json(out / "result.json", "the row's result",
                                fix="remove it (and its run folder's checkpoint if that is damaged too) to run the row "
                                    "again")
        except files.BadFile as exc:
            return "failed", str(exc)[:240]
        return "done", (f"WAR {100 * r['war']:.1f}  UAR {100 * r['uar']:.1f}" if "war" in r else "")
    if row.probe and row_done(study, row):
        return "done", "diverged (an optimiser probe's outcome)"
    record = read_marker(work)
    if record:
        live = job_state(record)
        if live:
            return live.split()[0], f"job {record.get('job_id')} ({record.get('executor')}, {live}){_progress(work)}"
    if (out / "error.txt").exists():
        return "failed", (out / "error.txt").read_text().splitlines()[0][:160]
    return "todo", _progress(work).strip()


def _progress(work: Path) -> str:
    log = work / "log.csv"
    if not log.exists():
        return ""
    epochs = max(len(log.read_text().strip().splitlines()) - 1, 0)
    return f"  checkpoint after epoch {epochs}" if epochs else ""


# ---------------------------------------------------------------------------------------- executors


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def row_cost(row: Row) -> float:
    """A row's relative training cost (frames x (1 + blocks)): the local executor starts the longest
    rows first, so the last minutes of a study are not one long row running alone."""
    return row.frames * (1 + sum(row.depths))


def pin_cache(study: Study):
    """Opens the feature cache the study's rows read (if any) and keeps it in memory
    (:func:`msstlib.data.keep_resident`) for as long as the returned object lives, or None."""
    model, train, data = C.resolve(study.preset, overrides=study.extra)
    if not (train.feature_cache and train.cache_in_memory and model.backbone_weights):
        return None
    from . import features
    from .data import keep_resident

    if features.unusable(model, train, data) is not None:
        return None
    store = features.open_store(study.annotations, study.root, model.backbone_weights, model.image_size, model.stages)
    if store is None:
        return None
    keep_resident(store.array)
    return store


def run_local(rows: list[Row], study: Study, jobs: int, poll_s: float = 1.0) -> list[tuple[str, str | None]]:
    """Run ``rows`` through submitit's local executor, ``jobs`` at a time (each on its own GPU when
    the machine has GPUs); waits for all and returns (folder, error or None) per row."""
    import submitit

    folder = Path(study.work) / "submitit"
    executor = submitit.LocalExecutor(folder=folder)  # (AutoExecutor does not pass visible_gpus on)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    gpus = _gpu_count()
    free = list(range(gpus))
    pinned = pin_cache(study)  # held until the last row ends: rows starting in between find it in memory
    pending, running, done = sorted(rows, key=row_cost, reverse=True), {}, []
    job_fn = RowJob(study)
    t0 = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            row = pending.pop(0)
            gpu = free.pop(0) if gpus else None
            executor.update_parameters(gpus_per_node=1 if gpus else 0, visible_gpus=[gpu] if gpus else ())
            job = executor.submit(job_fn, row)
            _write_marker(study, row, job.job_id, "local", folder)
            running[job.job_id] = (row, job, gpu)
        time.sleep(poll_s)
        for job_id, (row, job, gpu) in list(running.items()):
            if not job.done():
                continue
            del running[job_id]
            if gpu is not None:
                free.append(gpu)
            try:
                _, error = job.result()
            except Exception as exc:  # the job died (killed, out of memory, ...): its logs say why
                error = f"job {job_id} ended without a result ({type(exc).__name__}); log: {job.paths.stderr}"
            done.append((study.folder(row), error))
            status = "ok" if error is None else f"FAILED: {error}"
            if error is None and (study.result_dir(row) / "diverged.json").exists():
                status = "ok (diverged: an optimiser probe's outcome)"
            print(f"[{len(done)}/{len(rows)}] {study.folder(row)}: {status}  ({time.time() - t0:.0f} s)", flush=True)
    del pinned  # unpins the cache
    return done


def _write_marker(study: Study, row: Row, job_id: str, executor: str, folder: Path) -> None:
    """``job.json`` of a submitted row (merged: a local job may already have written its pid)."""
    work = study.work_dir(row)
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "job.json"
    record = read_marker(work)
    if record.get("job_id") not in (None, str(job_id)):
        record = {}  # a marker of an earlier job of this row
    record.update(job_id=str(job_id), executor=executor, folder=str(folder), submitted=time.time(),
                  submit_host=socket.gethostname())
    record.setdefault("host", socket.gethostname())
    files.write_json(marker, record)


def submit_slurm(rows: list[Row], study: Study, expected: list[str], args: argparse.Namespace) -> list[str]:
    """One SLURM array job per row; returns the job ids without waiting."""
    import submitit

    folder = Path(study.work) / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus_per_job,
              "cpus_per_task": args.slurm_cpus_per_job, "tasks_per_node": 1, "nodes": 1,
              "slurm_array_parallelism": args.slurm_array_parallelism, "name": f"msst-{study.dataset}"}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_mem:
        params["slurm_mem"] = args.slurm_mem
    executor.update_parameters(**params)
    jobs = executor.map_array(RowJob(study, expected), rows)
    for row, job in zip(rows, jobs):
        _write_marker(study, row, job.job_id, "slurm", folder)
    return [job.job_id for job in jobs]


# ------------------------------------------------------------------------------------ data, tables


def is_smoke(results: Path) -> bool:
    """The quick run's results (``results/<dataset>-quick``): every table and figure says so."""
    return Path(results).name.endswith("-quick")


def regime_of(results: Path) -> str:
    """The SynDFER regime a results folder holds (``results/synthetic-dfewlike[-quick]``: dfew-like)."""
    name = Path(results).name
    return next((r for r, suffix in REGIME_SUFFIX.items() if suffix and suffix in name), "default")


def dfewlike_sibling(results: Path) -> Path | None:
    """The DFEW-like regime's runs beside a default-regime study (its claims go into the same
    claims table, side by side), when they exist."""
    results = Path(results)
    if regime_of(results) != "default" or not results.name.startswith("synthetic"):
        return None
    runs = results.parent / results.name.replace("synthetic", "synthetic" + REGIME_SUFFIX["dfew-like"], 1) / "runs"
    return runs if any(runs.glob("*/result.json")) else None


def render_tables(results: Path, dataset: str, lock: bool = False) -> None:
    lock_path = results / ".tables.lock"
    if lock:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            return  # another job is rendering them
    dfewlike = dfewlike_sibling(results)
    # The claims over independent builds of every regime (msstlib.builds), rendered with the default regime's tables
    builds = {r: results.parent / results.name.replace("synthetic", "synthetic" + suffix, 1) / "builds" / "runs"
              for r, suffix in REGIME_SUFFIX.items()} if regime_of(results) == "default" else {}
    builds = {r: P.relative(b) for r, b in builds.items() if any(b.glob("*/result.json"))}
    try:
        with step(f"tables: tables.ipynb -> {P.relative(results / 'tables')}"):
            execute(NOTEBOOKS / "tables.ipynb", results / "tables.ipynb",
                    {"runs_dir": P.relative(results / "runs"), "tables_dir": P.relative(results / "tables"),
                     "dataset": dataset, "figures_dir": P.relative(results / "figures"), "smoke": is_smoke(results),
                     "regime": regime_of(results),
                     "dfewlike_runs_dir": P.relative(dfewlike) if dfewlike else "",
                     "builds_runs_dirs": json.dumps(builds)},
                    progress_bar=not lock)
    finally:
        if lock:
            lock_path.unlink(missing_ok=True)


def render_figures(study: Study, rows: list[Row], max_clips: int = 0, elsewhere: dict | None = None) -> None:
    """``gradcam.ipynb`` on the study's T=4 MSSTNet (depth 1) and its matched control (ResNet-18 +
    GRU on the same features), fold 1 (or the first fold run), seed 0: Fig. 3 analogues and paired
    scores under ``results/{figures,tables}``.
    ``max_clips`` > 0 scores only that many test clips (the quick run's smoke test). ``elsewhere``
    maps a row's folder to the folder of its result under another build (``--allow-other-builds``):
    such a row is trained again with this build for its weights."""
    elsewhere = elsewhere or {}

    def pick(depths, variant="msstnet"):
        found = [r for r in rows if r.frames == 4 and r.depths == depths and r.variant == variant
                 and r.seed == 0 and not r.tag]
        if not found:
            raise FileNotFoundError(f"the study's grid has no T=4 {variant} depths {depths} row")
        row, ckpt = found[0], study.work_dir(found[0]) / "checkpoint.pt"
        if not ckpt.exists():
            here = study.folder(row)
            made = (study.result_dir(row) if row_done(study, row)
                    else Path(study.results) / "runs" / elsewhere[here] if here in elsewhere else None)
            if made is None:
                raise FileNotFoundError(f"no result for {study.folder(row)} yet; run the study first (same flags, "
                                        f"without --figures)")
            # The result is committed but its weights are not (a fresh clone): train the same run
            # again into the work folder (on the CPU that made it, it reproduces the result exactly;
            # under another build, --allow-other-builds, it is this build's model of that row).
            from .train import run

            print(f"re-training {study.folder(row)} for its weights (its result is committed, its checkpoint is not)",
                  flush=True)
            # As it was made: the same input path and thread count (neither changes the run's result
            # beyond rounding, but Grad-CAM reads the weights, and the committed figure used those).
            recorded = files.read_json(made / "result.json", "the row's result")
            same_input = {"feature_cache": recorded.get("input", "frames") != "frames"}
            threads = recorded.get("config", {}).get("train", {}).get("threads") or study.threads
            run(annotations=study.annotations, root=study.root, frames=row.frames, depths=row.depths,
                variant=row.variant, preset=study.preset, fold=row.fold, split=row.split, seed=row.seed,
                epochs=study.epochs, work_dir=str(ckpt.parent), threads=threads,
                overrides={**study.overrides(row), **same_input}, progress=False, tag=row.tag)
        return str(ckpt), row.fold or 1

    # The control is trained and of comparable accuracy (the ResNet-18 + GRU on the same frozen
    # features), never the model without T-Formers, which sits near chance on SynDFER (issue 10).
    (control, fold), (msst, _) = pick((0, 0, 0), "resnet18-gru"), pick((1, 1, 1))
    results = Path(study.results)
    clips = f"{max_clips} test clips" if max_clips else "every test clip"
    with step(f"Grad-CAM: gradcam.ipynb on fold {fold}, scoring {clips} -> {P.relative(results / 'figures')}"):
        execute(NOTEBOOKS / "gradcam.ipynb", results / "gradcam.ipynb",
                {"annotations": P.relative(study.annotations), "root": P.relative(study.root), "fold": fold,
                 "control_checkpoint": P.relative(control), "msst_checkpoint": P.relative(msst),
                 "max_clips": max_clips,
                 "figures_dir": P.relative(results / "figures"), "tables_dir": P.relative(results / "tables"),
                 "smoke": is_smoke(results), "regime": regime_of(results)}, progress_bar=True)


def where(results: Path) -> None:
    """The last thing a study prints: where its tables, figures and notebooks are."""
    results = Path(results)
    label = ("SMOKE TEST results (QUICK=1: short training on a small SynDFER; they check the pipeline, they "
             "are not results)" if is_smoke(results) else "Results")
    print(f"\n{label}, in {P.relative(results)}/:")
    for name, folder, pattern, what in (("tables", results / "tables", "*.md", "Markdown and CSV"),
                                        ("figures", results / "figures", "*.png", "PNG"),
                                        ("notebooks", results, "*.ipynb", "executed; open them in JupyterLab")):
        found = sorted(p.name for p in folder.glob(pattern))
        shown = ", ".join(found[:6]) + (f", ... ({len(found)} in all)" if len(found) > 6 else "")
        print(f"  {name:9s} {P.relative(folder)}/  ({what}): {shown or 'none yet'}")
    print(f"  runs      {P.relative(results / 'runs')}/  ({len(list(results.glob('runs/*/result.json')))} "
          f"result.json)", flush=True)


def overview(annotations: str, root: str, results: Path) -> None:
    """``data_overview.ipynb`` on the study's data: figures under ``results/figures``."""
    results.mkdir(parents=True, exist_ok=True)
    with step(f"data overview: data_overview.ipynb -> {P.relative(results / 'data_overview.ipynb')}"):
        execute(NOTEBOOKS / "data_overview.ipynb", results / "data_overview.ipynb",
                {"annotations": P.relative(annotations), "root": P.relative(root),
                 "figures_dir": P.relative(results / "figures")}, progress_bar=True)


# ---------------------------------------------------------------------------------------------- CLI


def _parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise C.ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.01 or --set depths=[2,2,2]")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # a tag (!!python/...) is refused by safe_load, rightly
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise C.ConfigError(f"--set {item!r}: not a plain YAML value ({first}); give a number, a string, a list "
                                f"such as [2,2,2] or true/false (no tags)") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.study", description="Run every table row through papermill, "
                                "one submitit job per row (locally or on SLURM).")
    p.add_argument("--dataset", choices=("synthetic", "dfew", "ferv39k"), required=True)
    p.add_argument("--root", help="dataset root (required for dfew/ferv39k; synthetic default: build/syndfer)")
    p.add_argument("--annotations", help="annotations.csv (default: ROOT/prepared/annotations.csv)")
    p.add_argument("--preset", choices=sorted(C.PRESETS), default="cpu")
    p.add_argument("--folds", type=int, nargs="+", default=[1], help="DFEW-layout folds (paper: 1 2 3 4 5)")
    p.add_argument("--seeds", type=int, nargs="+", default=[], metavar="S",
                   help="also run every row that a claim compares with these seeds (seed 0 is always run; "
                   "the claims need three: --seeds 1 2)")
    p.add_argument("--frames", type=int, nargs="+", choices=(4, 8, 12, 16), metavar="T",
                   help="only the rows with these clip lengths (default: all)")
    p.add_argument("--claims-only", action="store_true", help="only the rows that a claim compares")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every row (repeatable; YAML values: --set lr=0.01)")
    p.add_argument("--backbone-weights", help="local ResNet-18 state dict (the cpu preset freezes it; synthetic "
                   "default: the one pre-trained on a separate SynDFER draw)")
    p.add_argument("--clips", type=int, default=3000, help="SynDFER size when it must be generated")
    p.add_argument("--regime", choices=REGIMES, default="default",
                   help="SynDFER's regime: default (change over time carries the class), dfew-like (one frame "
                   "carries most of it) or dfew-calibrated (dfew-like, calibrated to the paper's frame-level / "
                   "MSSTNet ratio); a regime's data go to build/syndfer-<regime>, its results to "
                   "results/synthetic-<regime> (dashes dropped: synthetic-dfewlike)")
    p.add_argument("--quick", action="store_true", help="a few rows, short training: a smoke run in minutes")
    p.add_argument("--results", help="results folder (default: results/<dataset>, or results/<dataset>-quick)")
    p.add_argument("--work-dir", default=str(ROOT / "build"),
                   help="checkpoints and job logs (default build/; scratch space on a cluster)")
    p.add_argument("--allow-other-builds", action="store_true",
                   help="add rows made with this build (data, pre-trained backbone) to results made with another: "
                        "a row the results hold under another build counts as done, claims pair only within a "
                        "build and say how many builds they rest on (default: refuse, exit 2)")
    p.add_argument("--dry-run", action="store_true", help="list the rows (done or todo) and exit")
    p.add_argument("--status", action="store_true", help="list rows as done / running / queued / failed / todo")
    p.add_argument("--collect", action="store_true", help="render the tables from the rows that have landed")
    p.add_argument("--figures", action="store_true", help="Grad-CAM figures and paired scores (gradcam.ipynb) "
                   "from the T=4 MSSTNet (depth 1) and its control, the ResNet-18 + GRU row (make figures)")
    b = p.add_argument_group("independent builds: the claims' replicates (msstlib.builds)")
    b.add_argument("--builds", type=int, nargs="+", metavar="K",
                   help="run the claim rows on builds K (1..8: each its own SynDFER draw and pre-trained backbone, one "
                   "fixed split), one build after another; results in results/synthetic[-regime]/builds/runs")
    b.add_argument("--validation", action="store_true", help="run the validation draw's rows (the LSTM budget sweep; "
                   "no claim reads them): results in results/synthetic[-regime]/validation/runs")
    b.add_argument("--results-root", metavar="DIR",
                   help="with --builds: write the builds' rows and Grad-CAM under DIR/<dataset>[-regime]/builds "
                   "instead of results/, and render no table (make reproduce: build/reproduce/results, then "
                   "python -m msstlib.reproduce compares them with the committed ones)")
    b.add_argument("--drop-caches", action="store_true", help="with --builds: delete a build's feature cache (9.6 GB) "
                   "once all its rows have landed (frames and checkpoints stay)")
    ex = p.add_argument_group("where the jobs run")
    ex.add_argument("--executor", choices=("local", "slurm"), default="local")
    ex.add_argument("--jobs", type=int, default=1, help="local: rows at a time (each gets cores/jobs threads)")
    ex.add_argument("--threads", type=int, default=None,
                    help="local: CPU threads per job (default: cores / jobs); speed only, never part of a run's identity")
    ex.add_argument("--slurm-partition")
    ex.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job (default 1440)")
    ex.add_argument("--slurm-gpus-per-job", type=int, default=1)
    ex.add_argument("--slurm-cpus-per-job", type=int, default=8)
    ex.add_argument("--slurm-mem", help="memory per job, e.g. 32G")
    ex.add_argument("--slurm-array-parallelism", type=int, default=32, help="array tasks running at once")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m msstlib.study``: a bad flag or input, a results folder in use, a damaged file or an
    operating-system error is one line and exit status 2, never a traceback."""
    try:
        return _main(argv)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.regime != "default" and args.dataset != "synthetic":
        p.error(f"--regime is a SynDFER setting; {args.dataset} has its own data")
    bad_folds = [k for k in args.folds if k not in inputs.FOLDS]
    if bad_folds and args.dataset != "ferv39k":
        raise C.ConfigError(f"--folds {' '.join(map(str, args.folds))}: DFEW's folds are 1..5 ({bad_folds[0]} is "
                            f"not one)")
    if args.epochs is not None and args.epochs < 1:
        raise C.ConfigError(f"--epochs {args.epochs}: train at least 1 epoch (leave it out for the preset's)")
    for flag, value in (("--jobs", args.jobs), ("--threads", args.threads), ("--clips", args.clips)):
        if value is not None and value < 1:
            raise C.ConfigError(f"{flag} {value}: expected an integer >= 1")
    suffix = REGIME_SUFFIX[args.regime] + ("-quick" if args.quick else "")
    results = Path(args.results) if args.results else ROOT / "results" / (args.dataset + suffix)
    rows = grid(args.dataset, args.folds, quick=args.quick, sgd_rows=args.preset == "cpu", seeds=tuple(args.seeds),
                frames=tuple(args.frames) if args.frames else None, claims_only=args.claims_only)
    extra = _parse_set(args.sets)  # a ConfigError: one line, exit status 2 (main)
    listing = args.dry_run or args.status or args.collect or args.figures
    if args.builds or args.validation:
        if args.dataset != "synthetic":
            p.error("--builds / --validation draw SynDFER builds: use --dataset synthetic")
        return run_builds(args, extra, results)

    if args.dataset == "synthetic":
        data = Path(args.root) if args.root else ROOT / "build" / ("syndfer" + suffix)
        annotations, root = str(data / "prepared" / "annotations.csv"), str(data)
        weights = args.backbone_weights or (str(backbone_path(args.quick)) if args.preset == "cpu" else None)
        try:
            check_regime(data, args.regime)
        except C.ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not listing:
            annotations, root = prepare_synthetic(data, QUICK_CLIPS if args.quick else args.clips, args.quick,
                                                  pretrain=args.preset == "cpu" and not args.backbone_weights,
                                                  regime=args.regime)
            overview(annotations, root, results)
    else:
        if not args.root:
            p.error(f"--root is required for {args.dataset}")
        root = args.root
        annotations = args.annotations or str(Path(root) / "prepared" / "annotations.csv")
        weights = args.backbone_weights
        if not Path(annotations).exists():
            print(f"error: {annotations} not found; run `python -m data_prep.{args.dataset} --root {root} "
                  f"--out {Path(root) / 'prepared'}` first", file=sys.stderr)
            return 2
    if weights:
        extra.setdefault("backbone_weights", str(Path(weights).resolve()))
    jobs = max(1, args.jobs)
    threads = (max(1, args.threads or (os.cpu_count() or 2) // jobs) if args.executor == "local"
               else args.slurm_cpus_per_job)
    study = Study(annotations=str(Path(annotations).resolve()), root=str(Path(root).resolve()), dataset=args.dataset,
                  preset=args.preset, results=str(results), work=str(Path(args.work_dir) / results.name),
                  epochs=args.epochs if args.epochs is not None else (2 if args.quick else None), extra=extra,
                  threads=threads)

    if args.collect and not Path(annotations).exists():  # the tables come from the committed runs alone
        render_tables(results, args.dataset)
        print(f"(the study's data are not prepared here ({P.relative(annotations)}): which rows are missing is not "
              f"known)")
        where(results)
        return 0
    if listing and not Path(annotations).exists():
        for row in rows:
            print(f"{row.name:44s} todo  (data not prepared yet: no run id)")
        print(f"{len(rows)} rows -> {P.relative(results / 'runs')}")
        return 0
    try:
        folders = [study.folder(row) for row in rows]  # also checks every row's configuration
    except (C.ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = other_builds(study, rows)
    elsewhere = {here: there for here, there, *_ in found}  # this build's folder -> the one holding the row
    if found and not (args.dry_run or args.status or args.collect or args.allow_other_builds):
        print(f"error: {other_builds_message(study, found)}", file=sys.stderr)
        return 2
    if args.dry_run or args.status:
        counts: dict[str, int] = {}
        for row, folder in zip(rows, folders):
            state, detail = row_status(study, row) if args.status else (
                ("done" if row_done(study, row) else "todo"), "")
            if folder in elsewhere and state in ("todo", "failed"):  # what the run itself would do with the row
                state = "done" if args.allow_other_builds else "other-build"
                detail = f"held under another build: {elsewhere[folder]}"
            counts[state] = counts.get(state, 0) + 1
            print(f"{folder:56s} {state:8s} {detail}")
        print(f"{len(rows)} rows -> {P.relative(results / 'runs')}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        if found:
            print(f"warning: {other_builds_message(study, found)}")
        return 0
    if args.figures:
        try:
            render_figures(study, rows, max_clips=QUICK_CAM_CLIPS if args.quick else 0,
                           elsewhere=elsewhere)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        where(results)
        return 0
    if args.collect:
        missing = sum(not row_done(study, row) for row in rows)
        render_tables(results, args.dataset)
        if missing:
            print(f"({missing} of {len(rows)} rows have not landed yet)")
        where(results)
        return 0

    with files.FolderLock(results, "results folder"):  # one study writes a results folder at a time
        states = {folder: row_status(study, row)[0] for row, folder in zip(rows, folders)}
        for here in elsewhere:  # --allow-other-builds: a row another build has run counts as done
            states[here] = "done"
        todo = [row for row, folder in zip(rows, folders) if states[folder] in ("todo", "failed")]
        busy = sum(s in ("running", "queued", "submitted") for s in states.values())
        print(f"{len(rows)} rows: {sum(s == 'done' for s in states.values())} done, {busy} running or queued, "
              f"{len(todo)} to run ({args.executor} executor)", flush=True)
        t0 = time.time()
        if args.executor == "slurm":
            if todo:
                ids = submit_slurm(todo, study, folders, args)
                print("submitted SLURM jobs " + " ".join(ids) + f"\nprogress: python -m msstlib.study "
                      f"{' '.join(argv if argv is not None else sys.argv[1:])} --status", flush=True)
            return 0
        outcomes = run_local(todo, study, jobs)
        failures = [folder for folder, error in outcomes if error is not None]
        try:
            render_tables(results, args.dataset)
        except Exception as exc:
            print(f"tables.ipynb failed: {exc}", file=sys.stderr)
            failures.append("tables")
        print(f"study finished in {time.time() - t0:.0f} s; {len(outcomes) - len([f for f in failures if f != 'tables'])}"
              f"/{len(outcomes)} rows run ok" + (f"; failed: {', '.join(failures)}" if failures else ""))
    where(results)
    return 1 if failures else 0


BUILD_CAM_CLIPS = 200  # test clips a build's Grad-CAM scores (the unit is the build; its clips only describe it)


def build_cam(study: Study, rows: list[Row], build: Build, max_clips: int = BUILD_CAM_CLIPS) -> Path | None:
    """``gradcam.ipynb`` on one build's own models: its T=4 MSSTNet (depth 1) and its trained control
    (the ResNet-18 + GRU), scoring ``max_clips`` test clips of its fixed split, into
    ``<results>/gradcam/<build>/`` (tables only; skipped when they exist). Each build gives one
    unit per Grad-CAM comparison (:func:`msstlib.claims.cam_units`)."""
    out = Path(study.results) / "gradcam" / build.name
    if (out / "gradcam_like_with_like.csv").exists():
        return None

    def checkpoint(variant: str, depths: tuple[int, int, int]) -> Path:
        row = next(r for r in rows if r.frames == 4 and r.variant == variant and r.depths == depths and not r.tag)
        ckpt = study.work_dir(row) / "checkpoint.pt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{P.relative(ckpt)}: the build's checkpoint is gone (build/ was cleaned); run the "
                                    f"row again (delete {P.relative(study.result_dir(row))}) to score Grad-CAM")
        return ckpt

    control, msst = checkpoint("resnet18-gru", (0, 0, 0)), checkpoint("msstnet", (1, 1, 1))
    out.mkdir(parents=True, exist_ok=True)
    with step(f"build {build.name}: Grad-CAM on its own models, {max_clips} test clips -> {P.relative(out)}"):
        execute(NOTEBOOKS / "gradcam.ipynb", out / "gradcam.ipynb",
                {"annotations": P.relative(study.annotations), "root": P.relative(study.root), "fold": UNIT_FOLD,
                 "control_checkpoint": P.relative(control), "msst_checkpoint": P.relative(msst),
                 "max_clips": max_clips, "figures_dir": "", "tables_dir": P.relative(out),
                 "regime": build.regime}, progress_bar=False)
    return out


def run_builds(args: argparse.Namespace, extra: dict, five_fold_results: Path) -> int:
    """``--builds K ...`` / ``--validation``: each build in turn is prepared (data, backbone,
    caches; skipped where done), its rows run (``--jobs`` at a time) and, with ``--drop-caches``,
    its feature cache removed once they have all landed; then the tables are rendered."""
    try:
        builds = ([Build(0, args.regime)] if args.validation else []) + [Build(k, args.regime) for k in args.builds or []]
    except C.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    jobs = max(1, args.jobs)
    threads = max(1, args.threads or (os.cpu_count() or 2) // jobs)
    listing = args.dry_run or args.status
    failures, t0 = [], time.time()
    for b in builds:
        with contextlib.ExitStack() as held:
            data = b.data()
            annotations = data / "prepared" / "annotations.csv"
            if not listing and not args.collect:  # one writer of a build (data, backbone, rows) at a time
                held.enter_context(files.FolderLock(b.folder(), "build folder"))
                annotations, _ = b.prepare()
            rows = validation_grid(args.dataset) if b.index == 0 else build_grid(args.dataset, b.name)
            if args.frames:  # e.g. make reproduce's subset: the T = 4 rows of two builds
                rows = [r for r in rows if r.frames in args.frames]
            if not Path(annotations).exists() or not b.backbone().exists():
                print(f"build {b.name}: {len(rows)} rows todo (not prepared yet: no run ids)")
                continue
            where = b.results(args.dataset, args.results_root) if args.results_root else b.results()
            scratch = (Path(args.results_root).parent / "work" / b.name / b.scratch().name if args.results_root
                       else b.scratch())  # a re-run trains its own checkpoints, never resumes the study's
            study = Study(annotations=str(Path(annotations).resolve()), root=str(data.resolve()), dataset=args.dataset,
                          preset=args.preset, results=str(where), work=str(scratch), epochs=args.epochs,
                          extra={**extra, "backbone_weights": str(b.backbone().resolve())}, threads=threads)
            if listing:
                for row in rows:
                    state, detail = row_status(study, row) if args.status else (
                        ("done" if row_done(study, row) else "todo"), "")
                    print(f"{study.folder(row):60s} {state:8s} {detail}")
                continue
            if args.collect:
                continue
            todo = [row for row in rows if row_status(study, row)[0] in ("todo", "failed")]
            print(f"build {b.name} ({b.regime}): {len(rows)} rows, {len(rows) - len(todo)} done, {len(todo)} to run",
                  flush=True)
            failures += [f for f, error in run_local(todo, study, jobs) if error is not None]
            if b.index != 0 and all(row_done(study, row) for row in rows) and any(r.frames == 4 for r in rows):
                try:
                    build_cam(study, rows, b)
                except Exception as exc:  # the rows are safe; the scores can be made again
                    print(f"build {b.name}: Grad-CAM failed: {exc}", file=sys.stderr)
                    failures.append(f"{b.name} Grad-CAM")
            if args.drop_caches and all(row_done(study, row) for row in rows):
                print(f"build {b.name}: all rows landed; feature cache removed "
                      f"({drop_feature_cache(annotations) / 1e9:.1f} GB freed)", flush=True)
    if listing or not args.builds or args.results_root:  # no table of the study's from these
        if args.results_root and not listing:
            print(f"builds {' '.join(b.name for b in builds)}: rows under {P.relative(args.results_root)}; "
                  f"python -m msstlib.reproduce --rerun {P.relative(args.results_root)} compares them", flush=True)
        return 0 if not failures else 1
    try:
        render_tables(five_fold_results if args.regime == "default" else
                      ROOT / "results" / (args.dataset + REGIME_SUFFIX["default"]), args.dataset)
    except Exception as exc:
        print(f"tables.ipynb failed: {exc}", file=sys.stderr)
        failures.append("tables")
    print(f"builds {' '.join(b.name for b in builds)} finished in {time.time() - t0:.0f} s"
          + (f"; failed: {', '.join(failures)}" if failures else "; every row ok"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
