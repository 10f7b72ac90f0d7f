"""The cpu preset's training step at D = 128 against narrower models, side by side in one run.

    python benchmarks/bench_embed_dim.py [--frames 4 16] [--threads 1] [--repeats 3]

The post-backbone step of a frozen-backbone row (MSSTNet depth 1, batch 16, AdamW) on packed
features in memory (the feature-cache path without its loader), for D = 128 with 4 heads (the
preset), D = 64 with 4 heads and D = 64 with 2 heads. Repetitions interleaved, medians of clips/s
and their ratio to D = 128. What a narrower model costs in accuracy is measured by training it
(`python -m msstlib.train ... --embed-dim 64`; benchmarks/README.md).
"""

import statistics
import sys
import time
from pathlib import Path

import torch

from msstlib import features
from msstlib.config import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = common.ArgumentParser(prog="python benchmarks/bench_embed_dim.py", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=common.positive, nargs="+", default=[4, 16])
    parser.add_argument("--threads", type=common.positive, default=1)
    parser.add_argument("--repeats", type=common.positive, default=3)
    parser.add_argument("--steps", type=common.positive, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = PRESETS["cpu"].model.stages
    layout, width = features.layout(64, stages), features.frame_width(64, stages)
    shapes = ((128, 4), (64, 4), (64, 2))
    for frames in args.frames:
        xs = [torch.randn(16, frames, width) for _ in range(args.steps)]
        y = torch.randint(0, 7, (16,))
        setups = {(dim, heads): common.frozen_setup(layout=layout, embed_dim=dim, num_heads=heads)
                  for dim, heads in shapes}
        speed = {shape: [] for shape in setups}
        for _ in range(args.repeats):
            for shape, setup in setups.items():
                start = time.perf_counter()
                for x in xs:
                    common.train_step(setup.net, setup.optimizer, x, y)
                speed[shape].append(16 * len(xs) / (time.perf_counter() - start))
        base = statistics.median(speed[shapes[0]])
        print(f"\nT={frames}, {args.threads} thread(s), medians of {args.repeats}:\n| D, heads | clips/s | ratio |\n"
              f"|---|---|---|")
        for (dim, heads), rates in speed.items():
            print(f"| {dim}, {heads} | {statistics.median(rates):.1f} | {statistics.median(rates) / base:.2f}x |")


if __name__ == "__main__":
    main()
