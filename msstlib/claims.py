"""The paper's claims as paired comparisons with 95 % intervals and a verdict (DESIGN.md §9).

What is compared (the configurations and the comparisons) is data of the grid
(:mod:`msstlib.grid`); this module is the statistics over the runs that landed.

A claim compares two configurations of one study. The unit of comparison is a **fold x seed
pair**: both configurations trained with the same seed and tested on the same fold's clips, so
the paired difference of their WAR (or UAR) removes what the fold and the seed share. Why units
and not a bootstrap over test clips: the largest source of noise between two of our rows is the
training run itself (seed-to-seed spread), which a bootstrap over one run's test clips cannot
see; it would give intervals that are too narrow. Over units the interval covers both training
and test-sample noise.

Units are not all independent: the seeds of one fold share its training clips and its test clips,
so a fold that favours one configuration favours it under every seed. Treating 5 folds x 3 seeds as
15 independent units would make the interval too narrow (by up to sqrt(3) when the fold effect
dominates). So the interval is over **folds**: each fold's paired differences are averaged over
its seeds first, and the interval is Student's t over the fold means (``n`` = folds >= 2; seeds
make each fold's mean less noisy, they do not add degrees of freedom). With a single fold the
interval is over its seeds, which speaks only for that fold; ``interval_over`` in the table says
which. With one unit there is no interval and the verdict is ``unresolved``. Verdicts, on the
claim's direction:

* ``supported``: the interval lies entirely on the side the paper claims;
* ``contradicted``: it lies entirely on the other side;
* ``unresolved``: it contains zero (the study is too small to tell at this size).

"Temporal-only attention matches joint attention" is a non-inferiority claim: supported when the
interval of (temporal - joint) lies above ``-MARGIN`` WAR points, contradicted when it lies below
it. ``mde`` is the smallest true difference the design detects with 80 % power at the 5 % level
given the observed spread of the fold-mean differences: ``(t_0.975 + t_0.8) * sd / sqrt(n)``.

Synthetic results are never DFEW/FERV39k results: the ``regime`` column names the SynDFER setting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import PRESETS
from .grid import MSST, UNIT_FOLD, Comparison, Config, build_claims, paper_claims
from .stats import ALPHA, holm, interval, signflip_p

MARGIN = 1.0  # WAR points: "no loss" for the attention claim (non-inferiority margin)
VERDICTS = ("supported", "contradicted", "unresolved")


def paired(df: pd.DataFrame, c: Comparison, metric: str = "war", across_epochs: bool = False) -> pd.DataFrame:
    """The fold x seed units both configurations ran, with their paired difference (points). Runs
    pair only within one build (``build``: the same data and the same pre-trained backbone), so a
    runs folder that holds two builds gives one unit per build, never a pair across them.
    ``across_epochs``: pair runs of other epoch counts (the build study's LSTMs train longer)."""
    keys = ["preset"] + ([] if across_epochs else ["epochs"]) + ["fold", "seed"]
    keys += [k for k in ("build", "build_name") if k in df]
    extra = [k for k in ("gflops", "majority") if k in df]
    a = c.better.select(df)[keys + [metric] + extra]
    b = c.worse.select(df)[keys + [metric] + extra]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    return m.assign(diff=m[f"{metric}_a"] - m[f"{metric}_b"])


def unit_interval(p: pd.DataFrame, level: float = 0.95) -> tuple[float, float, float, float, str]:
    """(mean, low, high, mde, interval_over) of the paired units ``p`` (columns fold, seed, diff),
    clustered by fold: seeds are averaged within each fold, the interval is over the fold means.
    Runs of several named builds on one fold (the build study): the interval is over the builds.
    Otherwise, with one fold, the interval is over its seeds (and says so)."""
    if p["fold"].nunique() == 1 and "build_name" in p and p["build_name"].nunique() >= 2:
        return (*interval(p["diff"].to_numpy(), level), "builds (one fixed split each)")
    if p["fold"].nunique() >= 2:
        means = p.groupby("fold")["diff"].mean().to_numpy()
        return (*interval(means, level), "folds (seeds averaged within each)")
    over = {0: "no units", 1: "one unit"}.get(len(p), "seeds (one fold)")
    return (*interval(p["diff"].to_numpy(), level), over)


def verdict(low: float, high: float, kind: str = "superior") -> str:
    if np.isnan(low) or np.isnan(high):
        return "unresolved"
    bound = -MARGIN if kind == "non-inferior" else 0.0
    if low > bound:
        return "supported"
    if high < bound:
        return "contradicted"
    return "unresolved"


def claims_table(df: pd.DataFrame, regime: str, metric: str = "war",
                 comparisons: list[Comparison] | None = None) -> pd.DataFrame:
    """One row per claim comparison: ``claim, regime, comparison, diff_mean, ci_low, ci_high,
    verdict`` plus the units it rests on, the MDE and the two configurations' GFLOPs.

    ``df`` holds one study family (one preset and epoch count: pairs never mix them)."""
    if df[["preset", "epochs"]].drop_duplicates().shape[0] > 1:
        raise ValueError("claims_table: the runs hold several (preset, epochs) families; pass one "
                         "(msstlib.results.families lists them)")
    rows = []
    for c in comparisons or paper_claims():
        p = paired(df, c, metric)
        mean, low, high, mde, over = unit_interval(p)
        rows.append({
            "claim": c.claim, "regime": regime, "comparison": c.text,
            "diff_mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict(low, high, c.kind), "metric": metric,
            "interval_over": over,
            "test": "non-inferiority, margin %.1f points" % MARGIN if c.kind == "non-inferior" else "superiority",
            "units": len(p), "folds": p["fold"].nunique(), "seeds": p["seed"].nunique(),
            "builds": p["build"].nunique() if "build" in p else int(len(p) > 0), "mde": mde,
            "gflops_a": float(p["gflops_a"].iloc[0]) if len(p) else np.nan,
            "gflops_b": float(p["gflops_b"].iloc[0]) if len(p) else np.nan,
        })
    return pd.DataFrame(rows)


def _points(v: float) -> str:
    """A signed difference to one decimal; one that rounds to zero prints "+0.0", never "-0.0"."""
    return f"{round(float(v), 1) + 0.0:+.1f}"


def cell(r) -> str:
    """One comparison of :func:`claims_table` as a reader gets it: ``+1.2 [+0.6, +1.7] supported
    (5×3)``, i.e. the mean, the 95 % interval, the verdict and the design (folds × seeds; ``N units
    over F folds`` when the folds do not all have the same seeds)."""
    if not r["units"]:
        return "not run"
    design = (f"{r['folds']}×{r['seeds']}" if r["units"] == r["folds"] * r["seeds"]
              else f"{r['units']} units over {r['folds']} folds")
    if r.get("builds", 1) > 1:  # runs of several pre-trained backbones, each paired within its own
        design += f", {r['builds']} builds"
    ci = f" [{_points(r['ci_low'])}, {_points(r['ci_high'])}]" if not np.isnan(r["ci_low"]) else " (no interval)"
    return f"{_points(r['diff_mean'])}{ci} {r['verdict']} ({design})"


def side_by_side(table: pd.DataFrame, cell=cell) -> pd.DataFrame:
    """The claims of every regime in :func:`claims_table` rows side by side: one row per claim
    comparison, one column per regime (``cell``), in the order the claims table has them. A
    comparison a regime has no row for is ``not run`` there. This is the table the README shows."""
    keys = list(dict.fromkeys(zip(table["claim"], table["comparison"])))
    cells = {(r["claim"], r["comparison"], r["regime"]): cell(r) for _, r in table.iterrows()}
    regimes = list(dict.fromkeys(table["regime"]))
    return pd.DataFrame([{"claim": c, "comparison": k, **{g: cells.get((c, k, g), "not run") for g in regimes}}
                         for c, k in keys], columns=["claim", "comparison", *regimes])


PAPER_DFEW_RATIO = 65.91 / 69.71  # the paper's DFEW rows: no T-Former vs its best (Table 1), the paper's numbers


def regime_summary(regimes: dict[str, pd.DataFrame], metric: str = "war") -> pd.DataFrame:
    """How much one frame carries in each regime: the best frame-level model (order-blind: the
    temporal mean or MSSTNet without T-Formers, T=4) against MSSTNet (T=4, depth 1), as mean WAR
    over the units both ran (builds, or the five-fold study's fold x seed units), their ratio, and
    the paired difference with its interval, and the ratio's own 95 % t interval (of each unit's
    ratio, over the same units: ``ratio`` itself is the ratio of the means). The DFEW-calibrated
    regime's target is the paper's DFEW ratio, 65.91 / 69.71 = 0.945 +- 0.01 (the ``paper (DFEW)``
    row, the paper's numbers; the older DFEW-like regime was calibrated to 0.85-0.90)."""
    rows = []
    for regime, df in regimes.items():
        best = None
        for cand in (Config(4, (0, 0, 0), "resnet18-mean"), Config(4, (0, 0, 0))):
            p = paired(df, Comparison("", MSST, cand), metric)
            if len(p) and (best is None or p[f"{metric}_b"].mean() > best[1][f"{metric}_b"].mean()):
                best = (cand, p)
        if best is None:
            continue
        cand, p = best
        mean, low, high, _, _ = unit_interval(p)
        _, ratio_low, ratio_high, _, _ = unit_interval(p.assign(diff=p[f"{metric}_b"] / p[f"{metric}_a"]))
        rows.append({"regime": regime, "frame_level_model": cand.label(),
                     "frame_level": p[f"{metric}_b"].mean(), "msstnet": p[f"{metric}_a"].mean(),
                     "ratio": p[f"{metric}_b"].mean() / p[f"{metric}_a"].mean(),
                     "ratio_ci_low": ratio_low, "ratio_ci_high": ratio_high,
                     "diff_mean": mean, "ci_low": low, "ci_high": high, "units": len(p)})
    rows.append({"regime": "paper (DFEW)", "frame_level_model": "no T-Former (paper's number)",
                 "frame_level": 65.91, "msstnet": 69.71, "ratio": PAPER_DFEW_RATIO, "ratio_ci_low": np.nan,
                 "ratio_ci_high": np.nan,
                 "diff_mean": 69.71 - 65.91, "ci_low": np.nan, "ci_high": np.nan, "units": 1})
    return pd.DataFrame(rows)


def plot_claims(table: pd.DataFrame, metric: str = "war", label: str = ""):
    """Paired differences with their 95 % intervals, coloured by verdict: one panel per regime,
    side by side, one line per comparison (the same line in every panel), so that the figure is
    as tall as one regime's claims. Only ``metric``'s rows (a Grad-CAM energy share is on another
    scale; its claims are in the tables). ``label`` (a smoke test's) heads the title, in red.
    Returns the figure."""
    import matplotlib.pyplot as plt

    colours = {"supported": "tab:green", "contradicted": "tab:red", "unresolved": "tab:gray", NOT_SHOWN: "tab:orange",
               "did not train": "tab:purple"}
    t = table[table["metric"] == metric] if "metric" in table else table
    regimes = list(dict.fromkeys(t["regime"]))
    keys = list(dict.fromkeys(zip(t["claim"], t["comparison"])))
    y = {k: len(keys) - 1 - i for i, k in enumerate(keys)}
    fig, axes = plt.subplots(1, max(len(regimes), 1), figsize=(4.5 * max(len(regimes), 1) + 3.5, 0.27 * len(keys) + 1.8),
                             sharey=True, squeeze=False)
    builds = "folds" not in t
    for ax, regime in zip(axes[0], regimes):
        rows = t[t["regime"] == regime]
        for _, r in rows.iterrows():
            yi, c = y[(r["claim"], r["comparison"])], colours[r["verdict"]]
            if not np.isnan(r["ci_low"]):
                ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=c, lw=2)
            ax.plot(r["diff_mean"], yi, "o", color=c)
        ax.axvline(0, color="black", lw=0.8)
        design = (f"{rows['units'].max()} builds" if builds else
                  f"{rows['folds'].max()} folds x {rows['seeds'].max()} seeds") if len(rows) else "no units"
        ax.set_title(f"{regime} regime ({design})", fontsize=10)
    axes[0][0].set_yticks(list(y.values()), [k[1] for k in keys], fontsize=8)
    over = "independent builds" if builds else "folds (seeds averaged within)"
    fig.supxlabel(f"paired difference in {metric.upper()} (points), 95 % interval over {over}", fontsize=9)
    fig.suptitle(label + "The paper's claims on SynDFER (raw verdicts): green supported, red contradicted, grey "
                 "unresolved, orange significantly worse, purple did not train", fontsize=10,
                 color="firebrick" if label else "black")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ claims over independent builds
#
# The claims the study settles (DESIGN.md §9, issue 25): each comparison runs once on each of K
# independent builds (msstlib.builds; one fixed split each), so each build is one unit and gives
# one paired difference. The verdict rests on the t interval over builds (K - 1 df) *and* the exact
# sign-flip p over builds (msstlib.stats); Holm's step-down over the claims of one regime is shown
# beside it (``verdict_holm``). The five-fold tables above stay the paper-style Table 1 / Table 3.

# A configuration whose mean WAR lies within this many points of the majority-class share of the
# test clips (a model that predicts one class) did not train: its comparisons get no verdict.
DID_NOT_TRAIN_POINTS = 2.0
NOT_SHOWN = "non-inferiority not shown (significantly worse)"
BUILD_VERDICTS = ("supported", "contradicted", "unresolved", NOT_SHOWN, "did not train")
UNIT_DECIMALS = 10  # a unit's values as claims_units.csv stores them (msstlib.results.FULL_PRECISION)


def build_units(df: pd.DataFrame, regime: str, comparisons: list[Comparison] | None = None,
                metric: str = "war") -> pd.DataFrame:
    """``claims_units.csv``: one row per comparison and build (``unit``) that ran both of its
    configurations, with the paired difference ``diff`` (points), both sides' values and the
    majority-class share of the build's test clips. :func:`claims_from_units` computes the claims
    from this table alone."""
    df = one_copy_per_build(df)
    rows = []
    for c in comparisons or build_claims():
        p = paired(df, c, metric, across_epochs=True)
        if p.duplicated(["build", "fold", "seed"]).any():
            raise ValueError(f"{c.text}: a build holds two runs of one configuration (other presets or budgets?); "
                             f"give build_units one preset's runs")
        for _, u in p.sort_values("build_name" if "build_name" in p else "build").iterrows():
            # Rounded to UNIT_DECIMALS: claims_units.csv holds these exact values, so the claims the
            # notebook computes and the ones recomputed from the CSV agree to the last digit.
            rows.append({"claim": c.claim, "comparison": c.text, "regime": regime,
                         "unit": u.get("build_name") or u["build"], "diff": round(u["diff"], UNIT_DECIMALS),
                         "metric": metric, "test": c.kind, "better": round(u[f"{metric}_a"], UNIT_DECIMALS),
                         "worse": round(u[f"{metric}_b"], UNIT_DECIMALS),
                         "majority": round(u.get("majority_b", np.nan), UNIT_DECIMALS)})
    return pd.DataFrame(rows, columns=["claim", "comparison", "regime", "unit", "diff", "metric", "test", "better",
                                       "worse", "majority"])


def one_copy_per_build(df: pd.DataFrame) -> pd.DataFrame:
    """The runs of one copy of each named build: a build re-made on another kind of CPU has other
    backbone weights (another ``build`` id under the same name, README "Builds"), and two copies
    of one draw are not two independent units. The copy with the most runs is kept (ties: the
    first id)."""
    if "build_name" not in df or not len(df):
        return df
    counts = df.groupby(["build_name", "build"]).size().reset_index(name="n")
    keep = counts.sort_values(["build_name", "n", "build"], ascending=[True, False, True]).drop_duplicates("build_name")
    return df[df["build"].isin(keep["build"])]


def build_verdict(low: float, high: float, p: float, kind: str, p_zero: float = np.nan,
                  alpha: float | None = None) -> str:
    """The verdict on a claim's direction from its interval *and* its sign-flip p (both must agree):
    ``supported`` / ``contradicted`` when the interval lies on one side of the bound (0, or
    ``-MARGIN`` for non-inferiority) and p < alpha; for non-inferiority, :data:`NOT_SHOWN` when it
    is not contradicted but significantly below 0 (``p_zero`` < alpha, interval below 0);
    otherwise ``unresolved``."""
    alpha = ALPHA if alpha is None else alpha
    if np.isnan(low) or np.isnan(high) or np.isnan(p):
        return "unresolved"
    bound = -MARGIN if kind == "non-inferior" else 0.0
    if low > bound and p < alpha:
        return "supported"
    if high < bound and p < alpha:
        return "contradicted"
    if kind == "non-inferior" and high < 0 and p_zero < alpha:
        return NOT_SHOWN
    return "unresolved"


def claims_from_units(units: pd.DataFrame, alpha: float | None = None) -> pd.DataFrame:
    """The claims table of the build study from :func:`build_units` rows (``claims_units.csv``),
    in their order: per comparison the mean difference, the t interval over builds, the exact
    sign-flip p (for non-inferiority: of ``diff + MARGIN``), the observed-SD MDE, the raw verdict
    and the Holm verdict (family: the comparisons of one regime that trained; alpha 0.05)."""
    alpha = ALPHA if alpha is None else alpha
    rows = []
    for (regime, claim, comparison), u in units.groupby(["regime", "claim", "comparison"], sort=False):
        d, kind = u["diff"].to_numpy(float), u["test"].iloc[0]
        mean, low, high, mde = interval(d)
        p = signflip_p(d, null=-MARGIN if kind == "non-inferior" else 0.0)
        p_zero = signflip_p(d) if kind == "non-inferior" else np.nan
        untrained = [side for side in ("better", "worse")
                     if u[side].mean() <= u["majority"].mean() + DID_NOT_TRAIN_POINTS]
        verdict = "did not train" if untrained else build_verdict(low, high, p, kind, p_zero, alpha)
        rows.append({"claim": claim, "regime": regime, "comparison": comparison, "diff_mean": mean, "ci_low": low,
                     "ci_high": high, "verdict": verdict,
                     "p_signflip": p, "p_holm": np.nan, "verdict_holm": "", "units": len(u),
                     "observed_sd_mde": mde, "metric": u["metric"].iloc[0],
                     "test": "non-inferiority, margin %.1f points" % MARGIN if kind == "non-inferior" else "superiority",
                     "interval_over": "builds (one fixed split each)", "better_mean": u["better"].mean(),
                     "worse_mean": u["worse"].mean(), "majority": u["majority"].mean(),
                     "did_not_train": " and ".join(untrained), "_kind": kind, "_p_zero": p_zero})
    t = pd.DataFrame(rows)
    if not len(t):
        return t
    for regime in t["regime"].unique():  # Holm within each regime, over the comparisons that trained
        fam = (t["regime"] == regime) & (t["did_not_train"] == "")
        t.loc[fam, "p_holm"] = holm(t.loc[fam, "p_signflip"].to_numpy())
        m = int(fam.sum())
        for i in t.index[fam]:
            r = t.loc[i]
            t.loc[i, "verdict_holm"] = build_verdict(r["ci_low"], r["ci_high"], r["p_holm"], r["_kind"],
                                                     min(1.0, m * r["_p_zero"]), alpha)
    t.loc[t["did_not_train"] != "", "verdict_holm"] = "did not train"
    return t.drop(columns=["_kind", "_p_zero"])


def build_cell(r, holm_verdict: bool = True) -> str:
    """One build-study comparison as a reader gets it: ``+1.2 [+0.6, +1.7] p=0.008 supported
    (Holm: supported; 8 builds)``."""
    if not r["units"]:
        return "not run"
    # WAR points to one decimal; a Grad-CAM energy share to three
    num = (lambda v: f"{round(float(v), 3) + 0.0:+.3f}") if r["metric"] == "gradcam_energy" else _points
    ci = f" [{num(r['ci_low'])}, {num(r['ci_high'])}]" if not np.isnan(r["ci_low"]) else " (no interval)"
    p = f" p={r['p_signflip']:.3f}" if not np.isnan(r["p_signflip"]) else ""
    holm = f"Holm: {r['verdict_holm']}; " if holm_verdict and r["verdict"] != "did not train" else ""
    builds = f"{r['units']} build" + ("s" if r["units"] != 1 else "")
    return f"{num(r['diff_mean'])}{ci}{p} {r['verdict']} ({holm}{builds})"


def build_side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`claims_from_units` rows with the regimes side by side (:func:`build_cell`)."""
    return side_by_side(table, build_cell)


def tally(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims at a glance: for each claim (its comparisons taken together) and regime,
    how many of its comparisons read each verdict of :data:`BUILD_VERDICTS`, raw, then how many
    Holm supports, and over how many builds. One row per claim, one column per regime, in the order
    :func:`claims_from_units` has them: the table the README opens its results with
    (``claims_tally.csv``). A claim holds in a regime only where all its comparisons are supported."""
    regimes = list(dict.fromkeys(table["regime"]))
    rows = []
    for claim in dict.fromkeys(table["claim"]):
        row = {"the paper's claim": claim}
        for regime in regimes:
            g = table[(table["claim"] == claim) & (table["regime"] == regime)]
            if not len(g):
                row[regime] = "not run"
                continue
            counts = g["verdict"].value_counts()
            parts = [f"{counts.get('supported', 0)} of {len(g)} supported"]
            parts += [f"{counts[v]} {v}" for v in BUILD_VERDICTS[1:] if counts.get(v, 0)]
            units = sorted(set(g["units"].astype(int)))
            builds = f"{units[0]}" if len(units) == 1 else f"{units[0]}-{units[-1]}"
            holm = int((g["verdict_holm"] == "supported").sum())
            row[regime] = ", ".join(parts) + f"; Holm: {holm} supported; {builds} builds"
        rows.append(row)
    return pd.DataFrame(rows, columns=["the paper's claim", *regimes])


def best_epoch_inflation(df: pd.DataFrame, configs: list[Config] | None = None) -> pd.DataFrame:
    """What picking the best *test* epoch (as several DFER repositories report) adds over the last
    epoch (our result): per configuration whose runs evaluated the test set after every epoch, the
    paired difference max-over-epochs minus last epoch, in WAR and UAR, with its t interval over
    builds. Never a result: a measure of a protocol's optimism."""
    configs = configs or [MSST, Config(4, (1, 1, 1), "me-gru")]
    rows = []
    for cfg in configs:
        sel = cfg.select(df)
        sel = sel[sel["test_every"] == 1]
        for metric in ("war", "uar"):
            d = (sel[f"best_{metric}"] - sel[metric]).to_numpy(float)
            mean, low, high, _ = interval(d)
            rows.append({"configuration": cfg.label(), "metric": metric, "last_epoch": sel[metric].mean(),
                         "best_test_epoch": sel[f"best_{metric}"].mean(), "inflation_mean": mean,
                         "ci_low": low, "ci_high": high, "units": len(d)})
    return pd.DataFrame(rows)


def build_claims_note(claims: pd.DataFrame, preset: str = "cpu") -> str:
    """The header of ``claims.md``: what the numbers are, the family, alpha and the rule."""

    train = PRESETS[preset].train
    per = ", ".join(f"{g}: {n} comparisons" for g, n in claims.groupby("regime", sort=False).size().items())
    return (f"**SynDFER, not DFEW.** Synthetic results of the {preset} preset: frozen pre-trained ResNet-18 "
            f"(each build its own), {train.optimizer.upper() if train.optimizer == 'sgd' else 'AdamW'} lr "
            f"{train.lr:g}, {train.epochs} epochs (the LSTMs: their validated budget, grid.LSTM_BUDGET), last "
            f"epoch reported. Each comparison is paired within a build; a **unit is one independent build** "
            f"(its own SynDFER draw and its own backbone, one fixed split: fold {UNIT_FOLD} tests 600 clips, the rest "
            f"train), never a fold. `diff_mean` and the 95 % t interval over builds (df = units - 1), in WAR "
            f"points; `p_signflip`: the exact two-sided sign-flip p over builds (non-inferiority: of diff + "
            f"{MARGIN:g}). A verdict needs both: the interval on one side of the bound and p < {ALPHA:g}. "
            f"**Multiplicity:** alpha = {ALPHA:g}, family = every comparison of one regime that trained ({per}), "
            f"rule = Holm's step-down on `p_signflip` (`p_holm`, `verdict_holm`; a non-inferiority claim's "
            f"'significantly worse' needs its p x family size < alpha there). `did not train`: a side's mean WAR "
            f"within {DID_NOT_TRAIN_POINTS:g} points of the majority-class share (`majority`): no verdict, "
            f"outside the family. `observed_sd_mde`: the difference the design would detect with 80 % power, "
            f"computed from the observed spread (itself an estimate), not a planned figure. Recompute everything "
            f"from `claims_units.csv` (msstlib.claims.claims_from_units).")


CAM_CLAIM = "the T-Former focuses on the moving muscles (Grad-CAM energy share)"


def cam_units(gradcam_dir, regime: str) -> pd.DataFrame:
    """Grad-CAM units (``claims_units.csv`` rows): one per comparison and build, from each build's
    ``<gradcam_dir>/<build>/gradcam_like_with_like.csv`` (msstlib.study.build_cam). ``diff`` is the
    build's mean paired difference over its scored clips in the share of map energy on the moving
    muscles; the clip-level interval inside a build stays in that file, as a description."""
    rows = []
    for f in sorted(Path(gradcam_dir).glob("*/gradcam_like_with_like.csv")):
        for _, r in pd.read_csv(f).iterrows():
            rows.append({"claim": CAM_CLAIM, "comparison": f"{r['a']} - {r['b']}",
                         "regime": regime, "unit": f.parent.name, "diff": r["diff"], "metric": "gradcam_energy",
                         "test": "superior", "better": r["energy_in_mask_a"], "worse": r["energy_in_mask_b"],
                         "majority": np.nan})
    return pd.DataFrame(rows, columns=["claim", "comparison", "regime", "unit", "diff", "metric", "test", "better",
                                       "worse", "majority"])
