"""The LSTMs' training budget, chosen on the validation draw (build ``val``; no claim reads it).

    python -m msstlib.study --dataset synthetic --validation --jobs 2     # the sweep's rows
    python results/calibration/lstm_budget.py                             # this table and the choice

Prints, for ``resnet18-lstm`` and ``me-lstm`` at each (learning rate, epochs) of
``msstlib.study.LSTM_SWEEP``, the validation draw's last-epoch WAR / UAR, the majority-class share,
and the test WAR after each epoch (is it still rising?), beside MSSTNet and the GRUs at the shared
budget. The rule: the highest last-epoch WAR per variant; a budget within 0.5 points of it at fewer
epochs wins (cheaper and as good). ``msstlib.claims.LSTM_BUDGET`` holds what it chose.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from msstlib import results as R  # noqa: E402
from msstlib.claims import LSTM_BUDGET  # noqa: E402

TIE_POINTS = 0.5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(ROOT / "results" / "synthetic" / "validation" / "runs"))
    args = p.parse_args(argv)
    runs = Path(args.runs)
    df = R.load_study(runs)
    df["lr"] = [json.loads((runs / r / "result.json").read_text())["config"]["train"]["lr"] for r in df["run"]]
    curves = {r: pd.read_csv(runs / r / "log.csv")["test_war"].mul(100).round(1).tolist() for r in df["run"]}
    df["test_war_by_epoch"] = [" ".join(f"{v:.1f}" for v in curves[r]) for r in df["run"]]
    cols = ["variant", "tag", "lr", "epochs", "war", "uar", "majority", "test_war_by_epoch"]
    table = df.sort_values(["variant", "epochs", "lr"])[cols]
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 120)
    print("validation draw (build val, fold 1: 600 test clips), WAR / UAR in %, last epoch; SynDFER, not DFEW")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    for variant in ("resnet18-lstm", "me-lstm"):
        sweep = df[(df["variant"] == variant) & df["tag"].str.startswith("lr")]
        if not len(sweep):
            continue
        best = sweep["war"].max()
        near = sweep[sweep["war"] >= best - TIE_POINTS].sort_values(["epochs", "war"], ascending=[True, False])
        pick = near.iloc[0]
        print(f"{variant}: chosen lr {pick['lr']:g}, {int(pick['epochs'])} epochs (WAR {pick['war']:.1f}; best of the "
              f"sweep {best:.1f}); msstlib.claims.LSTM_BUDGET holds {LSTM_BUDGET.get(variant)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
