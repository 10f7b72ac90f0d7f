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

import glob
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from msstlib import features
from msstlib.data import ClipDataset, DataConfig, build_cache, cache_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


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


def main(argv: list[str] | None = None) -> None:
    parser = common.data_parser("bench_loading.py", __doc__)
    parser.add_argument("--size", type=common.positive, default=64)
    parser.add_argument("--frames", type=common.positive, default=16)
    parser.add_argument("--clips", type=common.positive, default=320)
    parser.add_argument("--batch", type=common.positive, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=common.positive, default=3)
    args = parser.parse_args(argv)
    cfg = DataConfig(frames=args.frames, image_size=args.size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    if not cache_paths(Path(args.annotations).parent / "cache", args.size)[1].exists():
        t = time.perf_counter()
        build_cache(args.annotations, args.root, args.size, progress=False)
        print(f"built the frame cache in {time.perf_counter() - t:.1f} s")
    stages = ("layer1", "layer2", "layer3")
    store = features.open_store(args.annotations, args.root, args.backbone_weights, args.size, stages)
    if store is None:
        t = time.perf_counter()
        features.build(args.annotations, args.root, args.backbone_weights, args.size, stages, progress=False)
        store = features.open_store(args.annotations, args.root, args.backbone_weights, args.size, stages)
        print(f"built the feature cache in {time.perf_counter() - t:.1f} s")
    decoded = ClipDataset(args.annotations, args.root, fold=1, train=True, cfg=cfg, use_cache=False)
    cached = ClipDataset(args.annotations, args.root, fold=1, train=True, cfg=cfg)
    assert cached.cached, "the frame cache is stale or missing"
    loaders = {
        "peer-style (glob + PIL per frame)": PeerStyleClips(args.root, decoded.clips, decoded.labels.tolist(),
                                                            args.frames, args.size),
        "ours, decoding (torchvision)": decoded,
        "ours, frame cache": cached,
        "ours, feature cache": features.FeatureClipDataset(store, cached),
    }
    n = min(args.clips, len(decoded))
    rates = {name: [] for name in loaders}
    for _ in range(args.repeats):
        for name, ds in loaders.items():
            rates[name].append(common.loader_clips_per_s(ds, n, args.batch, args.workers))
    base = statistics.median(rates["peer-style (glob + PIL per frame)"])
    print(f"T={args.frames}, {args.size}px frames, {n} training clips, batch {args.batch}, {args.workers} workers, "
          f"median of {args.repeats} interleaved repetitions:")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:36s} {med:8.1f} clips/s   {med / base:5.1f}x   (runs: {', '.join(f'{v:.0f}' for v in r)})")


if __name__ == "__main__":
    main()
