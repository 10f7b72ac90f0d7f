"""torch.compile on the feature-cache training step (cpu preset, MSSTNet depth 1, batch 16, 1 thread).

    python benchmarks/bench_compile.py T        # T = frames, e.g. 4 or 16

Reports the compilation time (first pass) and the medians of 3 interleaved eager/compiled passes
over the same 15 in-memory batches (clips/s). Needs the study's SynDFER, backbone and feature cache
(make bench builds them).
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from msstlib import features as FT
from msstlib.config import PRESETS
from msstlib.data import ClipDataset, EpochBatches
from msstlib.model import build_model
from msstlib.train import make_optimizer

ANN, ROOT, WEIGHTS = "build/syndfer/prepared/annotations.csv", "build/syndfer", "build/backbones/resnet18_syndfer_64px.pt"


def main(frames: int) -> None:
    torch.set_num_threads(1)
    preset = PRESETS["cpu"]
    data = preset.data.__class__(**{**preset.data.__dict__, "frames": frames})
    store = FT.open_store(ANN, ROOT, WEIGHTS, 64, preset.model.stages)
    feats = FT.FeatureClipDataset(store, ClipDataset(ANN, ROOT, fold=1, train=True, cfg=data, raw=True))
    loader = DataLoader(feats, batch_sampler=EpochBatches(len(feats), 16, shuffle=True))
    batches = [b for _, b in zip(range(15), loader)]

    def make(compiled: bool):
        torch.manual_seed(0)
        m = build_model(preset.model.replace(depths=(1, 1, 1), backbone_weights=WEIGHTS))
        m.backbone.requires_grad_(False)
        m.train()
        m.backbone.eval()
        net = FT.FeatureInput(m, store.layout)
        return (torch.compile(net) if compiled else net), make_optimizer(m, preset.train)

    def run(net, opt) -> float:
        t = time.perf_counter()
        for x, y in batches:
            loss = F.cross_entropy(net(x.float()).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return sum(len(y) for _, y in batches) / (time.perf_counter() - t)

    eager, comp = make(False), make(True)
    t = time.perf_counter()
    run(*comp)
    print(f"compilation + first pass: {time.perf_counter() - t:.1f} s")
    run(*eager)
    rates = {"eager": [], "compiled": []}
    for _ in range(3):
        rates["eager"].append(run(*eager))
        rates["compiled"].append(run(*comp))
    e, c = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"T={frames}: eager {e:.1f} clips/s, compiled {c:.1f} clips/s, ratio {c / e:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
