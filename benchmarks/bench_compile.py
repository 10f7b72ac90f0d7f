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

from msstlib import features as FT
from msstlib.config import PRESETS
from msstlib.data import ClipDataset, EpochBatches
from msstlib.model import build_model
from msstlib.train import make_optimizer
from torch.utils.data import DataLoader
T = int(sys.argv[1]); torch.set_num_threads(1)
ann, root, w = "build/syndfer/prepared/annotations.csv", "build/syndfer", "build/backbones/resnet18_syndfer_64px.pt"
preset = PRESETS["cpu"]; data = preset.data.__class__(**{**preset.data.__dict__, "frames": T})
store = FT.open_store(ann, root, w, 64, preset.model.stages)
feats = FT.FeatureClipDataset(store, ClipDataset(ann, root, fold=1, train=True, cfg=data, raw=True))
batches = [b for _, b in zip(range(15), DataLoader(feats, batch_sampler=EpochBatches(len(feats), 16, shuffle=True)))]
def make(compiled):
    torch.manual_seed(0)
    m = build_model(preset.model.replace(depths=(1,1,1), backbone_weights=w)); m.backbone.requires_grad_(False)
    m.train(); m.backbone.eval()
    net = FT.FeatureInput(m, store.layout)
    return (torch.compile(net) if compiled else net), make_optimizer(m, preset.train)
def run(net, opt):
    t = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(net(x.float()).float(), y); opt.zero_grad(); loss.backward(); opt.step()
    return 15*16/(time.perf_counter()-t)
eager = make(False); comp = make(True)
t = time.perf_counter(); run(*comp); print("compile + first pass", round(time.perf_counter()-t, 1), "s")
run(*eager)
r = {"eager": [], "compiled": []}
for _ in range(3):
    r["eager"].append(run(*eager)); r["compiled"].append(run(*comp))
print(T, {k: round(statistics.median(v), 1) for k, v in r.items()})
