"""Tables and figures from the rows that landed, through papermill (``tables.ipynb``, ``gradcam.ipynb``).

* :func:`render_tables`: ``tables.ipynb`` over a results folder's runs (and, beside the default
  regime's five-fold study, the DFEW-like regime's runs and every regime's builds: the claims over
  independent builds are rendered with the default regime's tables);
* :func:`render_figures`: ``gradcam.ipynb`` on the five-fold study's T=4 MSSTNet and its control;
* :func:`build_cam`: ``gradcam.ipynb`` on one build's own models, one Grad-CAM unit per build;
* :func:`overview`: ``data_overview.ipynb`` on a study's data; :func:`where`: what a study prints last;
* :func:`readme_claims`: the README's claims table and its tally per claim, re-pasted from
  ``claims_by_regime.csv`` and ``claims_tally.csv`` whenever the committed results' tables are
  rendered (the README shows them cell for cell).

A results folder says what it holds by its name: ``results/synthetic[-<regime>][-quick]``
(:func:`regime_of`, :func:`is_smoke`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import files, paths, train
from .builds import REGIME_SUFFIX, Build, step
from .grid import UNIT_FOLD, Row
from .notebooks import NOTEBOOKS, execute
from .runs import Study, row_done

QUICK_CAM_CLIPS = 24  # Grad-CAM scores of the quick run: a smoke test of the pipeline, not a measurement


def is_smoke(results: Path) -> bool:
    """The quick run's results (``results/<dataset>-quick``): every table and figure says so."""
    return Path(results).name.endswith("-quick")


def regime_of(results: Path) -> str:
    """The SynDFER regime a results folder holds (``results/synthetic-dfewlike[-quick]``: dfew-like)."""
    name = Path(results).name
    return next((r for r, suffix in REGIME_SUFFIX.items() if suffix and suffix in name), "default")


def dfewlike_sibling(results: Path) -> Path | None:
    """The DFEW-like regime's runs beside a default-regime study (its claims go into the same
    claims table, side by side), when they exist."""
    results = Path(results)
    if regime_of(results) != "default" or not results.name.startswith("synthetic"):
        return None
    runs = results.parent / results.name.replace("synthetic", "synthetic" + REGIME_SUFFIX["dfew-like"], 1) / "runs"
    return runs if any(runs.glob("*/result.json")) else None


def render_tables(results: Path, dataset: str, lock: bool = False) -> None:
    lock_path = results / ".tables.lock"
    if lock:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            return  # another job is rendering them
    dfewlike = dfewlike_sibling(results)
    # The claims over independent builds of every regime (msstlib.builds), rendered with the default regime's tables
    builds = {r: results.parent / results.name.replace("synthetic", "synthetic" + suffix, 1) / "builds" / "runs"
              for r, suffix in REGIME_SUFFIX.items()} if regime_of(results) == "default" else {}
    builds = {r: paths.relative(b) for r, b in builds.items() if any(b.glob("*/result.json"))}
    try:
        with step(f"tables: tables.ipynb -> {paths.relative(results / 'tables')}"):
            execute(NOTEBOOKS / "tables.ipynb", results / "tables.ipynb",
                    {"runs_dir": paths.relative(results / "runs"), "tables_dir": paths.relative(results / "tables"),
                     "dataset": dataset, "figures_dir": paths.relative(results / "figures"), "smoke": is_smoke(results),
                     "regime": regime_of(results),
                     "dfewlike_runs_dir": paths.relative(dfewlike) if dfewlike else "",
                     "builds_runs_dirs": json.dumps(builds)},
                    progress_bar=not lock)
        if Path(results).resolve() == (paths.REPO / "results" / dataset).resolve():
            for name, header in README_TABLES.items():
                if (results / "tables" / name).is_file():
                    readme_claims(results / "tables" / name, paths.REPO / "README.md", header)
    finally:
        if lock:
            lock_path.unlink(missing_ok=True)


CLAIMS_HEADER = "| claim | comparison |"  # how the README's claims table begins, whatever its regime columns
TALLY_HEADER = "| the paper's claim |"  # how the README's tally of verdicts per claim begins
README_TABLES = {"claims_by_regime.csv": CLAIMS_HEADER, "claims_tally.csv": TALLY_HEADER}


def readme_claims(side_csv: Path, readme: Path, header: str = CLAIMS_HEADER) -> bool:
    """Replace the README's table whose header line begins with ``header`` (the first; by default
    the claims table, :data:`CLAIMS_HEADER`) with ``side_csv`` (``claims_by_regime.csv``, or
    ``claims_tally.csv`` under :data:`TALLY_HEADER`), cell for cell; returns whether it changed.
    The prose around it is the author's: only the tables are derived."""
    import pandas as pd

    side = pd.read_csv(side_csv, dtype=str, keep_default_na=False)
    table = ["| " + " | ".join(side.columns) + " |", "|" + "---|" * len(side.columns)]
    table += ["| " + " | ".join(row) + " |" for row in side.values.tolist()]
    lines = Path(readme).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        raise ValueError(f"{paths.relative(readme)}: no table (a line beginning {header!r}) to replace with "
                         f"{paths.relative(side_csv)}")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    new = lines[:start] + table + lines[end:]
    if new == lines:
        return False
    files.write_text(readme, "\n".join(new) + "\n")
    print(f"    {paths.relative(readme)}: table re-pasted from {paths.relative(side_csv)}", flush=True)
    return True


def render_figures(study: Study, rows: list[Row], max_clips: int = 0, elsewhere: dict | None = None) -> None:
    """``gradcam.ipynb`` on the study's T=4 MSSTNet (depth 1) and its matched control (ResNet-18 +
    GRU on the same features), fold 1 (or the first fold run), seed 0: Fig. 3 analogues and paired
    scores under ``results/{figures,tables}``.
    ``max_clips`` > 0 scores only that many test clips (the quick run's smoke test). ``elsewhere``
    maps a row's folder to the folder of its result under another build (``--allow-other-builds``):
    such a row is trained again with this build for its weights."""
    elsewhere = elsewhere or {}

    def pick(depths, variant="msstnet"):
        found = [r for r in rows if r.frames == 4 and r.depths == depths and r.variant == variant
                 and r.seed == 0 and not r.tag]
        if not found:
            raise FileNotFoundError(f"the study's grid has no T=4 {variant} depths {depths} row")
        row, ckpt = found[0], study.work_dir(found[0]) / "checkpoint.pt"
        if not ckpt.exists():
            here = study.folder(row)
            made = (study.result_dir(row) if row_done(study, row)
                    else Path(study.results) / "runs" / elsewhere[here] if here in elsewhere else None)
            if made is None:
                raise FileNotFoundError(f"no result for {study.folder(row)} yet; run the study first (same flags, "
                                        f"without --figures)")
            # The result is committed but its weights are not (a fresh clone): train the same run
            # again into the work folder (on the CPU that made it, it reproduces the result exactly;
            # under another build, --allow-other-builds, it is this build's model of that row).
            print(f"re-training {study.folder(row)} for its weights (its result is committed, its checkpoint is not)",
                  flush=True)
            # As it was made: the same input path and thread count (neither changes the run's result
            # beyond rounding, but Grad-CAM reads the weights, and the committed figure used those).
            recorded = files.read_json(made / "result.json", "the row's result")
            same_input = {"feature_cache": recorded.get("input", "frames") != "frames"}
            threads = recorded.get("config", {}).get("train", {}).get("threads") or study.threads
            train.run(annotations=study.annotations, root=study.root, frames=row.frames, depths=row.depths,
                variant=row.variant, preset=study.preset, fold=row.fold, split=row.split, seed=row.seed,
                epochs=study.epochs, work_dir=str(ckpt.parent), threads=threads,
                overrides={**study.overrides(row), **same_input}, progress=False, tag=row.tag)
        return str(ckpt), row.fold or 1

    # The control is trained and of comparable accuracy (the ResNet-18 + GRU on the same frozen
    # features), never the model without T-Formers, which sits near chance on SynDFER (issue 10).
    (control, fold), (msst, _) = pick((0, 0, 0), "resnet18-gru"), pick((1, 1, 1))
    results = Path(study.results)
    clips = f"{max_clips} test clips" if max_clips else "every test clip"
    with step(f"Grad-CAM: gradcam.ipynb on fold {fold}, scoring {clips} -> {paths.relative(results / 'figures')}"):
        execute(NOTEBOOKS / "gradcam.ipynb", results / "gradcam.ipynb",
                {"annotations": paths.relative(study.annotations), "root": paths.relative(study.root), "fold": fold,
                 "control_checkpoint": paths.relative(control), "msst_checkpoint": paths.relative(msst),
                 "max_clips": max_clips,
                 "figures_dir": paths.relative(results / "figures"), "tables_dir": paths.relative(results / "tables"),
                 "smoke": is_smoke(results), "regime": regime_of(results), "show_progress": False}, progress_bar=True)


def where(results: Path) -> None:
    """The last thing a study prints: where its tables, figures and notebooks are."""
    results = Path(results)
    label = ("SMOKE TEST results (QUICK=1: short training on a small SynDFER; they check the pipeline, they "
             "are not results)" if is_smoke(results) else "Results")
    print(f"\n{label}, in {paths.relative(results)}/:")
    for name, folder, pattern, what in (("tables", results / "tables", "*.md", "Markdown and CSV"),
                                        ("figures", results / "figures", "*.png", "PNG"),
                                        ("notebooks", results, "*.ipynb", "executed; open them in JupyterLab")):
        found = sorted(p.name for p in folder.glob(pattern))
        shown = ", ".join(found[:6]) + (f", ... ({len(found)} in all)" if len(found) > 6 else "")
        print(f"  {name:9s} {paths.relative(folder)}/  ({what}): {shown or 'none yet'}")
    print(f"  runs      {paths.relative(results / 'runs')}/  ({len(list(results.glob('runs/*/result.json')))} "
          f"result.json)", flush=True)


def overview(annotations: str, root: str, results: Path) -> None:
    """``data_overview.ipynb`` on the study's data: figures under ``results/figures``."""
    results.mkdir(parents=True, exist_ok=True)
    with step(f"data overview: data_overview.ipynb -> {paths.relative(results / 'data_overview.ipynb')}"):
        execute(NOTEBOOKS / "data_overview.ipynb", results / "data_overview.ipynb",
                {"annotations": paths.relative(annotations), "root": paths.relative(root),
                 "figures_dir": paths.relative(results / "figures")}, progress_bar=True)


BUILD_CAM_CLIPS = 200  # test clips a build's Grad-CAM scores (the unit is the build; its clips only describe it)


def build_cam(study: Study, rows: list[Row], build: Build, max_clips: int = BUILD_CAM_CLIPS) -> Path | None:
    """``gradcam.ipynb`` on one build's own models: its T=4 MSSTNet (depth 1) and its trained control
    (the ResNet-18 + GRU), scoring ``max_clips`` test clips of its fixed split, into
    ``<results>/gradcam/<build>/`` (tables only; skipped when they exist). Each build gives one
    unit per Grad-CAM comparison (:func:`msstlib.claims.cam_units`)."""
    out = Path(study.results) / "gradcam" / build.name
    if (out / "gradcam_like_with_like.csv").exists():
        return None

    def checkpoint(variant: str, depths: tuple[int, int, int]) -> Path:
        row = next(r for r in rows if r.frames == 4 and r.variant == variant and r.depths == depths and not r.tag)
        ckpt = study.work_dir(row) / "checkpoint.pt"
        if not ckpt.exists():
            raise FileNotFoundError(f"{paths.relative(ckpt)}: the build's checkpoint is gone (build/ was cleaned); run the "
                                    f"row again (delete {paths.relative(study.result_dir(row))}) to score Grad-CAM")
        return ckpt

    control, msst = checkpoint("resnet18-gru", (0, 0, 0)), checkpoint("msstnet", (1, 1, 1))
    out.mkdir(parents=True, exist_ok=True)
    with step(f"build {build.name}: Grad-CAM on its own models, {max_clips} test clips -> {paths.relative(out)}"):
        execute(NOTEBOOKS / "gradcam.ipynb", out / "gradcam.ipynb",
                {"annotations": paths.relative(study.annotations), "root": paths.relative(study.root), "fold": UNIT_FOLD,
                 "control_checkpoint": paths.relative(control), "msst_checkpoint": paths.relative(msst),
                 "max_clips": max_clips, "figures_dir": "", "tables_dir": paths.relative(out),
                 "regime": build.regime, "show_progress": False, "show_figures": False}, progress_bar=False)
    return out


