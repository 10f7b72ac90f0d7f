"""The paper's claims as paired comparisons with 95 % intervals and a verdict (DESIGN.md §9).

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

from dataclasses import dataclass

import numpy as np
import pandas as pd

MARGIN = 1.0  # WAR points: "no loss" for the attention claim (non-inferiority margin)
VERDICTS = ("supported", "contradicted", "unresolved")


# The LSTM baseline rerun at higher learning rates with the shared budget (the cpu preset's lr is
# 1e-3): the study runs these rows (msstlib.study) and claim (e) compares MSSTNet with each of them.
LSTM_LEARNING_RATES = (("lr-3e-3", 3e-3), ("lr-1e-2", 1e-2))


@dataclass(frozen=True)
class Config:
    """One configuration of a study, as the columns of :func:`msstlib.results.load_results` name it."""

    frames: int
    depths: str = "1-1-1"
    variant: str = "msstnet"
    tag: str = ""

    def select(self, df: pd.DataFrame) -> pd.DataFrame:
        return df[(df["frames"] == self.frames) & (df["depths"] == self.depths) & (df["variant"] == self.variant)
                  & (df["tag"].isin(["", "seed-spread"]) if self.tag == "" else df["tag"] == self.tag)]

    def label(self) -> str:
        if self.variant != "msstnet":
            return f"T{self.frames} {self.variant}" + (f" {self.tag}" if self.tag else "")
        return f"T{self.frames} d{self.depths.replace('-', '')}" + (f" {self.tag}" if self.tag else "")


@dataclass(frozen=True)
class Comparison:
    """``better`` is claimed to beat ``worse`` (or, with ``kind="non-inferior"``, not to lose to it
    by more than :data:`MARGIN`)."""

    claim: str
    better: Config
    worse: Config
    kind: str = "superior"

    @property
    def text(self) -> str:
        return f"{self.better.label()} - {self.worse.label()}"


def paper_claims() -> list[Comparison]:
    """The claims of DESIGN.md §9 (a)-(g) as comparisons on the study's grid."""
    t4 = lambda d, **kw: Config(4, d, **kw)  # noqa: E731
    out = []
    for i, name in enumerate(("T-Former1", "T-Former2", "T-Former3")):  # (a) each stage helps on its own
        alone = ["0", "0", "0"]
        alone[i] = "1"
        out.append(Comparison(f"{name} helps (added to no T-Former)", t4("-".join(alone)), t4("0-0-0")))
    for other in ("1-1-0", "1-0-1", "0-1-1"):  # (b) all three together is best
        out.append(Comparison("all three T-Formers together is best", t4("1-1-1"), t4(other)))
    for t in (4, 8, 12, 16):  # (c) two blocks per T-Former is best, at every T
        for other in ("1-1-1", "3-3-3"):
            out.append(Comparison(f"depth 2 is best (T={t})", Config(t, "2-2-2"), Config(t, other)))
    for lo, hi in ((4, 8), (8, 12), (12, 16), (4, 16)):  # (d) more frames help (depth 2)
        out.append(Comparison("more frames help (depth 2)", Config(hi, "2-2-2"), Config(lo, "2-2-2")))
    for v in ("resnet18-mean", "resnet18-lstm", "resnet18-gru", "resnet18-tcn"):  # (e) Table 3's ordering
        out.append(Comparison("the T-Former beats the same backbone's temporal models", t4("1-1-1"),
                              t4("0-0-0", variant=v)))
    for tag, _ in LSTM_LEARNING_RATES:  # (e) again, against the LSTM at higher learning rates (same budget)
        out.append(Comparison("the T-Former beats the same backbone's temporal models", t4("1-1-1"),
                              t4("0-0-0", variant="resnet18-lstm", tag=tag)))
    out.append(Comparison("temporal-only attention matches joint attention", t4("1-1-1"),  # (f)
                          t4("1-1-1", tag="joint-attention"), kind="non-inferior"))
    out.append(Comparison("the temporal position embedding matters", t4("1-1-1"),  # (g)
                          t4("1-1-1", tag="no-pos-embed")))
    return out


def compared_rows() -> set[tuple[int, tuple[int, int, int], str, str]]:
    """``(frames, depths, variant, tag)`` of every configuration a claim compares: the study's rows
    that need several seeds (``python -m msstlib.study --seeds 1 2``)."""
    out = set()
    for c in paper_claims():
        for cfg in (c.better, c.worse):
            out.add((cfg.frames, tuple(int(d) for d in cfg.depths.split("-")), cfg.variant, cfg.tag))
    return out


def paired(df: pd.DataFrame, c: Comparison, metric: str = "war") -> pd.DataFrame:
    """The fold x seed units both configurations ran, with their paired difference (points). Runs
    pair only within one build (``build``: the same data and the same pre-trained backbone), so a
    runs folder that holds two builds gives one unit per build, never a pair across them."""
    keys = ["preset", "epochs", "fold", "seed"] + (["build"] if "build" in df else [])
    a = c.better.select(df)[keys + [metric, "gflops"]]
    b = c.worse.select(df)[keys + [metric, "gflops"]]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    return m.assign(diff=m[f"{metric}_a"] - m[f"{metric}_b"])


def interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, mde) of paired differences: Student's t interval and the 80 %-power MDE."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan
    mean = float(d.mean())
    if n < 2:
        return mean, np.nan, np.nan, np.nan
    se = float(d.std(ddof=1)) / np.sqrt(n)
    q = stats.t.ppf(0.5 + level / 2, n - 1)
    mde = (q + stats.t.ppf(0.8, n - 1)) * se
    return mean, mean - q * se, mean + q * se, float(mde)


def unit_interval(p: pd.DataFrame, level: float = 0.95) -> tuple[float, float, float, float, str]:
    """(mean, low, high, mde, interval_over) of the paired units ``p`` (columns fold, seed, diff),
    clustered by fold: seeds are averaged within each fold, the interval is over the fold means.
    With one fold, the interval is over its seeds (and says so)."""
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


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """The claims of every regime in :func:`claims_table` rows side by side: one row per claim
    comparison, one column per regime (:func:`cell`), in the order the claims table has them. A
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
    over the fold x seed units both ran, their ratio, and the paired difference with its interval.
    The issue's target for the DFEW-like regime is a ratio of about 0.85-0.90 (the paper's DFEW:
    0.95, in the ``paper (DFEW)`` row, the paper's numbers)."""
    msst = Config(4, "1-1-1")
    rows = []
    for regime, df in regimes.items():
        best = None
        for cand in (Config(4, "0-0-0", variant="resnet18-mean"), Config(4, "0-0-0")):
            p = paired(df, Comparison("", msst, cand), metric)
            if len(p) and (best is None or p[f"{metric}_b"].mean() > best[1][f"{metric}_b"].mean()):
                best = (cand, p)
        if best is None:
            continue
        cand, p = best
        mean, low, high, _, _ = unit_interval(p)
        rows.append({"regime": regime, "frame_level_model": cand.label(),
                     "frame_level": p[f"{metric}_b"].mean(), "msstnet": p[f"{metric}_a"].mean(),
                     "ratio": p[f"{metric}_b"].mean() / p[f"{metric}_a"].mean(),
                     "diff_mean": mean, "ci_low": low, "ci_high": high, "units": len(p)})
    rows.append({"regime": "paper (DFEW)", "frame_level_model": "no T-Former (paper's number)",
                 "frame_level": 65.91, "msstnet": 69.71, "ratio": PAPER_DFEW_RATIO,
                 "diff_mean": 69.71 - 65.91, "ci_low": np.nan, "ci_high": np.nan, "units": 1})
    return pd.DataFrame(rows)


def plot_claims(table: pd.DataFrame, ax=None):
    """Paired differences with their 95 % intervals, one line per comparison, coloured by verdict."""
    import matplotlib.pyplot as plt

    colours = {"supported": "tab:green", "contradicted": "tab:red", "unresolved": "tab:gray"}
    t = table.reset_index(drop=True)
    ax = ax or plt.subplots(figsize=(8, 0.32 * len(t) + 1.2))[1]
    y = np.arange(len(t))[::-1]
    for yi, (_, r) in zip(y, t.iterrows()):
        c = colours[r["verdict"]]
        if not np.isnan(r["ci_low"]):
            ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=c, lw=2)
        ax.plot(r["diff_mean"], yi, "o", color=c)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{r['comparison']}  ({r['regime']}, {r['folds']} folds x {r['seeds']} seeds)" for _, r in t.iterrows()], fontsize=8)
    metric = t["metric"].iloc[0].upper() if len(t) else "WAR"
    ax.set(xlabel=f"paired difference in {metric} (points), 95 % interval over folds (seeds averaged within)",
           title="The paper's claims on SynDFER: green supported, red contradicted, grey unresolved")
    return ax
