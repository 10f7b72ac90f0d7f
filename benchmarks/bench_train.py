"""Where a cpu-preset training step spends its time, measured side by side in one run.

    python benchmarks/bench_train.py --annotations DATA/prepared/annotations.csv --root DATA \\
        --backbone-weights build/backbones/resnet18_syndfer_64px.pt [--frames 4] [--threads 1] [--steps 20]

Frozen backbone, batch 16, MSSTNet-cpu depth 1 (the study's rows), fold 1 training clips. Variants,
repetitions interleaved, medians of clips/s and ratios to the first line:

* ``frames: loader + backbone + rest``: the step as it ran before the feature cache (frame cache loader);
* ``features: loader + rest``: the step with the feature cache (what a frozen-backbone run does now);
* ``features: rest only, in memory``: the same step on batches already in memory (the model alone:
  the loader's share is the gap to the line above);
* ``... bf16 autocast``: the last two with ``torch.autocast("cpu", torch.bfloat16)`` (measured, not
  adopted: see benchmarks/README.md).
"""

import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from msstlib import features
from msstlib.data import ClipDataset, EpochBatches, to_model_input

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = common.data_parser("bench_train.py", __doc__)
    parser.add_argument("--frames", type=common.positive, default=4)
    parser.add_argument("--threads", type=common.positive, default=1)
    parser.add_argument("--steps", type=common.positive, default=20)
    parser.add_argument("--repeats", type=common.positive, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    store = common.require_features(args.annotations, args.root, args.backbone_weights)
    setup = common.frozen_setup(weights=args.backbone_weights, layout=store.layout, channels_last=True)
    frames = ClipDataset(args.annotations, args.root, fold=1, train=True, cfg=common.cpu_data(args.frames), raw=True)
    feats = features.FeatureClipDataset(store, frames)
    batches = EpochBatches(len(frames), 16, shuffle=True, seed=0)

    def loader(dataset):
        return DataLoader(dataset, batch_sampler=batches, num_workers=0)

    in_memory = [batch for _, batch in zip(range(args.steps), loader(feats))]

    def run(kind: str, bf16: bool = False) -> float:
        start, seen = time.perf_counter(), 0
        if kind == "frames":
            for _, (x, y) in zip(range(args.steps), loader(frames)):
                common.train_step(setup.model, setup.optimizer, to_model_input(x), y, bf16)
                seen += len(y)
        else:
            source = zip(range(args.steps), loader(feats)) if kind == "features" else enumerate(in_memory)
            for _, (x, y) in source:
                common.train_step(setup.net, setup.optimizer, x.float(), y, bf16)
                seen += len(y)
        return seen / (time.perf_counter() - start)

    variants = {"frames: loader + backbone + rest": ("frames", False),
                "features: loader + rest": ("features", False),
                "features: rest only, in memory": ("memory", False),
                "features: loader + rest, bf16 autocast": ("features", True),
                "features: rest only, in memory, bf16": ("memory", True)}
    for kind, bf16 in variants.values():  # warm-up
        run(kind, bf16)
    rates = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (kind, bf16) in variants.items():
            rates[name].append(run(kind, bf16))
    base = statistics.median(next(iter(rates.values())))
    print(f"T={args.frames}, batch 16, {args.steps} steps, {args.threads} thread(s), median of {args.repeats} "
          f"interleaved runs:")
    for name, runs in rates.items():
        median = statistics.median(runs)
        print(f"  {name:42s} {median:7.1f} clips/s  {median / base:5.2f}x")
    load, alone = statistics.median(rates["features: loader + rest"]), statistics.median(
        rates["features: rest only, in memory"])
    print(f"  the feature-cache step runs at {100 * load / alone:.0f} % of the model alone (the loader's share: "
          f"{100 * (1 - load / alone):.0f} %)")


if __name__ == "__main__":
    main()
