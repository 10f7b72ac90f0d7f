"""Does a cheaper feature cache change WAR? 16 candidate frames per clip, or 8-bit codes (issue 29)

``DataConfig.candidate_frames = K`` makes the sampler pick a clip's T frames among K evenly spaced
candidates (the centres of K equal segments) instead of among all its frames, so a frozen-backbone
feature cache needs to store only those K (``python -m msstlib.features ... --candidate-frames K``).
This compares the committed build rows (every frame a candidate) with the same rows re-run with
K = 16, on the same builds (same data, same backbone, same seed): one paired difference per row.

    python results/feature-cache/candidate_frames.py --rerun build/k16/results/synthetic/builds/runs

writes ``paired_rows.csv`` (one line per row) and ``summary.csv`` / ``summary.md`` here: the mean
paired difference in WAR and UAR (points) with Student's t 95 % interval, over rows and per build.
The rows are the configurations of one or two builds, so the interval describes this set of rows;
it is not a claim over builds.

The same pairing serves any re-run of committed rows with one setting changed: ``--tag`` names the
re-run's columns and ``--what`` the heading. The 8-bit cache (``DataConfig.feature_precision =
"uint8"``):

    python results/feature-cache/candidate_frames.py --rerun build/u8/results/synthetic/builds/runs \
        --tag u8 --what "uint8 feature cache" --out results/feature-cache/uint8

Two re-runs pair with each other through ``--committed`` and ``--baseline``: K = 32 candidates in
uint8 against every frame in float16, both on a draw with DFEW's clip lengths (``python -m
msstlib.study ... --builds 1 --clip-lengths 11 143 --results-root DIR``; docs/speed.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from msstlib import results, stats  # noqa: E402

KEYS = ["build_name", "frames", "depths", "variant", "tag", "seed"]  # the grid's vocabulary (result.json fields)


def paired(committed: pd.DataFrame, rerun: pd.DataFrame, tag: str = "k16") -> pd.DataFrame:
    m = rerun[KEYS + ["war", "uar"]].merge(committed[KEYS + ["war", "uar"]], on=KEYS, suffixes=(f"_{tag}", "_all"))
    return m.assign(d_war=m[f"war_{tag}"] - m["war_all"], d_uar=m[f"uar_{tag}"] - m["uar_all"])


def summary(pairs: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, group in [("all rows", pairs), *((f"build {b}", g) for b, g in pairs.groupby("build_name"))]:
        row = {"over": name, "rows": len(group)}
        for metric in ("war", "uar"):
            mean, low, high, _ = stats.interval(group[f"d_{metric}"].to_numpy())
            row |= {f"d_{metric}": mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
        row["max_abs_d_war"] = group["d_war"].abs().max()
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="results/feature-cache/candidate_frames.py", description=__doc__.split("\n")[0])
    p.add_argument("--rerun", required=True, help="the re-run rows' runs folder")
    p.add_argument("--committed", default=str(ROOT / "results" / "synthetic" / "builds" / "runs"))
    p.add_argument("--out", default=str(Path(__file__).parent))
    p.add_argument("--tag", default="k16", help="the re-run's column suffix (default k16)")
    p.add_argument("--what", default="K = 16 candidate frames", help="what the re-run changed (the heading)")
    p.add_argument("--baseline", help="what --committed holds (the heading; default: every frame for k16, else the "
                   "committed rows)")
    args = p.parse_args(argv)
    rerun, committed = results.load_results(args.rerun), results.load_results(args.committed)
    pairs = paired(committed, rerun, args.tag)
    if not len(pairs):
        print(f"error: no row of {args.rerun} has a committed twin in {args.committed}", file=sys.stderr)
        return 2
    table = summary(pairs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs.sort_values(KEYS).to_csv(out / "paired_rows.csv", index=False, float_format="%.4f")
    table.to_csv(out / "summary.csv", index=False, float_format="%.4f")
    baseline = args.baseline or ("every frame" if args.tag == "k16" else "the committed rows")
    (out / "summary.md").write_text(f"{args.what} minus {baseline}, WAR/UAR points, SynDFER default "
                                    "regime (synthetic, NOT DFEW), cpu preset; 95 % t interval over rows.\n\n"
                                    + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
