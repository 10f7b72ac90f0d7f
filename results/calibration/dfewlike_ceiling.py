"""Where does one frame carry the class? A ceiling analysis on SynDFER's true movement values.

    python results/calibration/dfewlike_ceiling.py [--clips 3000] [--frames 4]

For each generator setting, two classifiers on the eight movement values of the T frames the
test loader samples (segment centres), trained on folds 2-5 and tested on fold 1:
- frame-level: the per-frame values and their squares, averaged over the T frames (what a model
  that pools per-frame features over time can see: order-blind);
- ordered: the T frames' values in order (what a temporal model can see).
Both are an MLP (scikit-learn, one hidden layer of 64). The ratio frame-level / ordered is the
analogue of the paper's DFEW ratio (65.91 / 69.71 = 0.95) and of the issue's target, 0.85-0.90.
No images are drawn: seconds per setting. The study's own ratio, on images through the frozen
backbone, is measured on the runs (results/calibration/README.md).
"""
from __future__ import annotations

import argparse
import itertools
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
        mean.append(np.concatenate([x.mean(0), (x ** 2).mean(0)]))
        ordered.append(x.reshape(-1))
    return np.array(mean), np.array(ordered)


def score(x, y, train, test, seed: int = 0) -> float:
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    s = StandardScaler().fit(x[train])
    clf = MLPClassifier((64,), max_iter=600, random_state=seed).fit(s.transform(x[train]), y[train])
    return float((clf.predict(s.transform(x[test])) == y[test]).mean())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=3000)
    p.add_argument("--frames", type=int, default=4)
    args = p.parse_args()
    labels, folds = plan_clips(args.clips, 0)
    train, test = folds != 1, folds == 1
    settings = [("default", {})] + [("dfew-like", {"rest_anchor": a, "burst_share": b})
                                    for a, b in itertools.product((0.5, 0.75, 1.0), (0.4, 0.2))]
    print(f"| regime | changes | frame-level WAR | ordered WAR | ratio |  (T={args.frames}, fold 1, {args.clips} clips)")
    print("|---|---|---|---|---|")
    for regime, changes in settings:
        cfg = regime_config(regime, **changes)
        mean, ordered = features(dataset_motions(cfg, args.clips, 0), args.frames)
        a, b = score(mean, labels, train, test), score(ordered, labels, train, test)
        print(f"| {regime} | {changes or '-'} | {a:.3f} | {b:.3f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
