"""Tables from result files: one cell per configuration, never mixing presets or epoch counts."""

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from msstlib import results as R  # noqa: E402
from msstlib.builds import REGIME_SUFFIX  # noqa: E402
from msstlib.labels import EMOTIONS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _write(runs, name, **kw):
    r = {"dataset": "synthetic", "split": None, "variant": "msstnet", "seed": 0, "tag": "", "gflops": 1.0,
         "params": 10, "wall_s": 1.0, "per_class": {e: 0.5 for e in EMOTIONS}, **kw}
    r["run_id"] = name
    (runs / name).mkdir(parents=True)
    (runs / name / "result.json").write_text(json.dumps(r))


def test_table_cells_never_mix_presets_or_epochs(tmp_path):
    runs = tmp_path / "runs"
    for fold in (1, 2):
        for d in (1, 2):
            depths = [d, d, d]
            _write(runs, f"cpu{fold}{d}", preset="cpu", epochs=5, fold=fold, frames=4, depths=depths,
                   war=0.50 + 0.01 * d, uar=0.4, config_id=f"c{d}")
            _write(runs, f"paper{fold}{d}", preset="paper", epochs=40, fold=fold, frames=4, depths=depths,
                   war=0.90, uar=0.8, config_id=f"p{d}")
    _write(runs, "cpu8", preset="cpu", epochs=8, fold=1, frames=4, depths=[1, 1, 1], war=0.1, uar=0.1,
           config_id="c1-8ep")
    df = R.load_results(runs)
    t1 = R.table1(df)
    row = t1[(t1["preset"] == "cpu") & (t1["epochs"] == 5) & (t1["depths"] == "1-1-1")]
    assert len(row) == 1 and row["ours_war"].item() == pytest.approx(51.0) and row["n_folds"].item() == 2
    assert len(t1[t1["depths"] == "1-1-1"]) == 3  # cpu/5, cpu/8 and paper/40 are three cells
    t3 = R.table3(df)
    assert sorted(t3["preset"]) == ["cpu", "paper"]
    assert R.families(df)[0] in {("cpu", 5), ("paper", 40)}
    ax = R.heatmap(df, family=("paper", 40))
    assert "paper preset, 40 epochs" in ax.get_title()


def test_results_without_identity_are_refused(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "old", preset="cpu", epochs=5, fold=1, frames=4, depths=[1, 1, 1], war=0.5, uar=0.4, config_id=None)
    with pytest.raises(ValueError, match="without a config_id"):
        R.load_results(runs)


def test_a_divergence_record_beside_a_result_is_ignored(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "r", preset="cpu", epochs=5, fold=1, frames=4, depths=[1, 1, 1], war=0.5, uar=0.4, config_id="c")
    (runs / "r" / "diverged.json").write_text(json.dumps({"message": "loss became nan; x", "log": [], "preset": "cpu",
                                                           "frames": 4, "depths": [1, 1, 1], "variant": "msstnet",
                                                           "fold": 1}))
    assert R.load_diverged(runs).empty


def test_seed_replicates_are_spread_not_tagged_rows(tmp_path):
    runs = tmp_path / "runs"
    for seed, tag in ((0, ""), (1, "seed-spread"), (2, "seed-spread")):
        _write(runs, f"s{seed}", preset="cpu", epochs=5, fold=1, frames=4, depths=[1, 1, 1], war=0.5 + seed / 100,
               uar=0.4, config_id="c", seed=seed, tag=tag)
    _write(runs, "nope", preset="cpu", epochs=5, fold=1, frames=4, depths=[1, 1, 1], war=0.3, uar=0.2,
           config_id="d", tag="no-pos-embed")
    df = R.load_results(runs)
    spread = R.seed_spread(df)
    assert len(spread) == 1 and spread["seeds"].item() == 3 and spread["war_mean"].item() == pytest.approx(51.0)
    assert set(R.tagged_rows(df)["tag"]) == {"(table row)", "no-pos-embed"}


def test_tables_notebook_without_runs_fails_saying_where_it_looked(tmp_path):
    """papermill on tables.ipynb with no runs used to print "0 runs", write empty tables and exit 0."""
    import papermill as pm

    empty = tmp_path / "runs"
    empty.mkdir()
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "tables.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters={"runs_dir": str(empty),
                            "tables_dir": str(tmp_path / "tables")}, progress_bar=False, cwd=str(tmp_path))
    assert "no result.json under" in str(err.value) and str(empty) in str(err.value)
    assert not (tmp_path / "tables").exists()


def test_load_study_finds_the_default_runs_from_any_working_directory(tmp_path, monkeypatch):
    from msstlib import results as R

    monkeypatch.chdir(tmp_path)  # "results/synthetic/runs" means nothing from here: found from the repository
    df = R.load_study("results/synthetic/runs")
    assert len(df) > 0 and set(df["dataset"]) == {"synthetic"}


def test_an_empty_table_says_so_instead_of_a_bare_caption(tmp_path):
    """Three quick-run tables held only their caption (issue 11)."""
    R.write_table(pd.DataFrame(columns=["config", "war"]), tmp_path, "seed_spread", "NOTE")
    text = (tmp_path / "seed_spread.md").read_text()
    assert text.startswith("NOTE") and "No rows" in text



def test_markdown_tables_keep_p_values_ratios_and_energy_shares_at_their_precision(tmp_path):
    """claims.md printed the exact sign-flip p 2/256 = 0.0078 as 0.01 and 0.047 as 0.05 (a supported
    verdict beside a p that read as not below alpha), a Grad-CAM energy difference of +0.037
    [+0.026, +0.049] as 0.04 [0.03, 0.05], and regimes.md the ratio its target 0.935-0.955 is about
    as 0.95: every float at two decimals."""
    t = pd.DataFrame({"comparison": ["a - b", "cam a - cam b"], "diff_mean": [3.0049, 0.0374],
                      "ci_low": [0.97, 0.0262], "p_signflip": [2 / 256, 0.0469], "p_holm": [0.27, 1.0],
                      "units": [8, 8], "metric": ["war", "gradcam_energy"]})
    R.write_table(t, tmp_path, "claims", "NOTE")
    lines = (tmp_path / "claims.md").read_text().splitlines()
    war, cam = (dict(zip([c.strip() for c in lines[2].strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
                for row in lines[4:6])
    assert war["p_signflip"] == "0.008" and cam["p_signflip"] == "0.047" and war["p_holm"] == "0.270"
    assert war["diff_mean"] == "3.00" and war["ci_low"] == "0.97" and war["units"] == "8"
    assert cam["diff_mean"] == "0.037" and cam["ci_low"] == "0.026"
    R.write_table(pd.DataFrame({"regime": ["dfew-calibrated"], "ratio": [89.42 / 94.33], "war": [89.42]}),
                  tmp_path, "regimes", "NOTE")
    row = (tmp_path / "regimes.md").read_text().splitlines()[-1]
    assert "0.948" in row and "89.42" in row
    # the notebook's page too (its other numbers at the precision asked for)
    html = R.page(t, precision=1).to_html()
    assert ">0.008<" in html and ">0.037<" in html and ">3.0<" in html and ">0.03<" not in html
    # the CSV keeps its own precision
    assert pd.read_csv(tmp_path / "claims.csv")["p_signflip"].iloc[0] == pytest.approx(2 / 256, abs=1e-4)

def test_a_missing_row_gives_a_panel_that_says_so(tmp_path):
    """The per-class panel was empty when its row was missing (issue 11)."""
    import matplotlib.pyplot as plt

    runs = tmp_path / "runs"
    _write(runs, "a", preset="cpu", epochs=5, fold=1, frames=4, depths=[1, 1, 1], war=0.5, uar=0.4, config_id="c")
    ax = R.per_class_bars(R.load_results(runs))
    assert any("no MSSTNet depths 2-2-2 run" in t.get_text() for t in ax.texts)
    plt.close(ax.figure)


def test_readable_drops_empty_columns_but_keeps_a_claims_interval():
    t = pd.DataFrame({"war": [55.3], "war_std": [float("nan")], "ci_low": [float("nan")]})
    assert list(R.readable(t).columns) == ["war", "ci_low"]


def test_tables_notebook_shows_whole_tables_with_readable_numbers_and_labels_smoke_runs(tmp_path):
    """Table 3 was cut at 26 columns, Table 1 printed six-decimal floats, and nothing said
    "smoke test" on the quick run's tables (issue 11)."""
    import nbformat

    from msstlib import notebooks as N

    N.execute(ROOT / "notebooks" / "tables.ipynb", tmp_path / "out.ipynb",
              {"runs_dir": "results/synthetic/runs", "tables_dir": str(tmp_path / "tables"), "smoke": "true"})
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    def text(cell):  # what a reader sees: the HTML of a shaped table (results.page), else the text
        return "\n".join("".join(o.get("data", {}).get("text/html", "") or o.get("data", {}).get("text/plain", ""))
                         + "".join(o.get("text", "")) for o in cell.outputs)

    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = "\n".join(text(c) for c in code)
    assert "SMOKE TEST" in shown and (tmp_path / "tables" / "table1.md").read_text().startswith("SMOKE TEST")
    table3 = text(next(c for c in code if "results.table3(df)" in c.source))
    # every column shown, the paper's beside ours (issue 28: tables shaped for the page)
    heads = re.findall(r'class="col_heading[^"]*" >([^<]+)</th>', table3)
    assert heads and "..." not in table3 and heads.index("paper_dfew_war") == heads.index("ours_war") + 1, heads
    assert not re.search(r"\d\.\d{6}", shown)  # no six-decimal floats
    assert not re.search(r">\s*nan\s*<", shown, re.I)  # no NaN cells: a dash where there is no value
    first = next(c for c in code if "from msstlib import claims" in c.source)  # the claims first, then Table 1
    assert code.index(first) < code.index(next(c for c in code if "results.table1(df)" in c.source))


def test_the_baselines_table_shows_each_learning_rate_of_a_baseline_as_its_own_row(tmp_path):
    runs = tmp_path / "runs"
    for fold in (1, 2):
        for tag, war in (("", 0.30), ("lr-3e-3", 0.60), ("lr-1e-2", 0.65)):
            _write(runs, f"lstm{tag}{fold}", preset="cpu", epochs=5, fold=fold, frames=4, depths=[0, 0, 0],
                   variant="resnet18-lstm", tag=tag, war=war + 0.01 * fold, uar=0.2, config_id=f"l{tag}")
        _write(runs, f"msst{fold}", preset="cpu", epochs=5, fold=fold, frames=4, depths=[1, 1, 1], war=0.55,
               uar=0.4, config_id="m")
        _write(runs, f"nopos{fold}", preset="cpu", epochs=5, fold=fold, frames=4, depths=[1, 1, 1], war=0.5,
               uar=0.4, tag="no-pos-embed", config_id="n")  # not a baseline: stays out
    t = R.baselines(R.load_results(runs)).set_index("model")
    assert list(t.index) == ["ResNet-18 + LSTM (baseline)", "MSSTNet, depths 1-1-1",
                             "ResNet-18 + LSTM (baseline), lr 3e-3", "ResNet-18 + LSTM (baseline), lr 1e-2"]
    assert t.loc["ResNet-18 + LSTM (baseline), lr 1e-2", "war"] == pytest.approx(66.5)
    assert (t["n_folds"] == 2).all()


REGIME_RUNS = {"default": ROOT / "results" / "synthetic" / "runs", "dfew-like": ROOT / "results" / "synthetic-dfewlike" / "runs"}
CLAIMS = ROOT / "results" / "synthetic" / "tables"


# every regime's build runs (msstlib.builds: results/synthetic<suffix>/builds/runs); the list used to
# name dfew-like, so the DFEW-calibrated regime's first committed build went unchecked
BUILD_RUNS = {r: ROOT / "results" / ("synthetic" + suffix) / "builds" / "runs"
              for r, suffix in REGIME_SUFFIX.items()}


def test_committed_five_fold_claims_are_what_the_committed_runs_give():
    """Every number comes from committed run files through the code (issue 10): the five-fold claims
    (superseded by the build claims, kept to show what changed) are what msstlib.claims computes from
    the committed five-fold result.json files."""
    import numpy as np

    from msstlib import claims as K

    fresh = pd.concat([K.claims_table(R.one_family(R.load_study(runs), None)[0], regime)
                       for regime, runs in REGIME_RUNS.items()], ignore_index=True)
    committed = pd.read_csv(CLAIMS / "claims_five_fold.csv")
    keys = ["claim", "regime", "comparison", "verdict", "units", "folds", "seeds"]
    assert fresh[keys].values.tolist() == committed[keys].values.tolist()
    numbers = ["diff_mean", "ci_low", "ci_high", "mde"]  # the CSV keeps four significant digits
    np.testing.assert_allclose(fresh[numbers].to_numpy(float), committed[numbers].to_numpy(float), rtol=1e-3, atol=1e-3)


def test_committed_claims_recompute_from_the_committed_builds_and_their_units():
    """The claims (issue 25) are what the committed build runs give, through claims_units.csv: the
    units are the runs' paired differences, and claims.csv (mean, t interval, exact sign-flip p,
    Holm) recomputes from claims_units.csv alone; no Holm-supported verdict has p_holm >= 0.05."""
    import numpy as np

    from msstlib import claims as K

    have = {g: runs for g, runs in BUILD_RUNS.items() if any(runs.glob("*/result.json"))}
    assert have, "no committed build run: the claims rest on builds (python -m msstlib.study --builds ...)"
    units = pd.read_csv(CLAIMS / "claims_units.csv")
    fresh_units = pd.concat([u for g, runs in have.items() for u in (K.build_units(R.load_study(runs), g),
                                                                      K.cam_units(runs.parent / "gradcam", g)) if len(u)],
                            ignore_index=True)
    assert units[["claim", "comparison", "regime", "unit"]].values.tolist() == \
        fresh_units[["claim", "comparison", "regime", "unit"]].values.tolist()
    np.testing.assert_allclose(units["diff"], fresh_units["diff"], rtol=1e-3, atol=1e-3)
    claims = pd.read_csv(CLAIMS / "claims.csv", keep_default_na=False, na_values=[""])
    again = K.claims_from_units(units)
    keys = ["claim", "regime", "comparison", "verdict", "verdict_holm", "units"]
    assert claims[keys].values.tolist() == again[keys].values.tolist()
    numbers = ["diff_mean", "ci_low", "ci_high", "p_signflip", "p_holm", "observed_sd_mde"]
    np.testing.assert_allclose(claims[numbers].to_numpy(float), again[numbers].to_numpy(float), rtol=1e-3, atol=1e-3)
    assert not ((claims["verdict_holm"] == "supported") & (claims["p_holm"] >= 0.05)).any()
    side = pd.read_csv(CLAIMS / "claims_by_regime.csv")
    assert side.values.tolist() == K.build_side_by_side(again).values.tolist()
    tally = pd.read_csv(CLAIMS / "claims_tally.csv")
    assert tally.values.tolist() == K.tally(again).values.tolist()


@pytest.mark.parametrize("table", ["claims_by_regime", "claims_tally"])
def test_readme_shows_the_committed_claims_table(table):
    """The README's claims table is the committed claims_by_regime table, cell for cell (it used to be
    pasted from a helper outside the repository, and could drift from the runs); so is its tally of
    verdicts per claim of the paper (claims_tally)."""
    side = pd.read_csv(CLAIMS / f"{table}.csv")
    header = "| " + " | ".join(side.columns) + " |"
    lines = (ROOT / "README.md").read_text().splitlines()
    assert header in lines, f"README.md has no claims table with the header {header}"
    start = lines.index(header) + 2  # skip the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows == side.values.tolist(), f"README.md's table differs from results/synthetic/tables/{table}.md: " \
                                         "python -m msstlib.study --dataset synthetic --collect re-pastes it"


def test_readme_counts_of_verdicts_are_the_committed_claims():
    """The README's status paragraph counts each regime's verdicts by hand after every landing ("In the
    default regime 12 of the 34 comparisons read `supported` ... 3 read `contradicted` ... 19 stay
    `unresolved`"); those counts are the committed claims.csv's, so prose cannot drift from the table."""
    claims = pd.read_csv(CLAIMS / "claims.csv")
    paragraphs = [" ".join(p.split()) for p in (ROOT / "README.md").read_text().split("\n\n")]
    pattern = r"In the (\S+) regime (\d+) of the (\d+) comparisons read `supported`"
    found = [(m, p) for p in paragraphs for m in re.finditer(pattern, p)]
    assert found, "README.md no longer counts a regime's verdicts in the sentence this test reads"
    for m, paragraph in found:
        regime, said = m.group(1), {"supported": int(m.group(2))}
        rows = claims[claims["regime"] == regime]
        assert int(m.group(3)) == len(rows), f"README: {regime} has {len(rows)} comparisons, not {m.group(3)}"
        rest = paragraph[m.end():].split("In the ")[0]  # up to the next regime's count, in this paragraph
        for verdict in ["contradicted", "unresolved"]:
            n = re.search(rf"(\d+) (?:reads?|stays?) `{verdict}`", rest)  # "1 reads", "3 read"
            if n:
                said[verdict] = int(n.group(1))
        counts = rows["verdict"].value_counts()
        wanted = {v: int(counts.get(v, 0)) for v in said}
        assert said == wanted, f"README's {regime} counts {said} differ from claims.csv's {wanted}"


def test_every_committed_run_is_filed_under_its_identity():
    """A committed result.json's identity hashes to its run id, and its folder ends with that id:
    the folder, the id and the recorded configuration cannot disagree (DESIGN.md §7). So for a
    probe's diverged.json (a study on another build must recognise it, README "Builds")."""
    from msstlib import config as C

    bad = []
    paths = sorted((ROOT / "results").rglob("runs/*/result.json")) + sorted((ROOT / "results").rglob("runs/*/diverged.json"))
    assert any(p.name == "diverged.json" for p in paths)
    for path in paths:
        r = json.loads(path.read_text())
        if not (C.run_id(r["identity"]) == r["run_id"] and path.parent.name.endswith("_" + r["run_id"])):
            bad.append(path.parent.name)
    assert not bad, f"{len(bad)} runs not filed under their identity, e.g. {bad[0]}"


def test_the_readme_claims_table_is_re_pasted_from_the_committed_table_whatever_its_columns(tmp_path):
    """The README's claims table was pasted by hand after each build landed; rendering the committed
    tables now re-pastes it (a new regime's column included) and leaves the prose around it alone."""
    from msstlib import render

    side = pd.DataFrame({"claim": ["a helps", "b helps"], "comparison": ["T4 d100 - T4 d000", "T8 - T4"],
                         "default": ["+1.0 [+0.5, +1.5] p=0.008 supported", "-0.2 [-1.0, +0.6] p=0.9 unresolved"],
                         "dfew-calibrated": ["not run", "+0.1 [-0.1, +0.3] p=0.4 unresolved"]})
    side.to_csv(tmp_path / "claims_by_regime.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nBefore.\n\n| claim | comparison | default |\n|---|---|---|\n| old | row | cell |\n"
                      "\nAfter.\n\n| other | table |\n|---|---|\n")
    assert render.readme_claims(tmp_path / "claims_by_regime.csv", readme)
    text = readme.read_text()
    assert "| old | row | cell |" not in text and text.startswith("# Title\n\nBefore.\n\n")
    assert text.endswith("\nAfter.\n\n| other | table |\n|---|---|\n")
    lines = text.splitlines()
    header = "| claim | comparison | default | dfew-calibrated |"
    start = lines.index(header) + 2
    assert [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:start + 2]] == side.values.tolist()
    assert not render.readme_claims(tmp_path / "claims_by_regime.csv", readme)  # already current: unchanged
    readme.write_text("# no table\n")
    with pytest.raises(ValueError, match="no table"):
        render.readme_claims(tmp_path / "claims_by_regime.csv", readme)


def test_the_readme_tally_is_re_pasted_under_its_own_header_leaving_the_claims_table_alone(tmp_path):
    """Two derived tables live in the README: the tally per claim and the claims table. Re-pasting
    the tally (found by its own header) must leave the claims table after it untouched."""
    from msstlib import render

    tally = pd.DataFrame({"the paper's claim": ["a helps"],
                          "default": ["1 of 1 supported; Holm: 0 supported; 8 builds"]})
    tally.to_csv(tmp_path / "claims_tally.csv", index=False)
    readme = tmp_path / "README.md"
    claims_table = "| claim | comparison | default |\n|---|---|---|\n| a helps | T4 - T4 | cell |\n"
    readme.write_text("Intro.\n\n| the paper's claim | default |\n|---|---|\n| stale | stale |\n\nMiddle.\n\n"
                      + claims_table)
    assert render.readme_claims(tmp_path / "claims_tally.csv", readme, render.TALLY_HEADER)
    text = readme.read_text()
    assert "| a helps | 1 of 1 supported; Holm: 0 supported; 8 builds |" in text and "stale" not in text
    assert text.endswith("\nMiddle.\n\n" + claims_table)
    assert not render.readme_claims(tmp_path / "claims_tally.csv", readme, render.TALLY_HEADER)
