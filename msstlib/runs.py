"""What a study is, which of its rows are done, and one row through papermill (DESIGN.md §7).

A :class:`Study` is what every row of one study shares: the data, the preset and its changes,
and where files go. A row is a run with an identity (:func:`msstlib.config.run_id`); its folder is
``<readable prefix>_<run id>``, e.g. ``T04_d111_s0_fold1_3f9c0a1b2d``:
``<results>/runs/<folder>/{result.json, log.csv, train_eval.ipynb}`` (committed) and
``<work>/runs/<folder>/{checkpoint.pt, job.json}`` (scratch). A row whose ``result.json`` exists and
reads is done (:func:`row_done`); a row with a checkpoint resumes from it, on any machine. Another
preset, epoch count or override is another run: another folder, never a skipped row.

A row the results folder holds under **another build** (other data or another pre-trained
backbone: :data:`msstlib.config.BUILD_FIELDS`) is found by :func:`other_builds`, so that a study
continued on another machine does not silently run every committed row again beside its twin.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import config, files, paths
from .grid import Row
from .notebooks import NOTEBOOKS, execute
from .train import versions


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
        return config.resolve(self.preset, frames=row.frames, depths=row.depths, variant=row.variant,
                              epochs=self.epochs, overrides=self.overrides(row))

    def identity(self, row: Row) -> dict:
        model, train, data = self.configs(row)
        return config.identity(model, train, data, dataset=row.dataset, fold=row.fold, split=row.split, seed=row.seed,
                               annotations=self.annotations, root=self.root)

    def run_id(self, row: Row) -> str:
        return config.run_id(self.identity(row))

    def folder(self, row: Row) -> str:
        return f"{row.name}_{self.run_id(row)}"

    def result_dir(self, row: Row) -> Path:
        return Path(self.results) / "runs" / self.folder(row)

    def work_dir(self, row: Row) -> Path:
        return Path(self.work) / "runs" / self.folder(row)


def row_done(study: Study, row: Row) -> bool:
    """Whether a row has landed: its ``result.json`` (or a probe's ``diverged.json``) is there and
    reads (a damaged one is not a result: the row runs again, :func:`msstlib.executors.row_status`
    says why)."""
    out = study.result_dir(row)
    for name in ("result.json", "diverged.json") if row.probe else ("result.json",):
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


class OtherBuild(NamedTuple):
    """A row not done here whose result the results folder holds under another build."""

    here: str  # the row's folder under this build
    there: str  # the folder of the result made with another build
    differences: list[str]  # how the two identities differ (build fields only)
    versions: dict  # the versions that result recorded


def other_builds(study: Study, rows: list[Row]) -> list[OtherBuild]:
    """Rows not done here that the results folder holds a result of, made with the same
    configuration but another build (other data, or another pre-trained backbone).

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
            diff = config.identity_diff(theirs.get("identity", {}), mine)
            if diff and all(line.split(":")[0] in config.BUILD_FIELDS for line in diff):
                found.append(OtherBuild(f"{row.name}_{config.run_id(mine)}", result.parent.name, diff,
                                        theirs.get("versions", {})))
                break  # one entry per row, even where several other builds hold it
    return found


def other_builds_message(study: Study, found: list[OtherBuild]) -> str:
    first, now = found[0], versions()
    return (f"{paths.relative(Path(study.results) / 'runs')} holds {len(found)} of these rows made with another "
            f"build, e.g. {first.there} (this build's run: {first.here}): {'; '.join(first.differences)}. That "
            f"result was made with torch {first.versions.get('torch', '?')} "
            f"({first.versions.get('cpu_capability', 'CPU capability not recorded')}); this machine has torch "
            f"{now['torch']} ({now['cpu_capability']}). A backbone pre-trained on another CPU has other weights "
            f"(floating-point results differ between SIMD kernels), so rows run with this build would not pair "
            f"with the committed ones. Either give the backbone those runs used (--backbone-weights FILE), run this "
            f"build as a study of its own (--results results/<another folder>), or add this build's rows to those "
            f"results (--allow-other-builds: rows they hold count as done, claims pair only within a build)")


def row_parameters(study: Study, row: Row) -> dict:
    """``train_eval.ipynb``'s parameters for one row, its paths recorded repository-relative (the
    executed notebook is committed with them, DESIGN.md §7)."""
    over = study.overrides(row)
    if over.get("backbone_weights"):
        over = {**over, "backbone_weights": paths.relative(over["backbone_weights"])}
    return {
        "annotations": paths.relative(study.annotations), "root": paths.relative(study.root), "dataset": row.dataset,
        "fold": row.fold if row.fold is not None else 0, "split": row.split or "",
        "frames": row.frames, "depths": list(row.depths), "variant": row.variant, "preset": study.preset,
        "epochs": study.epochs or 0, "seed": row.seed, "work_dir": paths.relative(study.work_dir(row)), "tag": row.tag,
        "result_dir": paths.relative(study.result_dir(row)), "threads": study.threads, "overrides": json.dumps(over),
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
