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

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from msstlib import features as FT
from msstlib.config import PRESETS
from msstlib.data import ClipDataset, EpochBatches, to_model_input
from msstlib.model import build_model
from msstlib.train import make_optimizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--annotations", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--backbone-weights", required=True)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    preset = PRESETS["cpu"]
    data = preset.data.__class__(**{**preset.data.__dict__, "frames": a.frames})
    torch.manual_seed(0)
    model = build_model(preset.model.replace(depths=(1, 1, 1), backbone_weights=a.backbone_weights))
    model.backbone.requires_grad_(False)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    model.backbone.eval()
    opt = make_optimizer(model, preset.train)
    store = FT.open_store(a.annotations, a.root, a.backbone_weights, 64, preset.model.stages)
    assert store is not None, "build the feature cache first: python -m msstlib.features ..."
    frames = ClipDataset(a.annotations, a.root, fold=1, train=True, cfg=data, raw=True)
    feats = FT.FeatureClipDataset(store, frames)
    wrapped = FT.FeatureInput(model, store.layout)
    batches = EpochBatches(len(frames), 16, shuffle=True, seed=0)

    def loader(ds):
        return DataLoader(ds, batch_sampler=batches, num_workers=0)

    in_memory = [b for _, b in zip(range(a.steps), loader(feats))]

    def step(net, x, y, bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def run(kind: str, bf16: bool = False) -> float:
        t, n = time.perf_counter(), 0
        if kind == "frames":
            for _, (x, y) in zip(range(a.steps), loader(frames)):
                step(model, to_model_input(x), y, bf16)
                n += len(y)
        elif kind == "features":
            for _, (x, y) in zip(range(a.steps), loader(feats)):
                step(wrapped, x.float(), y, bf16)
                n += len(y)
        else:
            for x, y in in_memory:
                step(wrapped, x.float(), y, bf16)
                n += len(y)
        return n / (time.perf_counter() - t)

    variants = {"frames: loader + backbone + rest": ("frames", False),
                "features: loader + rest": ("features", False),
                "features: rest only, in memory": ("memory", False),
                "features: loader + rest, bf16 autocast": ("features", True),
                "features: rest only, in memory, bf16": ("memory", True)}
    for kind, bf16 in variants.values():  # warm-up
        run(kind, bf16)
    rates = {name: [] for name in variants}
    for _ in range(a.repeats):
        for name, (kind, bf16) in variants.items():
            rates[name].append(run(kind, bf16))
    base = statistics.median(next(iter(rates.values())))
    print(f"T={a.frames}, batch 16, {a.steps} steps, {a.threads} thread(s), median of {a.repeats} interleaved runs:")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:42s} {med:7.1f} clips/s  {med / base:5.2f}x")
    load, mem = statistics.median(rates["features: loader + rest"]), statistics.median(
        rates["features: rest only, in memory"])
    print(f"  the feature-cache step runs at {100 * load / mem:.0f} % of the model alone (the loader's share: "
          f"{100 * (1 - load / mem):.0f} %)")


if __name__ == "__main__":
    main()
