"""torch.compile on the feature-cache training step (cpu preset, MSSTNet depth 1, batch 16, 1 thread).

    python benchmarks/bench_compile.py [T]        # T = frames, e.g. 4 or 16 (default 4)

Reports the compilation time (first pass) and the medians of 3 interleaved eager/compiled passes
over the same 15 in-memory batches (clips/s). Needs the study's SynDFER, backbone and feature cache
(make bench builds them).
"""
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from msstlib import features
from msstlib.data import ClipDataset, EpochBatches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = common.ArgumentParser(prog="python benchmarks/bench_compile.py", description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=common.positive, nargs="?", default=4, help="T (default 4)")
    frames = parser.parse_args(argv).frames
    torch.set_num_threads(1)
    study = common.STUDY
    store = common.require_features(study.annotations, study.root, study.weights)
    clips = ClipDataset(study.annotations, study.root, fold=1, train=True, cfg=common.cpu_data(frames), raw=True)
    loader = DataLoader(features.FeatureClipDataset(store, clips),
                        batch_sampler=EpochBatches(len(clips), 16, shuffle=True))
    batches = [batch for _, batch in zip(range(15), loader)]

    def make(compiled: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        setup = common.frozen_setup(weights=study.weights, layout=store.layout)
        return (torch.compile(setup.net) if compiled else setup.net), setup.optimizer

    def run(net, optimizer) -> float:
        start = time.perf_counter()
        for x, y in batches:
            common.train_step(net, optimizer, x.float(), y)
        return sum(len(y) for _, y in batches) / (time.perf_counter() - start)

    eager, compiled = make(False), make(True)
    start = time.perf_counter()
    run(*compiled)
    print(f"compilation + first pass: {time.perf_counter() - start:.1f} s")
    run(*eager)
    rates = {"eager": [], "compiled": []}
    for _ in range(3):
        rates["eager"].append(run(*eager))
        rates["compiled"].append(run(*compiled))
    eager_rate, compiled_rate = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"T={frames}: eager {eager_rate:.1f} clips/s, compiled {compiled_rate:.1f} clips/s, "
          f"ratio {compiled_rate / eager_rate:.2f}x")


if __name__ == "__main__":
    main()
