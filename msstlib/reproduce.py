"""Does it reproduce? Re-run rows against the committed ones (``make reproduce``; issue 28).

    python -m msstlib.reproduce [--rerun build/reproduce/results] [--committed results] [--regime default]
        [--report build/reproduction.md]

``make reproduce`` re-runs builds 1 and 2's T = 4 rows (and their Grad-CAM) from nothing into
``build/reproduce/results/`` (``python -m msstlib.study ... --results-root``), never over
``results/``; this command then compares them with the committed rows of the same builds:

* **Same build** (the re-run row has the committed row's run id: the data and the pre-trained
  backbone came out bit-identical, as they do on the same kind of CPU): WAR and UAR must be equal
  exactly.
* **Another build** (another run id under the same build name: pre-training on another kind of
  CPU gives other weights, README "Builds"): the re-run WAR must lie within the spread the committed
  builds show for that configuration, ``max(2 x SD over builds, 1 point)``.
* **Verdicts**: each claim is computed from the re-run builds' units and from the committed units of
  the same builds (``msstlib.claims``); the verdicts must be the same.

It prints the rows and verdicts side by side, writes the comparison to ``--report`` (Markdown),
and exits 0 when everything agrees, 1 otherwise (with a table of what does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import claims, files, grid, inputs, paths, results
from .builds import REGIME_SUFFIX, ROOT

SPREAD_FLOOR = 1.0  # WAR points: the least tolerance against another build


def rows_compared(committed: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    """One line per re-run row: the committed WAR/UAR beside the re-run ones, and whether they agree."""
    spread = (committed.groupby("config_id")["war"].std(ddof=1) if len(committed) else pd.Series(dtype=float))
    out = []
    for _, r in rerun.sort_values("run").iterrows():
        same = committed[committed["run_id"] == r["run_id"]]
        line = {"row": r["run"], "build": r.get("build_name"), "rerun_war": r["war"], "rerun_uar": r["uar"]}
        if len(same):
            c = same.iloc[0]
            agree = bool(c["war"] == r["war"] and c["uar"] == r["uar"])
            line.update(committed_war=c["war"], committed_uar=c["uar"], compared="same build: exactly",
                        tolerance=0.0, agrees=agree)
        else:
            other = committed[(committed["config_id"] == r["config_id"])
                              & (committed.get("build_name") == r.get("build_name"))]
            if not len(other):
                line.update(committed_war=np.nan, committed_uar=np.nan, compared="no committed row",
                            tolerance=np.nan, agrees=True)
            else:
                c = other.iloc[0]
                sd = spread.get(r["config_id"], np.nan)
                tol = max(2 * sd, SPREAD_FLOOR) if np.isfinite(sd) else SPREAD_FLOOR
                line.update(committed_war=c["war"], committed_uar=c["uar"],
                            compared="another build: within the builds' spread", tolerance=tol,
                            agrees=bool(abs(c["war"] - r["war"]) <= tol))
        line["d_war"] = line["rerun_war"] - line["committed_war"]
        out.append(line)
    return pd.DataFrame(out, columns=["row", "build", "committed_war", "rerun_war", "d_war", "committed_uar",
                                      "rerun_uar", "compared", "tolerance", "agrees"])


def cam_compared(committed_cam: pd.DataFrame, rerun_cam: pd.DataFrame, same_builds: set) -> pd.DataFrame:
    """Grad-CAM units (``msstlib.claims.cam_units``): a build that came out the same must score the
    same (its checkpoints are the same weights); another build is judged by the verdicts alone."""
    m = rerun_cam.merge(committed_cam, on=["comparison", "unit"], how="left", suffixes=("_rerun", "_committed"))
    out = pd.DataFrame({"comparison": m["comparison"], "unit": m["unit"], "committed_diff": m["diff_committed"],
                        "rerun_diff": m["diff_rerun"]})
    same = out["unit"].isin(same_builds) & out["committed_diff"].notna()
    out["agrees"] = ~same | ((out["committed_diff"] - out["rerun_diff"]).abs() < 1e-9)
    return out


def verdicts_compared(committed: pd.DataFrame, rerun: pd.DataFrame, regime: str,
                      committed_cam: pd.DataFrame | None = None, rerun_cam: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim's verdict from the re-run units and from the committed units of the same builds
    (WAR units, and Grad-CAM units when given)."""
    comparisons = grid.build_claims()
    ru = claims.build_units(rerun, regime, comparisons)
    if rerun_cam is not None and len(rerun_cam):
        ru = pd.concat([ru, rerun_cam], ignore_index=True)
    if not len(ru):
        return pd.DataFrame(columns=["claim", "comparison", "units", "committed", "rerun", "agrees"])
    cu = claims.build_units(committed[committed["build_name"].isin(set(ru["unit"]))], regime, comparisons)
    if committed_cam is not None and len(committed_cam):
        cu = pd.concat([cu, committed_cam], ignore_index=True)
    keys = set(map(tuple, ru[["comparison", "unit"]].values))
    cu = cu[[(c, u) in keys for c, u in cu[["comparison", "unit"]].values]]  # the same units on both sides
    a, b = claims.claims_from_units(cu), claims.claims_from_units(ru)
    if not len(a):
        a = pd.DataFrame(columns=b.columns)
    m = b.merge(a, on=["claim", "comparison"], how="left", suffixes=("_rerun", "_committed"))
    out = pd.DataFrame({"claim": m["claim"], "comparison": m["comparison"], "units": m["units_rerun"],
                        "committed": m["verdict_holm_committed"].fillna("not committed"),
                        "rerun": m["verdict_holm_rerun"]})
    out["agrees"] = (out["committed"] == out["rerun"]) | (out["committed"] == "not committed")
    return out


def _table(df: pd.DataFrame, percent: tuple[str, ...] = ()) -> str:
    show = df.copy()
    for col in percent:
        show[col] = show[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return show.to_markdown(index=False)


def report(rows: pd.DataFrame, verdicts: pd.DataFrame, rerun_dir: str, committed_dir: str,
           cam: pd.DataFrame | None = None) -> str:
    cam = cam if cam is not None else pd.DataFrame(columns=["comparison", "unit", "committed_diff", "rerun_diff",
                                                            "agrees"])
    bad_rows, bad_verdicts, bad_cam = rows[~rows["agrees"]], verdicts[~verdicts["agrees"]], cam[~cam["agrees"]]
    ok = not len(bad_rows) and not len(bad_verdicts) and not len(bad_cam)
    head = ("**It reproduces**: every re-run row, Grad-CAM score and verdict agrees with the committed ones." if ok
            else f"**It does not reproduce**: {len(bad_rows)} of {len(rows)} rows, {len(bad_cam)} of {len(cam)} "
                 f"Grad-CAM units and {len(bad_verdicts)} of {len(verdicts)} verdicts disagree (below, first).")
    parts = [f"# Reproduction: {rerun_dir} against {committed_dir}", "", head, "",
             "Rows of the same build must match exactly; rows of another build (another CPU's pre-training) "
             "must lie within max(2 x the committed builds' SD, 1 point) of the committed WAR (msstlib.reproduce). "
             "WAR and UAR in %.", ""]
    if not ok:
        if len(bad_rows):
            parts += ["## Rows that disagree", "", _table(bad_rows, ("committed_war", "rerun_war", "d_war",
                                                                      "committed_uar", "rerun_uar", "tolerance")), ""]
        if len(bad_cam):
            parts += ["## Grad-CAM units that disagree", "", _table(bad_cam), ""]
        if len(bad_verdicts):
            parts += ["## Verdicts that disagree", "", _table(bad_verdicts), ""]
    parts += ["## Every row", "", _table(rows, ("committed_war", "rerun_war", "d_war", "committed_uar", "rerun_uar",
                                               "tolerance")), "",
              "## Grad-CAM units (each build's own models)", "", _table(cam) if len(cam) else "(none re-run)", "",
              "## Every verdict (Holm, over the re-run builds only)", "", _table(verdicts), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstlib.reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--rerun", default=str(ROOT / "build" / "reproduce" / "results"),
                   help="the re-run results root (make reproduce: build/reproduce/results)")
    p.add_argument("--committed", default=str(ROOT / "results"), help="the committed results root")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--regime", default="default", choices=tuple(REGIME_SUFFIX))
    p.add_argument("--report", default=str(ROOT / "build" / "reproduction.md"))
    args = p.parse_args(argv)
    where = f"{args.dataset}{REGIME_SUFFIX[args.regime]}/builds/runs"
    try:
        rerun = results.load_results(Path(args.rerun) / where)
        if not len(rerun):
            raise inputs.InputError(f"--rerun {args.rerun}: no re-run rows under {where}; run `make reproduce` (or "
                                    f"python -m msstlib.study --dataset synthetic --builds 1 2 --frames 4 "
                                    f"--results-root {args.rerun}) first")
        committed = results.load_results(Path(args.committed) / where)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    rows = rows_compared(committed, rerun)
    cams = {side: claims.cam_units(Path(root) / where.replace("runs", "gradcam"), args.regime)
            for side, root in (("committed", args.committed), ("rerun", args.rerun))}
    same = {b for b, g in rows.groupby("build") if (g["compared"] == "same build: exactly").all()}
    cam = cam_compared(cams["committed"], cams["rerun"], same)
    verdicts = verdicts_compared(committed, rerun, args.regime, cams["committed"], cams["rerun"])
    text = report(rows, verdicts, paths.relative(args.rerun), paths.relative(args.committed), cam)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    files.write_text(args.report, text)
    print(text)
    print(f"-> {args.report}")
    return 0 if rows["agrees"].all() and verdicts["agrees"].all() and cam["agrees"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
