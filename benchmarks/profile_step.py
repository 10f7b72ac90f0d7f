"""Profile the feature-cache training step (cpu preset, T=16, depth 1, batch 16, 1 thread) with torch.profiler.

    python benchmarks/profile_step.py

Prints the operators by self CPU time over 5 steps (after one warm-up step). Needs the study's
SynDFER, backbone and feature cache (make bench builds them).
"""
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader

from msstlib import features
from msstlib.data import ClipDataset, EpochBatches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    study = common.STUDY
    store = common.require_features(study.annotations, study.root, study.weights)
    clips = ClipDataset(study.annotations, study.root, fold=1, train=True, cfg=common.cpu_data(16), raw=True)
    loader = DataLoader(features.FeatureClipDataset(store, clips),
                        batch_sampler=EpochBatches(len(clips), 16, shuffle=True))
    batches = [batch for _, batch in zip(range(6), loader)]
    setup = common.frozen_setup(weights=study.weights, layout=store.layout)
    x, y = batches[0]
    common.train_step(setup.net, setup.optimizer, x.float(), y)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, y in batches[1:]:
            common.train_step(setup.net, setup.optimizer, x.float(), y)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))


if __name__ == "__main__":
    main()
