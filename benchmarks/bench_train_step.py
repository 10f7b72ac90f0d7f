"""Training-step throughput of the cpu preset: contiguous vs channels-last memory format, one run.

    python benchmarks/bench_train_step.py [--frames 4] [--threads 1] [--steps 10]

Reports clips/s of each and their ratio (the baseline is PyTorch's default contiguous format).
Frozen backbone, batch 16, MSSTNet-cpu depth 1, as the CPU study trains.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def clips_per_s(channels_last: bool, frames: int, steps: int, batch: int = 16) -> float:
    setup = common.frozen_setup(channels_last=channels_last)
    x, y = torch.randn(batch, frames, 3, 64, 64), torch.randint(0, 7, (batch,))
    for _ in range(3):
        common.train_step(setup.net, setup.optimizer, x, y)
    start = time.perf_counter()
    for _ in range(steps):
        common.train_step(setup.net, setup.optimizer, x, y)
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = common.ArgumentParser(prog="python benchmarks/bench_train_step.py", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=common.positive, default=4)
    parser.add_argument("--threads", type=common.positive, default=1)
    parser.add_argument("--steps", type=common.positive, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = clips_per_s(False, args.frames, args.steps)
    fast = clips_per_s(True, args.frames, args.steps)
    print(f"T={args.frames}, {args.threads} thread(s): contiguous {base:.1f} clips/s, "
          f"channels-last {fast:.1f} clips/s, ratio {fast / base:.2f}x")


if __name__ == "__main__":
    main()
