"""One page to look at: ``results/report.html`` from the executed tables and Grad-CAM notebooks
(``make report``; issue 28).

    python -m msstlib.report [--out results/report.html] [--reproduction build/reproduction.md]

The page joins the committed, executed copies of ``tables.ipynb`` (Table 1 / Table 3 beside the
paper's, the claims over builds of every regime, the regimes) and ``gradcam.ipynb`` (Fig. 3
analogues) of each regime, without their input cells, figures embedded. Each section opens with
its provenance: the notebook, the commit that last changed it, the command that made it and its
papermill parameters. Widget outputs (progress bars, whose saved state a browser does not replay)
are left out. nbconvert renders it.

``make reproduce`` writes its own page, ``build/reproduce/report.html`` (``--reproduction
build/reproduction.md --out build/reproduce/report.html``): the comparison of the re-run against
the committed rows and verdicts first (``msstlib.reproduce``), then the committed sections it was
compared with. ``results/report.html`` itself is refreshed by ``make report`` and ``make study``,
which write ``results/``; ``make reproduce`` never does, so a clean checkout stays clean.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import uuid
from pathlib import Path

from . import files
from .builds import ROOT

SECTIONS = (  # (executed notebook, what it is, the command that makes it)
    ("results/synthetic/tables.ipynb", "Tables and claims (default regime, with every regime's claims over builds)",
     "python -m msstlib.study --dataset synthetic --collect"),
    ("results/synthetic/gradcam.ipynb", "Grad-CAM, default regime (five-fold study's T = 4 models)", "make figures"),
    ("results/synthetic-dfewlike/tables.ipynb", "Tables, DFEW-like regime (five-fold study)",
     "python -m msstlib.study --dataset synthetic --regime dfew-like --collect"),
    ("results/synthetic-dfewlike/gradcam.ipynb", "Grad-CAM, DFEW-like regime", "make figures FULL=1"),
)
WIDGET = "application/vnd.jupyter.widget-view+json"


def last_commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "not committed"


def _as_jpeg(output, quality: int = 85):
    """An output's PNG figure as a JPEG (a page of figures stays a few MB, not 7: the Grad-CAM
    overlays are photographs of heat maps, which PNG compresses poorly)."""
    import base64
    import io

    from PIL import Image

    data = output.get("data", {})
    if "image/png" not in data:
        return output
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
    buf = io.BytesIO()
    png.save(buf, format="JPEG", quality=quality)
    data = {k: v for k, v in data.items() if k != "image/png"}
    data["image/jpeg"] = base64.b64encode(buf.getvalue()).decode()
    output["data"] = data
    return output


def build(sections=SECTIONS, reproduction: Path | None = None):
    """The joined notebook: a title cell, then (when given) the reproduction's Markdown, then per
    section its provenance and its outputs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["title"] = "msstlib report: MSSTNet reproduced on SynDFER"
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "# msstlib: MSSTNet (ICASSP 2024) reproduced on SynDFER\n\n"
        "**Every number here is on SynDFER, the project's synthetic benchmark in DFEW's layout, never on DFEW "
        "or FERV39k.** The paper's numbers appear beside ours labelled as the paper's. The claims are settled "
        "over independent builds (README \"The claims\"). This page is rendered from the committed, executed "
        "notebooks by " + ("`make reproduce`, its comparison first" if reproduction is not None else
                           "`make report` (`python -m msstlib.report`)") +
        "; each section says which notebook, which commit and which command made it."))
    if reproduction is not None:
        reproduction = Path(reproduction)
        nb.cells.append(nbformat.v4.new_markdown_cell(
            f"---\n\n*Made by `make reproduce` (`python -m msstlib.reproduce`): the re-run rows, Grad-CAM units "
            f"and verdicts against the committed ones below; the whole comparison is also in `{reproduction.name}`.*"
            f"\n\n" + re.sub(r"^(#+) ", r"#\1 ", reproduction.read_text(), flags=re.M)))  # one level down
    for rel, title, command in sections:
        path = ROOT / rel
        if not path.is_file():
            continue
        src = nbformat.read(path, as_version=4)
        params = src.metadata.get("papermill", {}).get("parameters", {})
        shown = ", ".join(f"`{k}={v!r}`" for k, v in params.items()) or "(none recorded)"
        nb.cells.append(nbformat.v4.new_markdown_cell(
            f"---\n\n# {title}\n\n*Provenance:* `{rel}`, last changed in commit {last_commit(path)}; made by "
            f"`{command}`; papermill parameters: {shown}."))
        for cell in src.cells:
            if "parameters" in cell.get("metadata", {}).get("tags", []) or \
                    "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                continue
            cell = copy.deepcopy(cell)
            cell["id"] = uuid.uuid4().hex[:8]  # two notebooks' cells may share ids
            if cell.cell_type == "code":
                cell.outputs = [_as_jpeg(o) for o in cell.get("outputs", []) if WIDGET not in o.get("data", {})
                                and o.get("name") != "stderr"]
            nb.cells.append(cell)
    return nb


def render(out: Path, reproduction: Path | None = None) -> Path:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(build(reproduction=reproduction))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    files.write_text(out, body)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstlib.report", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "results" / "report.html")
    p.add_argument("--reproduction", type=Path, default=None,
                   help="a comparison msstlib.reproduce wrote (build/reproduction.md), shown first")
    args = p.parse_args(argv)
    if args.reproduction is not None and not args.reproduction.is_file():
        print(f"error: --reproduction {args.reproduction}: no such file; run `python -m msstlib.reproduce` "
              f"(make reproduce) first", file=sys.stderr)
        return 2
    out = render(args.out, args.reproduction)
    print(f"-> {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
