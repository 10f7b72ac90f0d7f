"""Clip loading throughput: decoding JPEG frames every time vs the memory-mapped frame cache, one run.

    python benchmarks/bench_loading.py --annotations DATA/prepared/annotations.csv --root DATA [--size 64]
        [--frames 16] [--clips 300]

Builds the cache if it is missing (timed separately), then reads the same test clips through
both paths and reports clips/s of each and their ratio (baseline: JPEG decoding).
"""

import argparse
import time

from msstlib.data import ClipDataset, DataConfig, build_cache, cache_paths


def rate(ds: ClipDataset, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--annotations", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--fold", type=int, default=1)
    a = p.parse_args()
    cfg = DataConfig(frames=a.frames, image_size=a.size)
    from pathlib import Path

    index = cache_paths(Path(a.annotations).parent / "cache", a.size)[1]
    if not index.exists():
        t = time.perf_counter()
        build_cache(a.annotations, a.root, a.size, progress=False)
        print(f"built the cache in {time.perf_counter() - t:.1f} s")
    decoded = ClipDataset(a.annotations, a.root, fold=a.fold, train=True, cfg=cfg, use_cache=False)
    cached = ClipDataset(a.annotations, a.root, fold=a.fold, train=True, cfg=cfg)
    assert cached.cached, "the cache is stale or missing"
    n = min(a.clips, len(decoded))
    slow, fast = rate(decoded, n), rate(cached, n)
    print(f"T={a.frames}, {a.size}px, {n} training clips: JPEG decoding {slow:.1f} clips/s, "
          f"memory-mapped cache {fast:.1f} clips/s, ratio {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
