"""Our claims against the paper's numbers and against the claims they replaced.

* :func:`frame_step_gains`: what each step in frames adds at depth 2, per regime over builds, beside
  the paper's DFEW and FERV39k gains (``tables/frame_steps.csv``);
* :func:`paper_difference`: the paper's own Table 1 difference for a comparison, where it has both rows;
* :func:`verdict_changes`: each claim over builds against the withdrawn five-fold claim it replaces
  and the paper's difference (``tables/verdict_changes.csv``).

The paper's numbers are read from ``results/paper/table1.csv`` and always labelled as the paper's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .builds import CLAIM_BUILDS
from .claims import build_cell, cell
from .grid import BUDGET_TAG, Comparison, Config, build_claims
from .results import PAPER

PAPER_TABLE1 = PAPER / "table1.csv"


@lru_cache(maxsize=4)
def _paper_table1(path: str) -> pd.DataFrame:
    """The paper's Table 1, read once per render (every comparison asks it)."""
    return pd.read_csv(path)


FRAME_STEPS = ((4, 8), (8, 12), (12, 16))  # Table 1's steps in frames, at depth 2 (the paper's best depth)


def frame_step_gains(claims_table: pd.DataFrame, paper_table1: Path | str = PAPER_TABLE1) -> pd.DataFrame:
    """What each step in frames (T = 4 -> 8 -> 12 -> 16, all three T-Formers at depth 2) adds, per
    regime, beside the paper's DFEW and FERV39k gains (its Table 1, the paper's numbers): the issue
    asks how close a DFEW-calibrated regime comes to them. One row per regime and step, read from
    the build claims (:func:`claims_from_units`: the mean paired difference and its t interval over
    builds); the paper's rows have no interval (one number each)."""
    rows = []
    by_comparison = claims_table.set_index(["regime", "comparison"]) if len(claims_table) else None
    regimes = list(dict.fromkeys(claims_table["regime"])) if len(claims_table) else []
    for regime in regimes:
        for a, b in FRAME_STEPS:
            key = (regime, f"T{b} d222 - T{a} d222")
            if key not in by_comparison.index:
                continue
            r = by_comparison.loc[key]
            rows.append({"regime": regime, "step": f"{a} -> {b}", "gain": r["diff_mean"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "units": r["units"], "source": "SynDFER builds (WAR points)"})
    paper = _paper_table1(str(paper_table1))
    paper = paper[(paper["tformer1"] == 2) & (paper["tformer2"] == 2) & (paper["tformer3"] == 2)].set_index("frames")
    for column, name in (("war_dfew", "paper (DFEW)"), ("war_ferv39k", "paper (FERV39k)")):
        for a, b in FRAME_STEPS:
            rows.append({"regime": name, "step": f"{a} -> {b}", "gain": round(paper.loc[b, column] - paper.loc[a, column], 2),
                         "ci_low": np.nan, "ci_high": np.nan, "units": 1, "source": "the paper's Table 1 (WAR points)"})
    return pd.DataFrame(rows)


# The five-fold study a regime's build claims replace: the DFEW-calibrated regime replaces the
# DFEW-like regime's five-fold claims (that regime was withdrawn as not DFEW-like enough).
REPLACES = {"default": "default", "dfew-calibrated": "dfew-like"}


def paper_difference(comparison: Comparison, paper_table1: Path | str = PAPER_TABLE1) -> dict[str, float]:
    """The paper's own difference for a comparison of two Table 1 rows (MSSTNet with no T-Former
    or all three at one depth), on DFEW and FERV39k, in WAR points; empty where the paper has no such
    pair (one- and two-T-Former rows: which T-Formers they hold is lost in the paper's text)."""
    paper = _paper_table1(str(paper_table1))

    def war(c: Config) -> pd.Series | None:
        if c.variant != "msstnet" or c.tag or len(set(c.depths)) != 1:
            return None
        d = c.depths[0]
        rows = (paper[(paper["note"] == "no T-Former") & (paper["frames"] == c.frames)] if d == 0 else
                paper[(paper["frames"] == c.frames) & (paper["tformer1"] == d) & (paper["tformer2"] == d)
                      & (paper["tformer3"] == d)])
        return rows.iloc[0] if len(rows) == 1 else None

    a, b = war(comparison.better), war(comparison.worse)
    if a is None or b is None:
        return {}
    return {"paper_dfew": round(a["war_dfew"] - b["war_dfew"], 2),
            "paper_ferv39k": round(a["war_ferv39k"] - b["war_ferv39k"], 2)}


def verdict_changes(builds: pd.DataFrame, five_fold: pd.DataFrame,
                    comparisons: list[Comparison] | None = None, planned: int | None = None) -> pd.DataFrame:
    """Where the claims over builds (:func:`claims_from_units`) changed what the withdrawn five-fold
    claims (``claims_five_fold.csv``: one build, folds as units) said, per regime and comparison,
    beside the paper's own difference where its Table 1 has both rows. The DFEW-calibrated regime is
    set against the DFEW-like regime's five-fold claims, which it replaces (:data:`REPLACES`); an
    LSTM row at its validated budget against the five-fold row at the shared budget (named in
    ``five_fold_comparison``). ``change`` reads ``unchanged``, ``<five-fold> -> <builds>`` or
    ``new`` (no five-fold row; a Grad-CAM comparison says where its clip-level verdict was), and
    ``pending: k of K builds`` while a comparison rests on fewer than the ``planned`` builds
    (:data:`msstlib.builds.CLAIM_BUILDS`): one build has no interval, so its "unresolved" is no change."""
    planned = len(CLAIM_BUILDS) if planned is None else planned
    by_text = {c.text: c for c in (comparisons if comparisons is not None else build_claims())}
    ff = five_fold.set_index(["regime", "comparison"]) if len(five_fold) else None
    rows = []
    for _, r in builds.iterrows():
        old_regime = REPLACES.get(r["regime"], r["regime"])
        old_text = r["comparison"].replace(f" {BUDGET_TAG}", "")
        old = ff.loc[(old_regime, old_text)] if ff is not None and (old_regime, old_text) in ff.index else None
        now = r["verdict"]
        rows.append({"regime": r["regime"], "claim": r["claim"], "comparison": r["comparison"],
                     **{"paper_dfew": np.nan, "paper_ferv39k": np.nan},
                     **(paper_difference(by_text[r["comparison"]]) if r["comparison"] in by_text else {}),
                     "five_fold_regime": old_regime if old is not None else "",
                     "five_fold_comparison": old_text if old is not None else "",
                     "five_fold": cell(old) if old is not None else "",
                     "builds": build_cell(r, holm_verdict=False), "verdict_holm": r["verdict_holm"],
                     "change": (f"pending: {r['units']} of {planned} builds" if r["units"] < planned
                                else "new: its five-fold verdict was over clips of one pair of models (gradcam_scores.md)"
                                if old is None and r["metric"] == "gradcam_energy" else "new" if old is None
                                else "unchanged" if old["verdict"] == now else f"{old['verdict']} -> {now}")})
    return pd.DataFrame(rows)
