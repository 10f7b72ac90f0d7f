"""Where rows run: on this machine or on a SLURM cluster, both through submitit (DESIGN.md §7).

The job is :class:`RowJob`, a plain picklable callable: ``RowJob(study, expected)(row)`` runs one
row (:func:`msstlib.runs.run_row`). On pre-emption or time-out submitit calls its ``checkpoint``,
which stops the training kernel and hands the job back for requeueing; the requeued job resumes the
row from its last epoch checkpoint.

* :func:`run_local`: submitit's local executor, ``jobs`` rows at a time, each with ``cores / jobs``
  threads and, on a machine with GPUs, its own GPU; the longest rows start first
  (:attr:`msstlib.grid.Row.cost`). It waits for every row.
* :func:`submit_slurm`: one array job over the rows (submitit's ``map_array``), returning the job
  ids at once. The job that lands the last row renders the tables.

:func:`row_status` says where a row stands: done, running or queued (its job is alive), failed (its
``error.txt`` says why) or todo, with how far its checkpoint got.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import psutil
import submitit

from . import config, files, paths
from .grid import Row
from .render import render_tables
from .runs import Study, read_marker, row_done, run_row

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # the local executor's job time limit (submitit's default is 2 minutes)
LIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                     "REQUEUE_HOLD", "REQUEUE_FED"}


def _kill_children() -> None:
    """Stop this process's children (the papermill kernel that trains) before a requeue, so the
    requeued job is the only one writing the row's checkpoint."""
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

    ``expected``: the folders of every row of the study; when given, the job that lands the last of
    them renders the tables (the SLURM executor's way of collecting)."""

    def __init__(self, study: Study, expected: list[str] | None = None):
        self.study, self.expected = study, expected

    def __call__(self, row: Row) -> tuple[str, str | None]:
        work = self.study.work_dir(row)
        work.mkdir(parents=True, exist_ok=True)
        record = read_marker(work)
        job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID") or os.environ.get("SLURM_JOB_ID")
        if job_id and record.get("job_id") not in (None, job_id) and "SLURM_ARRAY_JOB_ID" not in os.environ:
            record = {"job_id": job_id}  # this job, not an earlier one of the row
        record.update(started=time.time(), host=socket.gethostname(), pid=os.getpid())
        files.write_json(work / "job.json", record)
        _, error = run_row(row, self.study)
        if error is None and self.expected and all_landed(self.study, self.expected):
            render_tables(Path(self.study.results), self.study.dataset, lock=True)
        return row.name, error

    def checkpoint(self, row: Row):
        _kill_children()
        return submitit.helpers.DelayedSubmission(RowJob(self.study, self.expected), row)


def all_landed(study: Study, folders: list[str]) -> bool:
    runs = Path(study.results) / "runs"
    return all((runs / f / "result.json").exists() or (runs / f / "diverged.json").exists() for f in folders)


def job_state(record: dict) -> str | None:
    """``"running"`` / ``"queued"`` for a live job, None when it is gone or unknown."""
    if record.get("executor") == "local":
        alive = record.get("host") == socket.gethostname() and paths.pid_alive(int(record.get("job_id", 0)))
        return "running" if alive else None
    if record.get("executor") == "slurm":
        logging.getLogger("submitit").setLevel(logging.ERROR)  # its per-call sacct warnings
        try:
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


def gpu_count() -> int:
    try:
        import torch  # only asked for here: a status listing never pays for importing torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def pin_cache(study: Study):
    """Opens the feature cache the study's rows read (if any) and keeps it in memory
    (:func:`msstlib.data.keep_resident`) for as long as the returned object lives, or None."""
    from . import features  # torch: imported only where a cache is pinned (a status listing needs none)
    from .data import keep_resident

    model, train, data = config.resolve(study.preset, overrides=study.extra)
    if not (train.feature_cache and train.cache_in_memory and model.backbone_weights):
        return None
    if features.unusable(model, train, data) is not None:
        return None
    store = features.open_store(study.annotations, study.root, model.backbone_weights, model.image_size, model.stages,
                                candidates=data.candidate_frames, precision=data.feature_precision)
    if store is None:
        return None
    keep_resident(store.array)
    return store


def run_local(rows: list[Row], study: Study, jobs: int, poll_s: float = 1.0) -> list[tuple[str, str | None]]:
    """Run ``rows`` through submitit's local executor, ``jobs`` at a time (each on its own GPU when
    the machine has GPUs); waits for all and returns (folder, error or None) per row.

    submitit's local executor starts a job when it is submitted and has no queue of its own, so
    this keeps ``jobs`` in flight and waits on them with :func:`submitit.helpers.as_completed`."""
    folder = Path(study.work) / "submitit"
    executor = submitit.LocalExecutor(folder=folder)  # (AutoExecutor does not pass visible_gpus on)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    gpus = gpu_count()
    free = list(range(gpus))
    pinned = pin_cache(study)  # held until the last row ends: rows starting in between find it in memory
    pending, running, done = sorted(rows, key=lambda r: r.cost, reverse=True), {}, []
    job_fn, t0 = RowJob(study), time.time()

    def start(row: Row) -> None:
        gpu = free.pop(0) if gpus else None
        executor.update_parameters(gpus_per_node=1 if gpus else 0, visible_gpus=[gpu] if gpus else ())
        job = executor.submit(job_fn, row)
        _write_marker(study, row, job.job_id, "local", folder)
        running[job] = (row, gpu)

    while pending and len(running) < jobs:
        start(pending.pop(0))
    while running:
        job = next(submitit.helpers.as_completed(list(running), poll_frequency=poll_s))
        row, gpu = running.pop(job)
        if gpu is not None:
            free.append(gpu)
        try:
            _, error = job.result()
        except Exception as exc:  # the job died (killed, out of memory, ...): its logs say why
            error = f"job {job.job_id} ended without a result ({type(exc).__name__}); log: {job.paths.stderr}"
        done.append((study.folder(row), error))
        status = "ok" if error is None else f"FAILED: {error}"
        if error is None and (study.result_dir(row) / "diverged.json").exists():
            status = "ok (diverged: an optimiser probe's outcome)"
        print(f"[{len(done)}/{len(rows)}] {study.folder(row)}: {status}  ({time.time() - t0:.0f} s)", flush=True)
        if pending:
            start(pending.pop(0))
    del pinned  # unpins the cache
    return done


def _write_marker(study: Study, row: Row, job_id: str, executor: str, folder: Path) -> None:
    """``job.json`` of a submitted row (merged: a local job may already have written its pid)."""
    work = study.work_dir(row)
    work.mkdir(parents=True, exist_ok=True)
    record = read_marker(work)
    if record.get("job_id") not in (None, str(job_id)):
        record = {}  # a marker of an earlier job of this row
    record.update(job_id=str(job_id), executor=executor, folder=str(folder), submitted=time.time(),
                  submit_host=socket.gethostname())
    record.setdefault("host", socket.gethostname())
    files.write_json(work / "job.json", record)


def submit_slurm(rows: list[Row], study: Study, expected: list[str], *, time_min: int, gpus_per_job: int,
                 cpus_per_job: int, array_parallelism: int, partition: str | None = None,
                 mem: str | None = None) -> list[str]:
    """One SLURM array job over ``rows`` (submitit's ``map_array``); returns the job ids without
    waiting."""
    folder = Path(study.work) / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": time_min, "gpus_per_node": gpus_per_job, "cpus_per_task": cpus_per_job,
              "tasks_per_node": 1, "nodes": 1, "slurm_array_parallelism": array_parallelism,
              "name": f"msst-{study.dataset}"}
    if partition:
        params["slurm_partition"] = partition
    if mem:
        params["slurm_mem"] = mem
    executor.update_parameters(**params)
    jobs = executor.map_array(RowJob(study, expected), rows)
    for row, job in zip(rows, jobs):
        _write_marker(study, row, job.job_id, "slurm", folder)
    return [job.job_id for job in jobs]
