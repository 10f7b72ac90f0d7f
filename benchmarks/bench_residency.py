"""Reading the feature cache when its pages were evicted vs pinned in memory, side by side in one run.

    python benchmarks/bench_residency.py --annotations DATA/prepared/annotations.csv --root DATA \\
        --backbone-weights build/backbones/resnet18_syndfer_64px.pt [--frames 4] [--clips 1200] [--repeats 3]

One pass of a training epoch's draws (fold 1's training clips, the study's T, batch 16, no
workers: the CPU default) through ``FeatureClipDataset``, the loader a frozen-backbone row uses.
Repetitions interleave two states of the cache's pages:

* **evicted**: the file's pages are dropped from the page cache first (``posix_fadvise(DONTNEED)``),
  which is what a machine that reclaims idle page cache does to them between two touches (this
  project's VMs page out what was not read for 60 s; a row at T = 4 touches each page about once
  an epoch, and a five-fold study's rows start minutes apart);
* **pinned**: the pages locked in memory by :func:`msstlib.data.keep_resident` first (what a run and
  the study's parent process now do); the lock's own time, reading the whole file once, is
  reported apart.

Medians of clips/s and their ratio. Needs the feature cache (``python -m msstlib.features``).
"""

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from msstlib import features
from msstlib.data import ClipDataset, EpochBatches, keep_resident

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def drop_pages(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = common.data_parser("bench_residency.py", __doc__)
    parser.add_argument("--frames", type=common.positive, default=4)
    parser.add_argument("--clips", type=int, default=1200, help="training clips per pass (0: all of fold 1's)")
    parser.add_argument("--repeats", type=common.positive, default=3)
    args = parser.parse_args(argv)
    clips = ClipDataset(args.annotations, args.root, fold=1, train=True, cfg=common.cpu_data(args.frames), raw=True)
    n = min(args.clips or len(clips), len(clips))

    def store_now() -> features.FeatureStore:
        return common.require_features(args.annotations, args.root, args.backbone_weights)

    def one_pass(epoch: int) -> float:
        ds = features.FeatureClipDataset(store_now(), clips)
        batches = EpochBatches(len(clips), 16, shuffle=True, seed=0)
        batches.set_epoch(epoch)  # another epoch's draws each pass: nothing is read twice by chance
        t, seen = time.perf_counter(), 0
        for x, _ in DataLoader(ds, batch_sampler=batches, num_workers=0):
            seen += len(x)
            if seen >= n:
                break
        return seen / (time.perf_counter() - t)

    store = store_now()
    path, size_gb = store.path, store.array.nbytes / 1e9
    del store
    speeds = {"evicted": [], "pinned": []}
    lock_s = []
    for rep in range(args.repeats):
        drop_pages(path)
        speeds["evicted"].append(one_pass(2 * rep))
        pin = store_now()
        drop_pages(path)
        t = time.perf_counter()
        state = keep_resident(pin.array)
        lock_s.append(time.perf_counter() - t)
        speeds["pinned"].append(one_pass(2 * rep + 1))
        del pin  # unpinned
        print(f"repeat {rep + 1}: evicted {speeds['evicted'][-1]:.0f} clips/s, pinned ({state}) "
              f"{speeds['pinned'][-1]:.0f} clips/s, pinning took {lock_s[-1]:.1f} s", flush=True)
    ev, pi = statistics.median(speeds["evicted"]), statistics.median(speeds["pinned"])
    print(f"\nT={args.frames}, {n} clips per pass, cache {size_gb:.2f} GB, medians of {args.repeats}:")
    print(f"| cache pages | clips/s | ratio |\n|---|---|---|\n| evicted | {ev:.0f} | 1.00x |\n"
          f"| pinned | {pi:.0f} | {pi / ev:.1f}x |")
    print(f"pinning (reading the whole file once, then shared by every job): median {np.median(lock_s):.1f} s")


if __name__ == "__main__":
    main()
