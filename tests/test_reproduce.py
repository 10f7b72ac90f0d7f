"""make reproduce checks itself (issue 28): re-run rows go to build/reproduce, never over results/,
and are compared row by row and verdict by verdict with the committed ones."""

import json
import shutil
from pathlib import Path

from msstlib import builds as B
from msstlib import reproduce, study

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "synthetic" / "builds"


def _rerun(tmp_path) -> Path:
    """A copy of build b01's committed T = 4 rows and Grad-CAM, as a re-run on the same CPU gives."""
    root = tmp_path / "rerun"
    runs = root / "synthetic" / "builds" / "runs"
    runs.mkdir(parents=True)
    for d in sorted(COMMITTED.glob("runs/b01_T04_*")):
        shutil.copytree(d, runs / d.name)
    shutil.copytree(COMMITTED / "gradcam" / "b01", root / "synthetic" / "builds" / "gradcam" / "b01")
    return root


def test_an_identical_rerun_reproduces(tmp_path, capsys):
    root = _rerun(tmp_path)
    assert reproduce.main(["--rerun", str(root), "--report", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "**It reproduces**" in text and "same build: exactly" in text and "| unresolved  | unresolved |" in text
    assert text.startswith("# Reproduction: ") and " against results\n" in text.splitlines()[0] + "\n"  # no machine path


def test_a_row_that_moved_is_named_in_a_table_and_the_exit_status_is_1(tmp_path):
    root = _rerun(tmp_path)
    path = next((root / "synthetic" / "builds" / "runs").glob("b01_T04_d111_s0_*")) / "result.json"
    r = json.loads(path.read_text())
    r["war"] += 0.001  # a tenth of a point: a same-build row must match exactly
    path.write_text(json.dumps(r))
    assert reproduce.main(["--rerun", str(root), "--report", str(tmp_path / "r.md")]) == 1
    text = (tmp_path / "r.md").read_text()
    bad = text.split("## Rows that disagree")[1].split("##")[0]
    assert "It does not reproduce**: 1 of 20 rows" in text and "b01_T04_d111_s0_fold1" in bad


def test_another_builds_rerun_is_judged_within_the_builds_spread():
    import pandas as pd

    committed = pd.DataFrame({"run": ["b01_x_a", "b02_x_b"], "run_id": ["a", "b"], "config_id": ["c", "c"],
                              "build_name": ["b01", "b02"], "war": [50.0, 56.0], "uar": [40.0, 45.0]})
    rerun = pd.DataFrame({"run": ["b01_x_z", "b01_x_y"], "run_id": ["z", "y"], "config_id": ["c", "c"],
                          "build_name": ["b01", "b01"], "war": [57.0, 70.0], "uar": [41.0, 50.0]})
    rows = reproduce.rows_compared(committed, rerun)  # SD over builds 4.24: tolerance 8.5 points
    assert rows.set_index("row")["agrees"].to_dict() == {"b01_x_y": False, "b01_x_z": True}
    assert set(rows["compared"]) == {"another build: within the builds' spread"}


def test_rerun_rows_go_under_the_results_root_and_never_over_results(tiny, r18, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny[1], data)
    monkeypatch.setattr(B.Build, "data", lambda self, work=None: data)
    monkeypatch.setattr(B.Build, "backbone", lambda self, work=None: Path(r18))
    # the build folder (its lock) too: never the clone's build/, where a real build may be running
    monkeypatch.setattr(B.Build, "folder", lambda self, work=None: tmp_path / "build" / self.name)
    monkeypatch.setattr(B.Build, "prepare", lambda self, work=None, candidate_frames=0, features=True, feature_precision="float16": (str(data / "prepared" / "annotations.csv"),
                                                                     str(data)))
    where = []

    def fake_run(rows, s, jobs):
        where.append((Path(s.results), Path(s.work)))
        return [(s.folder(r), None) for r in rows]

    monkeypatch.setattr(study, "run_local", fake_run)
    monkeypatch.setattr(study, "build_cam", lambda s, rows, b: None)
    monkeypatch.setattr(study, "render_tables", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rendered")))
    root = tmp_path / "reproduce" / "results"
    assert study.main(["--dataset", "synthetic", "--builds", "1", "--frames", "4", "--results-root", str(root)]) == 0
    (results, work), = where
    assert results == root / "synthetic" / "builds" and work.is_relative_to(tmp_path / "reproduce")
    assert "python -m msstlib.reproduce" in capsys.readouterr().out


def test_the_report_joins_the_executed_notebooks_without_inputs_or_widgets(tmp_path):
    from msstlib import report

    nb = report.build()
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "never on DFEW" in text and text.count("*Provenance:*") == len(report.SECTIONS)
    assert all(o.get("name") != "stderr" and report.WIDGET not in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    html = report.render(tmp_path / "r.html").read_text()
    assert "claims_by_regime" in html or "The paper's claims" in html
    assert "<div class=\"highlight hl-ipython3\">" not in html.split("<body", 1)[1]  # no code input cells
    assert "src=\"data:image/jpeg" in html and "src=\"data:image/png" not in html  # figures as JPEG: a page of a few MB
    assert (ROOT / "results" / "report.html").is_file()  # committed: make report


def test_make_reproduce_writes_its_own_report_page_with_the_comparison_first(tmp_path, capsys):
    """make reproduce refreshes a report of what it re-ran (build/reproduce/report.html), never
    results/report.html: the comparison comes first, its headings one level below the page's."""
    from msstlib import report

    root = _rerun(tmp_path)
    md = tmp_path / "reproduction.md"
    assert reproduce.main(["--rerun", str(root), "--report", str(md)]) == 0
    nb = report.build(sections=(), reproduction=str(md))  # a path as text will do
    first = nb.cells[1].source
    assert "**It reproduces**" in first and "\n## Reproduction:" in first and "\n### Every row" in first
    assert "rendered from the committed, executed notebooks by `make reproduce`" in nb.cells[0].source
    out = tmp_path / "page" / "report.html"
    assert report.main(["--reproduction", str(md), "--out", str(out)]) == 0
    assert "It reproduces" in out.read_text()
    missing = tmp_path / "none.md"
    assert report.main(["--reproduction", str(missing), "--out", str(tmp_path / "x.html")]) == 2
    assert "--reproduction" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
