"""The batch runner's command line: every table row through papermill (``python -m msstlib.study``).

What a study runs is :mod:`msstlib.grid` (rows as data); what is done and how one row runs,
:mod:`msstlib.runs`; where rows run (this machine or SLURM, through submitit),
:mod:`msstlib.executors`; the data, backbone and caches a study reads, :mod:`msstlib.builds`; its
tables and figures, :mod:`msstlib.render`. This module parses the flags and drives them:

* the five-fold study (default): ``--folds``, ``--seeds 1 2`` (every row a claim compares with
  those seeds), ``--claims-only``, ``--frames 4``; ``--regime dfew-like`` runs on SynDFER's DFEW-like
  regime (data in ``build/syndfer-dfewlike``, results in ``results/synthetic-dfewlike``);
* the claims' replicates: ``--builds K ...`` (each an independent SynDFER draw and backbone, one
  fixed split) and ``--validation`` (the draw protocol choices are made on);
* ``--executor local`` (default: ``--jobs N`` at a time, each with ``cores / N`` threads and, on a
  machine with GPUs, its own GPU; waits, then renders the tables) or ``--executor slurm`` (one
  array job; returns the job ids; a pre-empted job is requeued and resumes from its checkpoint;
  the job landing the last row renders the tables, or run ``--collect``);
* ``--status`` lists rows as done / running / queued / failed / todo, ``--dry-run`` as done / todo;
  running the same command again runs only what is missing. Optimiser probes (the paper's SGD on
  the ``cpu`` preset) may diverge: that outcome is recorded in ``diverged.json`` and reported in the
  tables, not counted as a failure.

A bad flag or input, a results folder in use, a damaged file or an operating-system error is one
line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import yaml

from . import config, files, inputs, paths
from .builds import REGIME_SUFFIX, REGIMES, ROOT, Build, backbone_path, check_regime, drop_feature_cache, prepare_synthetic
from .executors import row_status, run_local, submit_slurm
from .grid import build_grid, grid, validation_grid
from .render import QUICK_CAM_CLIPS, build_cam, overview, render_figures, render_tables, where
from .runs import Study, other_builds, other_builds_message, row_done

QUICK_CLIPS = 400  # the quick run's SynDFER: 80 test clips per fold, enough for a smoke test of every step
LOG_BAR_INTERVAL = 30  # seconds between progress-bar updates when the output is a log file, not a terminal


def quiet_bars_in_logs(stream=None) -> None:
    """A study writing to a log file (``nohup``, SLURM, ``make ... > log``) gets a progress bar update
    every :data:`LOG_BAR_INTERVAL` seconds instead of tqdm's ten a second: a carriage-returned bar
    is one line in a terminal but hundreds of updates on one line of a log. It sets tqdm's own
    default (``TQDM_MININTERVAL``, which the subprocesses and notebook kernels of the study inherit)
    unless the user set it; a bar that names its own interval keeps it."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_BAR_INTERVAL))


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise config.ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.01 or --set depths=[2,2,2]")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # a tag (!!python/...) is refused by safe_load, rightly
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise config.ConfigError(f"--set {item!r}: not a plain YAML value ({first}); give a number, a string, a list "
                                f"such as [2,2,2] or true/false (no tags)") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.study", description="Run every table row through papermill, "
                                "one submitit job per row (locally or on SLURM).")
    p.add_argument("--dataset", choices=("synthetic", "dfew", "ferv39k"), required=True)
    p.add_argument("--root", help="dataset root (required for dfew/ferv39k; synthetic default: build/syndfer)")
    p.add_argument("--annotations", help="annotations.csv (default: ROOT/prepared/annotations.csv)")
    p.add_argument("--preset", choices=sorted(config.PRESETS), default="cpu")
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
    b.add_argument("--clip-lengths", type=int, nargs=2, metavar=("SHORTEST", "LONGEST"),
                   help="with --builds and --results-root: draw each build's SynDFER with clips of SHORTEST..LONGEST "
                   "frames instead of 8..47 (11 143: DFEW's mean of 77), as data of its own beside the build's "
                   "(same seeds and backbone); a check of what a setting does on longer clips, never a claim unit")
    b.add_argument("--drop-caches", action="store_true", help="with --builds: delete the feature cache its rows read (9.6 GB) "
                   "once all of them have landed (frames, checkpoints and other settings' caches stay)")
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
    quiet_bars_in_logs()
    if args.regime != "default" and args.dataset != "synthetic":
        p.error(f"--regime is a SynDFER setting; {args.dataset} has its own data")
    bad_folds = [k for k in args.folds if k not in inputs.FOLDS]
    if bad_folds and args.dataset != "ferv39k":
        raise config.ConfigError(f"--folds {' '.join(map(str, args.folds))}: DFEW's folds are 1..5 ({bad_folds[0]} is "
                            f"not one)")
    if args.epochs is not None and args.epochs < 1:
        raise config.ConfigError(f"--epochs {args.epochs}: train at least 1 epoch (leave it out for the preset's)")
    if args.clip_lengths and not (args.builds or args.validation):
        raise config.ConfigError("--clip-lengths: a setting of the builds' SynDFER draws; give --builds K ... with it")
    for flag, value in (("--jobs", args.jobs), ("--threads", args.threads), ("--clips", args.clips)):
        if value is not None and value < 1:
            raise config.ConfigError(f"{flag} {value}: expected an integer >= 1")
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
        except config.ConfigError as exc:
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
        print(f"(the study's data are not prepared here ({paths.relative(annotations)}): which rows are missing is not "
              f"known)")
        where(results)
        return 0
    if listing and not Path(annotations).exists():
        for row in rows:
            print(f"{row.name:44s} todo  (data not prepared yet: no run id)")
        print(f"{len(rows)} rows -> {paths.relative(results / 'runs')}")
        return 0
    try:
        folders = [study.folder(row) for row in rows]  # also checks every row's configuration
    except (config.ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = other_builds(study, rows)
    elsewhere = {f.here: f.there for f in found}  # this build's folder -> the one holding the row
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
        print(f"{len(rows)} rows -> {paths.relative(results / 'runs')}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
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
                ids = submit_slurm(todo, study, folders, time_min=args.slurm_time,
                                   gpus_per_job=args.slurm_gpus_per_job, cpus_per_job=args.slurm_cpus_per_job,
                                   array_parallelism=args.slurm_array_parallelism, partition=args.slurm_partition,
                                   mem=args.slurm_mem)
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




def run_builds(args: argparse.Namespace, extra: dict, five_fold_results: Path) -> int:
    """``--builds K ...`` / ``--validation``: each build in turn is prepared (data, backbone,
    caches; skipped where done), its rows run (``--jobs`` at a time) and, with ``--drop-caches``,
    its feature cache removed once they have all landed; then the tables are rendered."""
    lengths = tuple(args.clip_lengths) if args.clip_lengths else None
    try:
        if lengths and not args.results_root:  # its rows would sit beside the build's own as the same unit
            raise config.ConfigError(f"--clip-lengths {lengths[0]} {lengths[1]}: a draw with other clip lengths is a "
                                     f"check, not a claim unit; give --results-root DIR for its rows")
        builds = ([Build(0, args.regime, lengths=lengths)] if args.validation else []) + [
            Build(k, args.regime, lengths=lengths) for k in args.builds or []]
    except config.ConfigError as exc:
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
            rows = validation_grid(args.dataset) if b.index == 0 else build_grid(args.dataset, b.name)
            if args.frames:  # e.g. make reproduce's subset: the T = 4 rows of two builds
                rows = [r for r in rows if r.frames in args.frames]

            def build_study(annotations) -> Study:
                results = b.results(args.dataset, args.results_root) if args.results_root else b.results()
                scratch = (Path(args.results_root).parent / "work" / b.name / b.scratch().name if args.results_root
                           else b.scratch())  # a re-run trains its own checkpoints, never resumes the study's
                return Study(annotations=str(Path(annotations).resolve()), root=str(data.resolve()),
                             dataset=args.dataset, preset=args.preset, results=str(results), work=str(scratch),
                             epochs=args.epochs, extra={**extra, "backbone_weights": str(b.backbone().resolve())},
                             threads=threads)

            def landed(annotations) -> bool:  # every row's result there (needs the data and backbone)
                return (Path(annotations).exists() and b.backbone().exists()
                        and all(row_done(build_study(annotations), row) for row in rows))

            if not listing and not args.collect:  # one writer of a build (data, backbone, rows) at a time
                held.enter_context(files.FolderLock(b.folder(), "build folder"))
                k = int(extra.get("candidate_frames", 0))
                precision = str(extra.get("feature_precision", "float16"))  # how the rows' cache stores features
                # a build whose rows have all landed needs no feature cache (minutes and 5-10 GB):
                # Grad-CAM reads the frames and checkpoints
                done = landed(annotations)
                annotations, _ = b.prepare(candidate_frames=k, features=not done, feature_precision=precision)
                if done and not landed(annotations):  # its backbone was re-made: the rows run again
                    annotations, _ = b.prepare(candidate_frames=k, feature_precision=precision)
            if not Path(annotations).exists() or not b.backbone().exists():
                print(f"build {b.name}: {len(rows)} rows todo (not prepared yet: no run ids)")
                continue
            study = build_study(annotations)
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
                      f"({drop_feature_cache(annotations, k, precision) / 1e9:.1f} GB freed)", flush=True)
    if listing or not args.builds or args.results_root:  # no table of the study's from these
        if args.results_root and not listing:
            print(f"builds {' '.join(b.name for b in builds)}: rows under {paths.relative(args.results_root)}; "
                  f"python -m msstlib.reproduce --rerun {paths.relative(args.results_root)} compares them", flush=True)
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
