"""The study-duration sum: what it adds up and that the README quotes it from the committed rows."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study_duration", ROOT / "benchmarks" / "study_duration.py")
SD = importlib.util.module_from_spec(spec)
spec.loader.exec_module(SD)


def _runs(folder: Path, rows):
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame(rows, columns=["frames", "seed", "wall_s"]).to_csv(folder / "tables" / "all_runs.csv", index=False)


def test_rows_are_summed_per_regime_frames_and_seed_and_run_two_at_a_time(tmp_path):
    _runs(tmp_path / "synthetic", [(4, 0, 100.0), (4, 0, 200.0), (8, 1, 60.0)])
    _runs(tmp_path / "synthetic-dfewlike", [(4, 0, 30.0)])
    d = SD.durations(tmp_path, jobs=2, overhead_s=10.0).set_index(["regime", "frames", "seed"])
    assert d.loc[("default", 4, 0), "rows"] == 2
    assert d.loc[("default", 4, 0), "wall_min"] == pytest.approx((300 / 2 + 2 * 10 / 2) / 60)
    assert d.loc[("default", 8, 1), "train_min"] == pytest.approx(1.0)
    assert d.loc[("dfew-like", 4, 0), "wall_min"] == pytest.approx((30 / 2 + 10 / 2) / 60)


def test_a_regime_without_its_table_says_which_file_and_how_to_make_it(tmp_path, capsys):
    _runs(tmp_path / "synthetic", [(4, 0, 100.0)])
    with pytest.raises(SystemExit) as e:
        SD.main(["--results", str(tmp_path)])
    assert e.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "synthetic-dfewlike" in out.err and "all_runs.csv" in out.err and "--collect" in out.err


def test_the_docs_quote_the_full_study_duration_the_committed_rows_give(capsys):
    SD.main(["--results", str(ROOT / "results")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last in (ROOT / "docs" / "reproduce.md").read_text(), f"docs/reproduce.md should quote: {last}"
