"""One-off migration (issue 8): give the committed SynDFER runs their run identity.

The runs under ``results/synthetic/runs/`` were made before runs had an identity: their folders were
named ``T04_d111_s0_fold1`` and their ``result.json`` had no ``run_id``. This script renames each
folder to ``<prefix>_<run id>`` and adds ``run_id``, ``config_id``, ``identity`` and ``tag`` to its
``result.json`` (``diverged.json`` of the optimiser probes gets ``run_id`` and ``tag``). No metric
is touched.

The identity needs the content of the data and of the frozen backbone, which are not committed:
rebuild them first (both are deterministic: SynDFER from its seed, the backbone from its recipe):

    python -c "from pathlib import Path; from msstlib.study import prepare_synthetic; \\
               prepare_synthetic(Path('build/syndfer'), 3000, False)"
    python results/synthetic/rekey_runs.py --check-row T04_d111_s0_fold1   # re-trains one row
    python results/synthetic/rekey_runs.py --apply

Checks, before anything is renamed: every recorded configuration (``result.json`` ``config``)
gives the same identity as the study's row of that name under the current grid (so the
folder names are what ``python -m msstlib.study`` now looks for), and ``--check-row`` re-trains
one row with today's code and the rebuilt backbone and requires the same confusion matrix, bit for
bit -- evidence that the rebuilt backbone is the one the runs used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from msstlib import config as C
from msstlib import study as S

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def current_study() -> tuple[S.Study, list[S.Row]]:
    data = ROOT / "build" / "syndfer"
    study = S.Study(annotations=str(data / "prepared" / "annotations.csv"), root=str(data), dataset="synthetic",
                    preset="cpu", results=str(HERE), work=str(ROOT / "build" / "synthetic"),
                    extra={"backbone_weights": str(S.backbone_path(False))})
    return study, S.grid("synthetic", [1], sgd_rows=True)


def recorded_identity(result: dict, study: S.Study) -> dict:
    cfg = result["config"]
    model = C.MSSTConfig(**{**cfg["model"], "backbone_weights": study.extra["backbone_weights"]})
    train, data = C.TrainConfig(**cfg["train"]), C.DataConfig(**cfg["data"])
    return C.identity(model, train, data, dataset=result["dataset"], fold=result["fold"], split=result["split"],
                      seed=result["seed"], annotations=study.annotations, root=study.root)


def check_row(name: str) -> int:
    from msstlib.train import run

    study, rows = current_study()
    row = next(r for r in rows if r.name == name)
    old = json.loads((HERE / "runs" / name / "result.json").read_text())
    with tempfile.TemporaryDirectory() as work:
        new = run(annotations=study.annotations, root=study.root, frames=row.frames, depths=row.depths,
                  variant=row.variant, preset="cpu", fold=row.fold, seed=row.seed, work_dir=work,
                  threads=old["config"]["train"]["threads"], overrides=study.overrides(row), progress=False)
    same = new["confusion"] == old["confusion"]
    print(f"{name}: recorded WAR {old['war']:.4f} UAR {old['uar']:.4f}; re-trained WAR {new['war']:.4f} "
          f"UAR {new['uar']:.4f}; confusion matrices {'identical' if same else 'DIFFER'}")
    return 0 if same else 1


def apply(dry: bool) -> int:
    study, rows = current_study()
    runs = HERE / "runs"
    plan = []
    for row in rows:
        src = runs / row.name
        if not src.is_dir():
            continue
        ident = C.identity(*study.configs(row), dataset=row.dataset, fold=row.fold, split=row.split, seed=row.seed,
                           annotations=study.annotations, root=study.root)
        if (src / "result.json").exists():
            recorded = recorded_identity(json.loads((src / "result.json").read_text()), study)
            if recorded != ident:
                print(f"{row.name}: the recorded configuration is not the study's row:\n  "
                      + "\n  ".join(C.identity_diff(recorded, ident)), file=sys.stderr)
                return 1
        plan.append((row, src, runs / study.folder(row), ident))
    for row, src, dst, ident in plan:
        print(f"{src.name} -> {dst.name}")
        if dry:
            continue
        for name in ("result.json", "diverged.json"):
            path = src / name
            if path.exists():
                record = json.loads(path.read_text())
                record.update(run_id=C.run_id(ident), tag=row.tag)
                if name == "result.json":
                    record.update(config_id=C.config_id(ident), identity=ident)
                path.write_text(json.dumps(record, indent=1))
        os.replace(src, dst)
    print(f"{len(plan)} run folders {'would be ' if dry else ''}renamed")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check-row", help="re-train this row and compare it with the recorded one")
    p.add_argument("--apply", action="store_true", help="rename (default: show what would be renamed)")
    args = p.parse_args()
    if args.check_row:
        return check_row(args.check_row)
    return apply(dry=not args.apply)


if __name__ == "__main__":
    sys.exit(main())
