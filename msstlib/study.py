"""The batch runner: every table row through papermill (``python -m msstlib.study``; DESIGN.md §5).

The grid is plain data (:func:`grid`): the eight subsets of the three T-Formers at T=4 (one block
each), T in {4, 8, 12, 16} x depth in {1, 2, 3}, the ResNet-18 + temporal-mean baseline, plus two
rows beyond the paper -- the T=4 depth-1 model without its temporal position embedding (the clean
test of temporal order) and two more seeds of one row (seed-to-seed spread) -- times the chosen
folds. Each row runs ``notebooks/train_eval.ipynb`` with papermill, which writes
``results/<dataset>/runs/<row>/{result.json, log.csv, train_eval.ipynb}`` (checkpoints stay in
``build/``). Then ``notebooks/tables.ipynb`` renders ``results/<dataset>/tables/``.

Optimiser probes (the paper's SGD on the ``cpu`` preset) may diverge: that outcome is recorded in
``diverged.json`` and reported in the tables, not counted as a failure.

Resuming: a row whose ``result.json`` exists is skipped; a row killed mid-training resumes from its
last checkpoint. A failing row is recorded (``error.txt``) and the others go on; the exit status
is 0 only if every row succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .model import table1_variants

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BACKBONE = ROOT / "build" / "backbones" / "resnet18_syndfer_64px.pt"


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

    @property
    def name(self) -> str:
        where = f"fold{self.fold}" if self.fold is not None else self.split
        depth = "".join(map(str, self.depths))
        base = "r18mean" if self.variant == "resnet18-mean" else f"d{depth}"
        extra = f"_{self.tag}" if self.tag and self.tag != "seed-spread" else ""
        return f"T{self.frames:02d}_{base}{extra}_s{self.seed}_{where}"


# The paper's optimiser on the CPU preset's frozen-backbone set-up: does SGD train the new layers?
SGD_ROWS = (
    ("sgd", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
    ("sgd-warmup", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                    "warmup_epochs": 1}),
    ("sgd-lr0.01", {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step"}),
)


def grid(dataset: str, folds: list[int] | None = None, split: str | None = None, quick: bool = False,
         spread_seeds: tuple[int, ...] = (1, 2), sgd_rows: bool = False) -> list[Row]:
    """All rows of the study for one dataset (``quick``: a handful of rows for a smoke run).

    ``sgd_rows`` adds the paper's optimiser (and with a warm-up) on the T=4 depth-1 row: only
    meaningful for presets that switch to AdamW (the ``cpu`` preset).
    """
    places = [(f, None) for f in (folds or [1])] if dataset != "ferv39k" else [(None, split or "train")]
    base = table1_variants()
    if quick:
        base = [r for r in base if r["frames"] == 4 and r["depths"] in ((0, 0, 0), (1, 1, 1))]
        base += [{"frames": 8, "depths": (1, 1, 1), "variant": "msstnet"}]
    rows = []
    for fold, sp in places:
        for r in base:
            rows.append(Row(dataset, fold, sp, r["frames"], tuple(r["depths"]), r["variant"]))
        if not quick:
            rows.append(Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag="no-pos-embed",
                            overrides={"temporal_pos_embed": False}))
            rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", seed=s, tag="seed-spread") for s in spread_seeds]
            if sgd_rows:
                rows += [Row(dataset, fold, sp, 4, (1, 1, 1), "msstnet", tag=tag, overrides=o, probe=True)
                         for tag, o in SGD_ROWS]
    return rows


def run_row(row: Row, *, annotations: str, root: str, preset: str, results: Path, build: Path,
            epochs: int | None, threads: int, extra: dict, log_output: bool = False) -> tuple[Row, str | None]:
    """Execute ``train_eval.ipynb`` for one row; returns (row, error or None)."""
    import papermill as pm

    out = results / "runs" / row.name
    if (out / "result.json").exists() or (row.probe and (out / "diverged.json").exists()):
        return row, None
    out.mkdir(parents=True, exist_ok=True)
    (out / "error.txt").unlink(missing_ok=True)
    params = {
        "annotations": annotations, "root": root, "dataset": row.dataset,
        "fold": row.fold if row.fold is not None else 0, "split": row.split or "",
        "frames": row.frames, "depths": list(row.depths), "variant": row.variant, "preset": preset,
        "epochs": epochs or 0, "seed": row.seed, "work_dir": str(build / "runs" / row.name),
        "result_dir": str(out), "threads": threads, "overrides": json.dumps({**extra, **row.overrides}),
        "show_progress": False,
    }
    try:
        pm.execute_notebook(str(NOTEBOOKS / "train_eval.ipynb"), str(out / "train_eval.ipynb"), parameters=params,
                            cwd=str(NOTEBOOKS), progress_bar=False, log_output=log_output, kernel_name="python3")
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        if row.probe and (out / "diverged.json").exists():
            return row, None  # the probe's outcome: recorded in diverged.json and shown in the tables
        message = f"{type(exc).__name__}: {exc}"
        (out / "error.txt").write_text(message + "\n\n" + traceback.format_exc())
        return row, message.splitlines()[0] if message else type(exc).__name__
    if not (out / "result.json").exists():
        (out / "error.txt").write_text("the notebook finished without writing result.json\n")
        return row, "no result.json"
    return row, None


def render_tables(results: Path, dataset: str) -> None:
    import papermill as pm

    pm.execute_notebook(str(NOTEBOOKS / "tables.ipynb"), str(results / "tables.ipynb"),
                        parameters={"runs_dir": str(results / "runs"), "tables_dir": str(results / "tables"),
                                    "dataset": dataset, "figures_dir": str(results / "figures")},
                        cwd=str(NOTEBOOKS), progress_bar=False)


def backbone_path(quick: bool) -> Path:
    """The cached pre-trained ResNet-18 of the synthetic study (a smaller one for ``--quick``)."""
    return BACKBONE.with_stem(BACKBONE.stem + "_quick") if quick else BACKBONE


def prepare_synthetic(data: Path, clips: int, quick: bool) -> tuple[str, str]:
    """Generate SynDFER, prepare it like DFEW, cache its frames and pre-train the backbone (each step
    skipped when already done). Returns (annotations, root)."""
    py = sys.executable
    if not (data / "syndfer_params.json").exists():
        subprocess.run([py, "-m", "data_prep.synthetic", "--out", str(data), "--clips", str(clips), "--seed", "0"],
                       check=True, cwd=ROOT)
    ann = data / "prepared" / "annotations.csv"
    if not ann.exists():
        subprocess.run([py, "-m", "data_prep.dfew", "--root", str(data), "--out", str(ann.parent)], check=True, cwd=ROOT)
    if not (ann.parent / "cache" / "index_64px.json").exists():
        subprocess.run([py, "-m", "msstlib.data", "cache", "--annotations", str(ann), "--root", str(data),
                        "--size", "64"], check=True, cwd=ROOT)
    pre = ["--clips", "400", "--epochs", "1"] if quick else []  # full: PretrainConfig's defaults
    subprocess.run([py, "-m", "msstlib.pretrain", "--out", str(backbone_path(quick)), *pre], check=True, cwd=ROOT)
    return str(ann), str(data)


def overview(annotations: str, root: str, results: Path) -> None:
    """``data_overview.ipynb`` on the study's data: figures under ``results/figures``."""
    import papermill as pm

    results.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / "data_overview.ipynb"), str(results / "data_overview.ipynb"),
                        parameters={"annotations": annotations, "root": root, "figures_dir": str(results / "figures")},
                        cwd=str(NOTEBOOKS), progress_bar=False)


def tiny_synthetic(data: str | Path, clips: int = 70, seed: int = 0) -> tuple[str, str]:
    """A tiny SynDFER prepared like DFEW, for notebook defaults and tests. Returns (annotations, root)."""
    from data_prep import dfew
    from data_prep.synthetic import SynDFERConfig, generate

    data = Path(data)
    ann = data / "prepared" / "annotations.csv"
    if not ann.exists():
        generate(data, SynDFERConfig(), clips=clips, seed=seed, jobs=1, verbose=False)
        if dfew.main(["--root", str(data), "--out", str(ann.parent)]) != 0:
            raise RuntimeError(f"preparing the tiny SynDFER at {data} failed")
    return str(ann), str(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstlib.study", description="Run every table row through papermill.")
    p.add_argument("--dataset", choices=("synthetic", "dfew", "ferv39k"), required=True)
    p.add_argument("--root", help="dataset root (required for dfew/ferv39k; synthetic default: build/syndfer)")
    p.add_argument("--annotations", help="annotations.csv (default: ROOT/prepared/annotations.csv)")
    p.add_argument("--preset", choices=("cpu", "paper"), default="cpu")
    p.add_argument("--folds", type=int, nargs="+", default=[1], help="DFEW-layout folds (paper: 1 2 3 4 5)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--clips", type=int, default=3000, help="SynDFER size when it must be generated")
    p.add_argument("--jobs", type=int, default=1, help="rows run in parallel (each gets cores/jobs threads)")
    p.add_argument("--quick", action="store_true", help="a few rows, short training: a smoke run in minutes")
    p.add_argument("--results", help="results folder (default: results/<dataset>, or results/<dataset>-quick)")
    p.add_argument("--dry-run", action="store_true", help="list the rows and exit")
    args = p.parse_args(argv)

    rows = grid(args.dataset, args.folds, quick=args.quick, sgd_rows=args.preset == "cpu")
    results = Path(args.results) if args.results else ROOT / "results" / (args.dataset + ("-quick" if args.quick else ""))
    if args.dry_run:
        for row in rows:
            done = (results / "runs" / row.name / "result.json").exists()
            print(f"{row.name:40s} {'done' if done else 'todo'}  frames={row.frames} depths={row.depths} "
                  f"variant={row.variant} seed={row.seed} {row.tag}")
        print(f"{len(rows)} rows -> {results}/runs")
        return 0

    extra = {}
    if args.dataset == "synthetic":
        data = Path(args.root) if args.root else ROOT / "build" / ("syndfer-quick" if args.quick else "syndfer")
        annotations, root = prepare_synthetic(data, 800 if args.quick else args.clips, args.quick)
        overview(annotations, root, results)
        if args.preset == "cpu":
            extra["backbone_weights"] = str(backbone_path(args.quick))
    else:
        if not args.root:
            p.error(f"--root is required for {args.dataset}")
        root = args.root
        annotations = args.annotations or str(Path(root) / "prepared" / "annotations.csv")
        if not Path(annotations).exists():
            print(f"error: {annotations} not found; run `python -m data_prep.{args.dataset} --root {root} "
                  f"--out {Path(root) / 'prepared'}` first", file=sys.stderr)
            return 2
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else None)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    build = ROOT / "build" / results.name
    t0 = time.time()
    failures = []
    kwargs = dict(annotations=annotations, root=root, preset=args.preset, results=results, build=build,
                  epochs=epochs, threads=threads, extra=extra)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_row, row, **kwargs) for row in rows]
        for i, fut in enumerate(as_completed(futures), 1):
            row, error = fut.result()
            diverged = (results / "runs" / row.name / "diverged.json").exists()
            status = ("ok (diverged: an optimiser probe's outcome)" if diverged else "ok") if error is None else f"FAILED: {error}"
            print(f"[{i}/{len(rows)}] {row.name}: {status}  ({time.time() - t0:.0f} s)", flush=True)
            if error is not None:
                failures.append(row.name)
    try:
        render_tables(results, args.dataset)
        print(f"tables -> {results / 'tables'}")
    except Exception as exc:
        print(f"tables.ipynb failed: {exc}", file=sys.stderr)
        failures.append("tables")
    print(f"study finished in {time.time() - t0:.0f} s; {len(rows) - len([f for f in failures if f != 'tables'])}"
          f"/{len(rows)} rows ok" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
