"""The statistics of a claim over independent units: t-interval, exact sign-flip p, Holm, MDE.

A claim's units are independent builds (:mod:`msstlib.builds`), each giving one paired difference
``d_k`` (WAR points). With K units:

* :func:`interval`: Student's t interval of the mean difference on K - 1 degrees of freedom, and
  the *observed-SD* minimum detectable effect (80 % power at the 5 % level, computed from the
  observed spread of the ``d_k``: itself an estimate on K - 1 df, not a design figure);
* :func:`signflip_p`: the exact two-sided sign-flip (randomisation) p: under "no difference" each
  ``d_k`` is as likely to have the other sign, so every one of the 2^K sign patterns is equally
  likely, and p is the share of patterns whose ``|sum|`` is at least the observed one. It needs no
  normality; its smallest value is 2 / 2^K (K = 8: 0.0078; K = 5 could never reach 0.05);
* :func:`holm`: Holm's step-down adjustment over a family of p values: it keeps the family-wise
  error rate at alpha, uniformly more powerful than Bonferroni.
"""

from __future__ import annotations

import itertools

import numpy as np

ALPHA = 0.05
MAX_EXACT_UNITS = 20  # 2^20 sign patterns; beyond that the test would need sampling (not needed here)


def interval(diffs, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, low, high, observed-SD MDE) of paired differences: Student's t interval on n - 1
    degrees of freedom and ``(t_(1-alpha/2) + t_0.8) * sd / sqrt(n)``. Fewer than two units: no
    interval (NaN)."""
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


def signflip_p(diffs, null: float = 0.0) -> float:
    """Exact two-sided sign-flip p of ``mean(diffs) == null`` over all 2^K sign patterns of
    ``diffs - null``. A unit exactly at ``null`` has no sign and counts both ways (it is kept: its
    patterns tie). No units: NaN."""
    d = np.asarray(diffs, dtype=float) - null
    k = len(d)
    if k == 0:
        return np.nan
    if k > MAX_EXACT_UNITS:
        raise ValueError(f"signflip_p: {k} units is more than the {MAX_EXACT_UNITS} an exact test enumerates")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=k)))  # (2^K, K)
    sums = np.abs(signs @ d)
    observed = abs(d.sum())
    return float(np.mean(sums >= observed - 1e-9 * max(1.0, np.abs(d).sum())))


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p values (step-down, monotone, capped at 1), in the input's order; NaN stays
    NaN and is not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
