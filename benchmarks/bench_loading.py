"""Clip loading throughput at T=16: a peer-style loader vs ours (decoding, frame cache, feature cache).

    python benchmarks/bench_loading.py --annotations DATA/prepared/annotations.csv --root DATA \\
        --backbone-weights build/backbones/resnet18_syndfer_64px.pt [--size 64] [--frames 16] \\
        [--clips 320] [--workers 2] [--repeats 3]

Four loaders over the same training clips of fold 1, each through a DataLoader with the same
batch size and worker count, repetitions interleaved (A B C D, A B C D, ...), medians reported with
their ratio to the peer-style baseline:

* **peer-style**, written here after what Former-DFER's DFEW loader does (not its code): every
  item globs and sorts its clip folder, opens each sampled frame with PIL, and applies the
  transforms frame by frame (random resized crop and flip per frame with one set of parameters
  per clip, resize, stack, scale to [0, 1]); TSN sampling of T segments;
* **ours, decoding**: ``ClipDataset`` without its cache (torchvision decoding, clip-level transforms);
* **ours, frame cache**: ``ClipDataset`` reading the memory-mapped uint8 frames;
* **ours, feature cache**: ``FeatureClipDataset`` reading the frozen backbone's 16-bit features
  (what a frozen-backbone run loads instead of frames *and* the backbone's forward pass).

The frame and feature caches are built first if missing (timed separately).
"""

import argparse
import glob
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from msstlib import features as FT
from msstlib.data import ClipDataset, DataConfig, build_cache, cache_paths


class PeerStyleClips(Dataset):
    """Glob + PIL per frame + per-frame transforms, as DFER peers load clips (see the docstring)."""

    def __init__(self, root: str, clips: list[str], labels: list[int], frames: int, size: int):
        self.root, self.clips, self.labels, self.frames, self.size = root, clips, labels, frames, size

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        paths = sorted(glob.glob(os.path.join(self.root, self.clips[i], "*.jpg")))
        n = len(paths)
        seg = max(n // self.frames, 1)
        picks = [min(k * seg + random.randrange(seg), n - 1) for k in range(self.frames)]
        images = [Image.open(paths[p]).convert("RGB") for p in picks]
        w, h = images[0].size
        scale, side = random.uniform(0.6, 1.0), None
        side = int(min(w, h) * scale ** 0.5)
        x0, y0, flip = random.randint(0, w - side), random.randint(0, h - side), random.random() < 0.5
        out = []
        for im in images:  # frame by frame, as the peers' group transforms do
            im = im.crop((x0, y0, x0 + side, y0 + side)).resize((self.size, self.size), Image.BILINEAR)
            if flip:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(np.asarray(im))
        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)
        return x, self.labels[i]


def clips_per_s(ds, n: int, batch: int, workers: int) -> float:
    loader = DataLoader(torch.utils.data.Subset(ds, range(n)), batch_size=batch, num_workers=workers,
                        shuffle=False)
    t = time.perf_counter()
    seen = sum(len(y) for _, y in loader)
    return seen / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--annotations", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--backbone-weights", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--clips", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cfg = DataConfig(frames=a.frames, image_size=a.size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    if not cache_paths(Path(a.annotations).parent / "cache", a.size)[1].exists():
        t = time.perf_counter()
        build_cache(a.annotations, a.root, a.size, progress=False)
        print(f"built the frame cache in {time.perf_counter() - t:.1f} s")
    stages = ("layer1", "layer2", "layer3")
    store = FT.open_store(a.annotations, a.root, a.backbone_weights, a.size, stages)
    if store is None:
        t = time.perf_counter()
        FT.build(a.annotations, a.root, a.backbone_weights, a.size, stages, progress=False)
        store = FT.open_store(a.annotations, a.root, a.backbone_weights, a.size, stages)
        print(f"built the feature cache in {time.perf_counter() - t:.1f} s")
    decoded = ClipDataset(a.annotations, a.root, fold=1, train=True, cfg=cfg, use_cache=False)
    cached = ClipDataset(a.annotations, a.root, fold=1, train=True, cfg=cfg)
    assert cached.cached, "the frame cache is stale or missing"
    loaders = {
        "peer-style (glob + PIL per frame)": PeerStyleClips(a.root, decoded.clips, decoded.labels.tolist(), a.frames,
                                                            a.size),
        "ours, decoding (torchvision)": decoded,
        "ours, frame cache": cached,
        "ours, feature cache": FT.FeatureClipDataset(store, cached),
    }
    n = min(a.clips, len(decoded))
    rates = {name: [] for name in loaders}
    for _ in range(a.repeats):
        for name, ds in loaders.items():
            rates[name].append(clips_per_s(ds, n, a.batch, a.workers))
    base = statistics.median(rates["peer-style (glob + PIL per frame)"])
    print(f"T={a.frames}, {a.size}px frames, {n} training clips, batch {a.batch}, {a.workers} workers, "
          f"median of {a.repeats} interleaved repetitions:")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:36s} {med:8.1f} clips/s   {med / base:5.1f}x   (runs: {', '.join(f'{v:.0f}' for v in r)})")


if __name__ == "__main__":
    main()
