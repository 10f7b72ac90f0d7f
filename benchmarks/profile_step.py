"""Profile the feature-cache training step (cpu preset, T=16, depth 1, batch 16, 1 thread) with torch.profiler.

    python benchmarks/profile_step.py

Prints the operators by self CPU time over 5 steps (after one warm-up step). Needs the study's
SynDFER, backbone and feature cache (make bench builds them).
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.profiler import ProfilerActivity, profile

from msstlib import features as FT
from msstlib.config import PRESETS
from msstlib.data import ClipDataset, EpochBatches
from msstlib.model import build_model
from msstlib.train import make_optimizer

torch.set_num_threads(1)
ANN, ROOT, W = "build/syndfer/prepared/annotations.csv", "build/syndfer", "build/backbones/resnet18_syndfer_64px.pt"
preset = PRESETS["cpu"]
data = preset.data.__class__(**{**preset.data.__dict__, "frames": 16})
store = FT.open_store(ANN, ROOT, W, 64, preset.model.stages)
feats = FT.FeatureClipDataset(store, ClipDataset(ANN, ROOT, fold=1, train=True, cfg=data, raw=True))
batches = [b for _, b in zip(range(6), DataLoader(feats, batch_sampler=EpochBatches(len(feats), 16, shuffle=True)))]
m = build_model(preset.model.replace(depths=(1, 1, 1), backbone_weights=W))
m.backbone.requires_grad_(False)
m.train()
m.backbone.eval()
net = FT.FeatureInput(m, store.layout)
opt = make_optimizer(m, preset.train)


def step(x, y):
    loss = F.cross_entropy(net(x.float()).float(), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


step(*batches[0])
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for x, y in batches[1:]:
        step(x, y)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
