"""Training-step throughput of the cpu preset: contiguous vs channels-last memory format, one run.

    python benchmarks/bench_train_step.py [--frames 4] [--threads 1] [--steps 10]

Reports clips/s of each and their ratio (the baseline is PyTorch's default contiguous format).
Frozen backbone, batch 16, MSSTNet-cpu depth 1, as the CPU study trains.
"""

import argparse
import time

import torch

from msstlib.model import MSSTNet
from msstlib.train import PRESETS


def clips_per_s(channels_last: bool, frames: int, steps: int, batch: int = 16) -> float:
    torch.manual_seed(0)
    m = MSSTNet(PRESETS["cpu"].model.replace(depths=(1, 1, 1)))
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    m.backbone.requires_grad_(False)
    m.train()
    m.backbone.eval()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    x, y = torch.randn(batch, frames, 3, 64, 64), torch.randint(0, 7, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    base = clips_per_s(False, a.frames, a.steps)
    fast = clips_per_s(True, a.frames, a.steps)
    print(f"T={a.frames}, {a.threads} thread(s): contiguous {base:.1f} clips/s, channels-last {fast:.1f} clips/s, "
          f"ratio {fast / base:.2f}x")


if __name__ == "__main__":
    main()
