"""Where does one frame carry the class? A ceiling analysis on SynDFER's true movement values.

    python results/calibration/dfewlike_ceiling.py [--clips 3000] [--frames 4]

For each generator setting, two classifiers on the eight movement values of the T frames the
test loader samples (segment centres), trained on folds 2-5 and tested on fold 1:
- frame-level: logistic regression on the mean of the T frames' values (what the temporal-mean
  baseline is: a linear head on features pooled over time; order-blind);
- ordered: an MLP (scikit-learn, one hidden layer of 64) on the T frames' values in order (what a
  temporal model can see).
The ratio frame-level / ordered is the analogue of the paper's DFEW ratio (65.91 / 69.71 = 0.95)
and of the issue's target, 0.85-0.90. No images are drawn: seconds per setting. On the first
DFEW-like setting (rest_anchor 1) it predicted the study's own ratio on images through the frozen
backbone (0.62 here, 41.2 / 66.3 in the fold-1 runs); results/calibration/README.md has both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data_prep.synthetic import dataset_motions, plan_clips, regime_config  # noqa: E402
from msstlib.data import sample_indices  # noqa: E402


def features(motions, frames: int):
    mean, ordered = [], []
    for m in motions:
        x = m.au[sample_indices(m.num_frames, frames, train=False)]
        mean.append(x.mean(0))
        ordered.append(x.reshape(-1))
    return np.array(mean), np.array(ordered)


def score(model, x, y, train, test) -> float:
    from sklearn.preprocessing import StandardScaler

    s = StandardScaler().fit(x[train])
    return float((model.fit(s.transform(x[train]), y[train]).predict(s.transform(x[test])) == y[test]).mean())


def main() -> None:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=3000)
    p.add_argument("--frames", type=int, default=4)
    args = p.parse_args()
    labels, folds = plan_clips(args.clips, 0)
    train, test = folds != 1, folds == 1
    settings = [("default", {}), ("dfew-like", {"rest_range": 0.7}), ("dfew-like", {"rest_range": 0.4}),
                ("dfew-like", {"rest_range": 0.25}), ("dfew-like", {"rest_range": 0.2}), ("dfew-like", {}),
                ("dfew-like", {"rest_range": 0.2, "burst_share": 0.2})]
    print(f"| regime | changes | frame-level WAR | ordered WAR | ratio |  (T={args.frames}, fold 1, {args.clips} clips)")
    print("|---|---|---|---|---|")
    for regime, changes in settings:
        cfg = regime_config(regime, **changes)
        mean, ordered = features(dataset_motions(cfg, args.clips, 0), args.frames)
        a = score(LogisticRegression(max_iter=2000), mean, labels, train, test)
        b = score(MLPClassifier((64,), max_iter=600, random_state=0), ordered, labels, train, test)
        print(f"| {regime} | {changes or '(as named)'} | {a:.3f} | {b:.3f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
