"""Claims as paired fold x seed differences: the interval by hand, verdicts, pairing, the claim list."""

import numpy as np
import pandas as pd
import pytest

from msstlib import claims, grid, paper_check


def cfg(frames: int, depths: str, variant: str = "msstnet", tag: str = "") -> grid.Config:
    """A grid.Config from the depths as the runs table writes them ("1-1-1")."""
    return grid.Config(frames, tuple(int(d) for d in depths.split("-")), variant, tag)


def _runs(spec: dict, folds=(1, 2, 3, 4, 5), seeds=(0,)) -> pd.DataFrame:
    """``spec``: {(frames, depths, variant, tag): war per (fold, seed) as a function}."""
    rows = []
    for (frames, depths, variant, tag), war in spec.items():
        for f in folds:
            for s in seeds:
                rows.append({"preset": "cpu", "epochs": 5, "fold": f, "seed": s, "frames": frames, "depths": depths,
                             "variant": variant, "tag": tag, "war": war(f, s), "uar": war(f, s) - 10,
                             "gflops": 0.5 if variant == "msstnet" else 0.6})
    return pd.DataFrame(rows)


def test_interval_is_students_t_over_units_computed_by_hand():
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mean, low, high, mde = claims.interval(d)
    se = np.std(d, ddof=1) / np.sqrt(5)
    assert mean == 3.0
    assert low == pytest.approx(3.0 - 2.7764451 * se, abs=1e-6) and high == pytest.approx(3.0 + 2.7764451 * se, abs=1e-6)
    assert mde == pytest.approx((2.7764451 + 0.9409646) * se, abs=1e-6)
    assert np.isnan(claims.interval(np.array([2.0]))[1])  # one unit: no interval


@pytest.mark.parametrize("low,high,kind,expected", [
    (0.1, 2.0, "superior", "supported"), (-2.0, -0.1, "superior", "contradicted"), (-1.0, 1.0, "superior", "unresolved"),
    (-0.5, 0.5, "non-inferior", "supported"), (-3.0, -1.5, "non-inferior", "contradicted"),
    (-1.5, 0.5, "non-inferior", "unresolved"), (np.nan, np.nan, "superior", "unresolved")])
def test_verdicts(low, high, kind, expected):
    assert claims.verdict(low, high, kind) == expected


def test_pairs_only_units_both_configurations_ran_and_differences_are_paired():
    a = (4, "1-1-1", "msstnet", "")
    b = (4, "0-0-0", "resnet18-lstm", "")
    # large fold effects shared by both: paired differences are exactly 2 points
    df = _runs({a: lambda f, s: 40 + 10 * f + 2, b: lambda f, s: 40 + 10 * f})
    df = df[~((df["frames"] == 4) & (df["variant"] == "resnet18-lstm") & (df["fold"] == 5))]  # b lacks fold 5
    c = grid.Comparison("x", cfg(*a), cfg(*b))
    p = claims.paired(df, c)
    assert sorted(p["fold"]) == [1, 2, 3, 4] and (p["diff"] == 2).all()
    t = claims.claims_table(df, "default", comparisons=[c])
    assert t.loc[0, "units"] == 4 and t.loc[0, "diff_mean"] == 2 and t.loc[0, "verdict"] == "supported"


def test_the_claims_table_has_every_claim_and_its_contract_columns():
    spec = {}
    for depths in ("0-0-0", "1-0-0", "0-1-0", "0-0-1", "1-1-0", "1-0-1", "0-1-1", "1-1-1"):
        spec[(4, depths, "msstnet", "")] = lambda f, s, k=depths.count("1"): 30 + 5 * k + f * 0.3 * (k % 2)
    for t in (4, 8, 12, 16):
        for depths in ("1-1-1", "2-2-2", "3-3-3"):
            spec.setdefault((t, depths, "msstnet", ""), lambda f, s, t=t, d=depths: 40 + t + (1 if d == "2-2-2" else 0)
                            + 0.2 * f)
    for v in ("resnet18-mean", "resnet18-lstm", "resnet18-gru", "resnet18-tcn"):
        spec[(4, "0-0-0", v, "")] = lambda f, s: 25 + 0.1 * f
    for tag in ("lr-3e-3", "lr-1e-2"):
        spec[(4, "0-0-0", "resnet18-lstm", tag)] = lambda f, s: 35 + 0.2 * f
    spec[(4, "1-1-1", "msstnet", "joint-attention")] = lambda f, s: 45 + 0.3 * f * 0.3
    spec[(4, "1-1-1", "msstnet", "no-pos-embed")] = lambda f, s: 45 - 1 + np.sin(f)
    t = claims.claims_table(_runs(spec), "default")
    assert list(t.columns[:7]) == ["claim", "regime", "comparison", "diff_mean", "ci_low", "ci_high", "verdict"]
    for claim in ("T-Former1 helps", "all three T-Formers together is best", "depth 2 is best (T=16)",
                  "more frames help", "the T-Former beats the same backbone's temporal models",
                  "temporal-only attention matches joint attention", "the temporal position embedding matters"):
        assert t["claim"].str.startswith(claim).any(), claim
    assert set(t["verdict"]) <= set(claims.VERDICTS) and (t["units"] == 5).all()
    assert (t.loc[t["claim"].str.startswith("more frames"), "verdict"] == "supported").all()


def test_seeds_of_one_fold_are_not_independent_units_the_interval_is_over_fold_means():
    a = (4, "1-1-1", "msstnet", "")
    b = (4, "0-0-0", "resnet18-gru", "")
    # the difference depends mostly on the fold (shared by its three seeds), a little on the seed
    fold_effect = {1: -2.0, 2: 5.0, 3: 2.0, 4: 7.0, 5: 0.0}
    df = _runs({a: lambda f, s: 50 + fold_effect[f] + 0.1 * s, b: lambda f, s: 50}, seeds=(0, 1, 2))
    c = grid.Comparison("x", cfg(*a), cfg(*b))
    t = claims.claims_table(df, "default", comparisons=[c]).iloc[0]
    fold_means = np.array([fold_effect[f] + 0.1 for f in (1, 2, 3, 4, 5)])
    mean, low, high, mde = claims.interval(fold_means)
    assert t["units"] == 15 and t["folds"] == 5 and t["seeds"] == 3
    assert t["diff_mean"] == pytest.approx(mean)
    assert t["ci_low"] == pytest.approx(low) and t["ci_high"] == pytest.approx(high) and t["mde"] == pytest.approx(mde)
    # 15 units taken as independent would give an interval about sqrt(3) too narrow, and a wrong verdict
    naive = claims.interval(claims.paired(df, c)["diff"].to_numpy())
    assert naive[1] > 0 > low and t["verdict"] == "unresolved"
    assert t["interval_over"].startswith("folds")
    # one fold with several seeds: the interval is over those seeds, and says it speaks for one fold
    one = claims.claims_table(df[df["fold"] == 4], "default", comparisons=[c]).iloc[0]
    assert one["interval_over"] == "seeds (one fold)"
    assert one["ci_low"] == pytest.approx(claims.interval(np.array([7.0, 7.1, 7.2]))[1])
    none = claims.claims_table(df[df["variant"] == "msstnet"], "default", comparisons=[c]).iloc[0]
    assert none["units"] == 0 and none["interval_over"] == "no units" and none["verdict"] == "unresolved"


def test_refuses_to_mix_presets_or_epochs():
    df = _runs({(4, "1-1-1", "msstnet", ""): lambda f, s: 50})
    df = pd.concat([df, df.assign(epochs=40)])
    with pytest.raises(ValueError, match="families"):
        claims.claims_table(df, "default")


def test_regime_summary_pairs_the_best_frame_level_model_with_msstnet():
    spec = {(4, "1-1-1", "msstnet", ""): lambda f, s: 60 + f,
            (4, "0-0-0", "msstnet", ""): lambda f, s: 40 + f,
            (4, "0-0-0", "resnet18-mean", ""): lambda f, s: 50 + f + (f % 2)}
    t = claims.regime_summary({"dfew-like": _runs(spec)})
    row = t[t["regime"] == "dfew-like"].iloc[0]
    assert row["frame_level_model"] == "T4 resnet18-mean" and row["units"] == 5
    assert row["frame_level"] == pytest.approx(53 + 3 / 5) and row["msstnet"] == pytest.approx(63)
    assert row["ratio"] == pytest.approx(53.6 / 63)
    diffs = np.array([10 - (f % 2) for f in (1, 2, 3, 4, 5)], float)
    assert row["diff_mean"] == pytest.approx(diffs.mean())
    assert row["ci_low"] == pytest.approx(claims.interval(diffs)[1])
    # the ratio's own interval: the t interval of each unit's ratio, over the same units (the issue's
    # target, 0.945 +- 0.01, is a statement about the ratio, not the difference)
    ratios = np.array([(50 + f + f % 2) / (60 + f) for f in (1, 2, 3, 4, 5)])
    _, low, high, _ = claims.interval(ratios)
    assert (row["ratio_ci_low"], row["ratio_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    paper = t[t["regime"] == "paper (DFEW)"].iloc[0]
    assert paper["ratio"] == pytest.approx(65.91 / 69.71)


def test_side_by_side_puts_each_comparison_on_one_row_with_a_cell_per_regime():
    a = (4, "1-1-1", "msstnet", "")
    b = (4, "0-0-0", "resnet18-gru", "")
    c = grid.Comparison("beats the GRU", cfg(*a), cfg(*b))
    d = grid.Comparison("beats the GRU again", cfg(*b), cfg(*a))
    tiny = -0.04  # rounds to zero: printed "+0.0", not "-0.0"
    default = _runs({a: lambda f, s: 50 + tiny + 0.04 * (f - 3), b: lambda f, s: 50}, seeds=(0, 1, 2))
    dfewlike = _runs({a: lambda f, s: 60 + f, b: lambda f, s: 50})
    dfewlike = dfewlike[~((dfewlike["variant"] == "resnet18-gru") & (dfewlike["fold"] == 5))]
    t = pd.concat([claims.claims_table(default, "default", comparisons=[c, d]),
                   claims.claims_table(dfewlike, "dfew-like", comparisons=[c])], ignore_index=True)
    s = claims.side_by_side(t)
    assert list(s.columns) == ["claim", "comparison", "default", "dfew-like"]
    assert list(s["claim"]) == ["beats the GRU", "beats the GRU again"]
    first = s.iloc[0]
    assert first["default"].startswith("+0.0 [") and first["default"].endswith("unresolved (5×3)")
    assert "-0.0" not in first["default"]
    assert first["dfew-like"].startswith("+12.5 [") and first["dfew-like"].endswith("supported (4×1)")
    assert s.iloc[1]["dfew-like"] == "not run"  # no row of that regime for this comparison


def test_a_cell_names_an_uneven_design_and_a_missing_interval():
    row = {"units": 7, "folds": 5, "seeds": 2, "diff_mean": 1.26, "ci_low": 0.5, "ci_high": 2.0, "verdict": "supported"}
    assert claims.cell(row) == "+1.3 [+0.5, +2.0] supported (7 units over 5 folds)"
    one = {**row, "units": 1, "folds": 1, "seeds": 1, "ci_low": np.nan, "ci_high": np.nan, "verdict": "unresolved"}
    assert claims.cell(one) == "+1.3 (no interval) unresolved (1×1)"
    assert claims.cell({**row, "units": 0}) == "not run"


def test_runs_of_two_builds_are_never_paired_across_them():
    """A runs folder that holds runs made with two pre-trained backbones (a study continued on a
    machine whose pre-training gave other weights) paired every run of one build with every run of
    the other: 4 'pairs' per fold, two of them across backbones."""
    a = (4, "1-1-1", "msstnet", "")
    b = (4, "0-0-0", "resnet18-gru", "")
    old = _runs({a: lambda f, s: 60 + f, b: lambda f, s: 58 + f}).assign(build="data/old-backbone")
    new = _runs({a: lambda f, s: 40 + f, b: lambda f, s: 38 + f}).assign(build="data/new-backbone")
    c = grid.Comparison("x", cfg(*a), cfg(*b))
    p = claims.paired(pd.concat([old, new], ignore_index=True), c)
    assert len(p) == 10 and (p["diff"] == 2).all()  # 5 folds x 2 builds, each a true pair
    row = claims.claims_table(pd.concat([old, new], ignore_index=True), "default", comparisons=[c]).iloc[0]
    assert row["builds"] == 2 and claims.cell(row).endswith("supported (10 units over 5 folds, 2 builds)")


# ----------------------------------------------------------------- claims over independent builds

def _build_runs(spec: dict, builds=8, majority=22.8) -> pd.DataFrame:
    """``spec``: {(frames, depths, variant, tag): war per build index k (a function)}; one fold, seed 0."""
    rows = []
    for (frames, depths, variant, tag), war in spec.items():
        for k in range(1, builds + 1):
            rows.append({"preset": "cpu", "epochs": 15 if tag == "budget" else 5, "fold": 1, "seed": 0,
                         "frames": frames, "depths": depths, "variant": variant, "tag": tag, "war": war(k),
                         "uar": war(k) - 10, "gflops": 0.5, "build": f"data{k}/bb{k}", "build_name": f"b{k:02d}",
                         "majority": majority})
    return pd.DataFrame(rows)


def test_build_claims_recompute_from_their_units_with_signflip_and_holm():
    a, b, c = (4, "1-1-1", "msstnet", ""), (4, "0-0-0", "resnet18-gru", ""), (4, "1-1-1", "me-gru", "")
    df = _build_runs({a: lambda k: 60 + k, b: lambda k: 55 + k + (0.3 if k == 3 else 0),  # +5 on every build
                      c: lambda k: 60 + k + (1 if k % 2 else -1.2)})  # no difference
    comps = [grid.Comparison("x", cfg(*a), cfg(*b)), grid.Comparison("y", cfg(*a), cfg(*c))]
    units = claims.build_units(df, "default", comps)
    assert list(units.columns[:5]) == ["claim", "comparison", "regime", "unit", "diff"]
    assert len(units) == 16 and sorted(units["unit"].unique()) == [f"b{k:02d}" for k in range(1, 9)]
    t = claims.claims_from_units(units)
    first, second = t.iloc[0], t.iloc[1]
    assert first["units"] == 8 and first["p_signflip"] == pytest.approx(2 / 256)
    assert first["verdict"] == "supported" and first["p_holm"] == pytest.approx(2 * 2 / 256)
    assert first["verdict_holm"] == "supported"
    assert second["verdict"] == "unresolved" and second["p_signflip"] > 0.05
    # the same table from the CSV's columns alone
    again = claims.claims_from_units(pd.read_csv(__import__("io").StringIO(units.to_csv(index=False))))
    pd.testing.assert_frame_equal(t, again)


def test_holm_can_take_a_raw_supported_verdict_away():
    comps, spec = [], {(4, "1-1-1", "msstnet", ""): lambda k: 60.0}
    # one small, consistent effect (7 of 8 builds positive) among 28 comparisons of the regime
    for i in range(28):
        side = (4, "0-0-0", "msstnet", f"t{i}")
        spec[side] = (lambda k: 60 - (1 if k > 1 else -0.1)) if i == 0 else (lambda k, i=i: 60 + np.sin(k + i))
        comps.append(grid.Comparison(f"c{i}", cfg(4, "1-1-1"), cfg(*side)))
    t = claims.claims_from_units(claims.build_units(_build_runs(spec), "default", comps))
    r = t.iloc[0]
    assert r["verdict"] == "supported" and r["p_signflip"] < 0.05
    assert r["p_holm"] >= 0.05 and r["verdict_holm"] == "unresolved"
    assert not ((t["verdict_holm"] == "supported") & (t["p_holm"] >= 0.05)).any()


def test_a_baseline_at_the_majority_class_level_did_not_train_and_leaves_the_family():
    a, lstm = (4, "1-1-1", "msstnet", ""), (4, "0-0-0", "resnet18-lstm", "budget")
    df = _build_runs({a: lambda k: 60 + k, lstm: lambda k: 22.8 + (0.5 if k == 2 else 0)})
    t = claims.claims_from_units(claims.build_units(df, "default", [grid.Comparison("x", cfg(*a), cfg(*lstm))]))
    assert t.loc[0, "verdict"] == "did not train" and t.loc[0, "verdict_holm"] == "did not train"
    assert np.isnan(t.loc[0, "p_holm"]) and t.loc[0, "did_not_train"] == "worse"


@pytest.mark.parametrize("shift,expected", [(0.0, "supported"), (-0.6, "supported"), (-1.0, claims.NOT_SHOWN),
                                            (-3.0, "contradicted"), (-0.4, "unresolved")])
def test_non_inferiority_verdicts_over_builds(shift, expected):
    a, j = (4, "1-1-1", "msstnet", ""), (4, "1-1-1", "msstnet", "joint-attention")
    noise = [0.1, -0.15, 0.2, -0.05, 0.12, -0.2, 0.05, -0.07]
    wide = 1.0 if expected == "unresolved" else 0.0  # spread the units so neither bound is cleared
    df = _build_runs({a: lambda k: 60.0, j: lambda k: 60.0 - shift - noise[k - 1] * (1 + 10 * wide)})
    c = grid.Comparison("f", cfg(*a), cfg(*j), kind="non-inferior")
    t = claims.claims_from_units(claims.build_units(df, "default", [c]))
    assert t.loc[0, "verdict"] == expected


def test_build_claims_name_the_matched_baselines_and_the_lstm_budget():
    texts = [c.text for c in grid.build_claims()]
    for v in ("me-lstm budget", "me-gru", "me-tcn", "me-mean", "resnet18-lstm budget", "resnet18-gru"):
        assert f"T4 d111 - T4 {v}" in texts, v
    assert not any("lr-1e-2" in t for t in texts)  # the upward sweep is gone


def test_a_build_remade_elsewhere_is_one_unit_not_two():
    a, b = (4, "1-1-1", "msstnet", ""), (4, "0-0-0", "resnet18-gru", "")
    df = _build_runs({a: lambda k: 60 + k, b: lambda k: 55 + k}, builds=3)
    copy = df[df["build_name"] == "b02"].assign(build="data2/other-cpu", war=lambda d: d["war"] + 9)
    units = claims.build_units(pd.concat([df, copy.iloc[:1]]), "default", [grid.Comparison("x", cfg(*a), cfg(*b))])
    assert units["unit"].tolist() == ["b01", "b02", "b03"] and (units["diff"] == 5).all()


def test_frame_step_gains_read_the_depth_2_steps_of_each_regime_beside_the_papers():
    # T = 4 / 8 / 12 / 16 at depth 2 on 8 builds: steps of +3, +2 and +1 points, with build noise
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.1]
    spec = {(t, "2-2-2", "msstnet", ""): (lambda k, base=base: base + noise[k - 1] * (base - 59))
            for t, base in ((4, 60.0), (8, 63.0), (12, 65.0), (16, 66.0))}
    comps = [c for c in grid.build_claims() if c.text in ("T8 d222 - T4 d222", "T12 d222 - T8 d222",
                                                          "T16 d222 - T12 d222", "T16 d222 - T4 d222")]
    assert len(comps) == 4
    t = claims.claims_from_units(pd.concat([claims.build_units(_build_runs(spec), r, comps)
                                            for r in ("default", "dfew-calibrated")], ignore_index=True))
    g = paper_check.frame_step_gains(t)
    ours = g[g["regime"] == "dfew-calibrated"].set_index("step")
    assert list(ours.index) == ["4 -> 8", "8 -> 12", "12 -> 16"]  # steps, not the 4 -> 16 span
    assert ours["gain"].tolist() == pytest.approx([3 + np.mean(noise) * 3, 2 + np.mean(noise) * 2, 1 + np.mean(noise)])
    assert (ours["units"] == 8).all() and (ours["ci_low"] < ours["gain"]).all()
    dfew = g[g["regime"] == "paper (DFEW)"].set_index("step")["gain"]
    assert dfew.tolist() == pytest.approx([0.45, 0.69, 0.57])  # 69.71 -> 70.16 -> 70.85 -> 71.42
    ferv = g[g["regime"] == "paper (FERV39k)"].set_index("step")["gain"]
    assert ferv.tolist() == pytest.approx([0.36, 0.18, 0.59])  # 49.89 -> 50.25 -> 50.43 -> 51.02
    assert g[g["regime"].str.startswith("paper")]["ci_low"].isna().all()


def test_verdict_changes_set_each_build_claim_against_the_five_fold_claim_it_replaces_and_the_paper():
    d222, d111 = (4, "2-2-2", "msstnet", ""), (4, "1-1-1", "msstnet", "")
    lstm_budget, lstm = (4, "0-0-0", "resnet18-lstm", "budget"), (4, "0-0-0", "resnet18-lstm", "")
    comps = [grid.Comparison("depth", cfg(*d222), cfg(*d111)), grid.Comparison("lstm", cfg(*d111), cfg(*lstm_budget)),
             grid.Comparison("me", cfg(*d111), cfg(4, "1-1-1", "me-gru"))]
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.1]
    runs = _build_runs({d222: lambda k: 60 + noise[k - 1], d111: lambda k: 60 - noise[k - 1],  # no difference
                        lstm_budget: lambda k: 65 + noise[k - 1],  # the budgeted LSTM wins
                        (4, "1-1-1", "me-gru", ""): lambda k: 59 + noise[k - 1] * 3})
    builds = claims.claims_from_units(pd.concat([claims.build_units(runs, r, comps) for r in ("default", "dfew-calibrated")],
                                                ignore_index=True))
    # the five-fold claims (folds as units): depth 2 "supported" in the default regime, MSSTNet beat the
    # collapsed LSTM at the shared budget; the DFEW-like regime's five-fold claims stand for the calibrated one
    ff = _runs({d222: lambda f, s: 62 + f % 2 * 0.5, d111: lambda f, s: 60, lstm: lambda f, s: 23 + f % 2})
    five = pd.concat([claims.claims_table(ff, r, comparisons=[grid.Comparison("depth", cfg(*d222), cfg(*d111)),
                                                               grid.Comparison("lstm", cfg(*d111), cfg(*lstm))])
                      for r in ("default", "dfew-like")], ignore_index=True)
    cam = builds.iloc[[0]].assign(comparison="MSSTNet 111 / T-Former3 out - MSSTNet 111 / CNN layer3 at 4x4",
                                  metric="gradcam_energy")
    t = paper_check.verdict_changes(pd.concat([builds, cam], ignore_index=True), five,
                               comparisons=comps).set_index(["regime", "comparison"])
    row = t.loc[("default", "T4 d222 - T4 d111")]
    assert row["change"] == "supported -> unresolved" and row["five_fold"].startswith("+2.3 [+2.0, +2.6] supported")
    assert row["paper_dfew"] == pytest.approx(0.74) and row["paper_ferv39k"] == pytest.approx(-0.05)
    lstm_row = t.loc[("default", "T4 d111 - T4 resnet18-lstm budget")]
    assert lstm_row["five_fold_comparison"] == "T4 d111 - T4 resnet18-lstm"  # the shared budget's row
    assert lstm_row["change"] == "supported -> contradicted" and np.isnan(lstm_row["paper_dfew"])
    assert t.loc[("dfew-calibrated", "T4 d222 - T4 d111"), "five_fold_regime"] == "dfew-like"
    assert t.loc[("default", "T4 d111 - T4 me-gru"), "change"] == "new"
    assert t.loc[("default", "T4 d111 - T4 me-gru"), "five_fold"] == ""
    assert t.loc[("default", cam["comparison"].iloc[0]), "change"].startswith("new: its five-fold verdict was over clips")


def test_the_papers_difference_is_read_for_table_1_pairs_only():
    def diff(a, b):
        return paper_check.paper_difference(grid.Comparison("x", cfg(*a), cfg(*b)))
    assert diff((4, "1-1-1"), (4, "0-0-0")) == pytest.approx({"paper_dfew": 3.06, "paper_ferv39k": 3.05})
    assert diff((16, "2-2-2"), (16, "3-3-3")) == pytest.approx({"paper_dfew": 0.43, "paper_ferv39k": 0.6})
    assert diff((4, "1-1-1"), (4, "1-1-0")) == {}  # the paper's two-T-Former rows do not say which two
    assert diff((4, "1-1-1"), (4, "0-0-0", "resnet18-gru")) == {}


def test_a_regime_with_fewer_builds_than_planned_has_changes_pending_not_verdicts_flipped():
    a, b = (4, "1-1-1", "msstnet", ""), (4, "0-0-0", "msstnet", "")
    comps = [grid.Comparison("x", cfg(*a), cfg(*b))]
    one = claims.claims_from_units(claims.build_units(_build_runs({a: lambda k: 70.0, b: lambda k: 60.0}, builds=1),
                                                      "dfew-calibrated", comps))
    five = claims.claims_table(_runs({a: lambda f, s: 70 + f % 2, b: lambda f, s: 60}), "dfew-like", comparisons=comps)
    t = paper_check.verdict_changes(one, five, comparisons=comps)
    assert one.loc[0, "verdict"] == "unresolved" and five.loc[0, "verdict"] == "supported"
    assert t.loc[0, "change"] == "pending: 1 of 8 builds"  # not "supported -> unresolved"
    assert paper_check.verdict_changes(one, five, comparisons=comps, planned=1).loc[0, "change"] == "supported -> unresolved"


def test_tally_counts_each_claims_verdicts_per_regime_with_holm_and_builds():
    """The README's tally per claim of the paper: every verdict counted (the non-inferiority and
    did-not-train labels included), Holm's count beside it, the builds (a range where they differ),
    and `not run` where a regime has no comparison of the claim."""
    rows = [("x helps", "default", "supported", "supported", 8), ("x helps", "default", "unresolved", "unresolved", 8),
            ("x helps", "default", "contradicted", "unresolved", 8), ("x helps", "dfew", "supported", "unresolved", 6),
            ("x helps", "dfew", claims.NOT_SHOWN, "unresolved", 7), ("y matters", "default", "did not train",
                                                                     "did not train", 8)]
    table = pd.DataFrame(rows, columns=["claim", "regime", "verdict", "verdict_holm", "units"])
    t = claims.tally(table)
    assert t.columns.tolist() == ["the paper's claim", "default", "dfew"]
    assert t.values.tolist() == [
        ["x helps", "1 of 3 supported, 1 contradicted, 1 unresolved; Holm: 1 supported; 8 builds",
         f"1 of 2 supported, 1 {claims.NOT_SHOWN}; Holm: 0 supported; 6-7 builds"],
        ["y matters", "0 of 1 supported, 1 did not train; Holm: 0 supported; 8 builds", "not run"]]
