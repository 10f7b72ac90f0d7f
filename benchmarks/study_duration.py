"""How long the committed study's rows take on two cores, from their own measured ``wall_s``.

    python benchmarks/study_duration.py [--results results] [--jobs 2] [--overhead-s 15.2]

Reads ``tables/all_runs.csv`` of each regime under ``--results`` (what ``--collect`` writes from the
committed ``result.json`` files) and prints, per regime, number of frames and seed, the rows, their
training time (the sum of ``wall_s``, in thread-bound minutes) and the wall time of running them
``--jobs`` at a time: ``sum(wall_s) / jobs + rows * overhead / jobs``. The overhead is what each row
costs around its training (papermill, a kernel, the imports, writing the notebook). Its default,
15.2 s, was measured on the 2-core development machine: seed 1 of the DFEW-like T = 12 claim rows
took 2,546 s for 15 rows whose ``wall_s`` add up to 4,635 s, so (2,546 - 4,635 / 2) * 2 / 15 = 15.2 s.

This is the sum of measured rows, not one measured run of ``make reproduce FULL=1`` from nothing
(that would take most of a day on two cores); the one-off set-up (data, frame and feature caches,
backbone pre-training) and the Grad-CAM steps come on top and are printed by each step as it runs
(README "What `make reproduce` produces").
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from msstlib.builds import REGIME_SUFFIX
from msstlib.render import regime_of

OVERHEAD_S = 15.2  # measured per row on the 2-core machine (module docstring)
FIVE_FOLD_REGIMES = ("default", "dfew-like")  # the regimes the five-fold study ran (dfew-calibrated: builds only)


def durations(results: Path, jobs: int, overhead_s: float) -> pd.DataFrame:
    parts = []
    for folder in ("synthetic" + REGIME_SUFFIX[r] for r in FIVE_FOLD_REGIMES):
        regime = regime_of(Path(folder))
        table = results / folder / "tables" / "all_runs.csv"
        if not table.exists():
            raise FileNotFoundError(f"{table} is missing; make it with `python -m msstlib.study --dataset "
                                    f"synthetic --preset cpu --folds 1 2 3 4 5 --collect`")
        runs = pd.read_csv(table)
        grouped = runs.groupby(["frames", "seed"]).agg(rows=("wall_s", "size"), train_s=("wall_s", "sum")).reset_index()
        grouped.insert(0, "regime", regime)
        parts.append(grouped)
    out = pd.concat(parts, ignore_index=True)
    out["wall_min"] = (out.train_s / jobs + out.rows * overhead_s / jobs) / 60
    out["train_min"] = out.train_s / 60
    return out[["regime", "frames", "seed", "rows", "train_min", "wall_min"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--overhead-s", type=float, default=OVERHEAD_S)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.overhead_s < 0:
        parser.error("--jobs must be at least 1 and --overhead-s at least 0")
    try:
        table = durations(args.results, args.jobs, args.overhead_s)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    by = table.groupby("regime")[["rows", "train_min", "wall_min"]].sum()
    print()
    print(by.to_string(float_format=lambda v: f"{v:.1f}"))
    print(f"\nall rows: {int(table.rows.sum())}, {table.wall_min.sum() / 60:.1f} h at {args.jobs} jobs "
          f"({table.train_min.sum() / 60:.1f} h of training, {args.overhead_s:g} s overhead per row)")


if __name__ == "__main__":
    main()
