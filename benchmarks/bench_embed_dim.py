"""The cpu preset's training step at D = 128 against narrower models, side by side in one run.

    python benchmarks/bench_embed_dim.py [--frames 4 16] [--threads 1] [--repeats 3]

The post-backbone step of a frozen-backbone row (MSSTNet depth 1, batch 16, AdamW) on packed
features in memory (the feature-cache path without its loader), for D = 128 with 4 heads (the
preset), D = 64 with 4 heads and D = 64 with 2 heads. Repetitions interleaved, medians of clips/s
and their ratio to D = 128. What a narrower model costs in accuracy is measured by training it
(`python -m msstlib.train ... --embed-dim 64`; benchmarks/README.md).
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from msstlib import features as FT
from msstlib.config import PRESETS
from msstlib.model import build_model
from msstlib.train import make_optimizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, nargs="+", default=[4, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    preset = PRESETS["cpu"]
    layout, width = FT.layout(64, preset.model.stages), FT.frame_width(64, preset.model.stages)
    shapes = ((128, 4), (64, 4), (64, 2))
    for frames in a.frames:
        xs = [torch.randn(16, frames, width) for _ in range(a.steps)]
        y = torch.randint(0, 7, (16,))
        nets = {}
        for dim, heads in shapes:
            torch.manual_seed(0)
            m = build_model(preset.model.replace(depths=(1, 1, 1), embed_dim=dim, num_heads=heads))
            m.backbone.requires_grad_(False)
            m.train()
            nets[(dim, heads)] = (FT.FeatureInput(m, layout), make_optimizer(m, preset.train))
        speed = {k: [] for k in nets}
        for _ in range(a.repeats):
            for k, (net, opt) in nets.items():
                t = time.perf_counter()
                for x in xs:
                    loss = F.cross_entropy(net(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                speed[k].append(16 * len(xs) / (time.perf_counter() - t))
        base = statistics.median(speed[shapes[0]])
        print(f"\nT={frames}, {a.threads} thread(s), medians of {a.repeats}:\n| D, heads | clips/s | ratio |\n|---|---|---|")
        for k, v in speed.items():
            print(f"| {k[0]}, {k[1]} | {statistics.median(v):.1f} | {statistics.median(v) / base:.2f}x |")


if __name__ == "__main__":
    main()
