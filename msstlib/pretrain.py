"""Pre-train the ResNet-18 on single SynDFER frames (``python -m msstlib.pretrain``).

The synthetic analogue of the ImageNet / MS-Celeb initialisation DFER papers start from: a
ResNet-18 learns a *static* task -- regressing the eight movement values (brows, lids, cheeks, lip
corners, nose, jaw, lip stretch) that drew a single frame -- on frames of a **separate** SynDFER
draw (its own seed, never the study's clips, so no test clip is seen). The CPU study then freezes
it and shares it between every row (README, "The CPU preset"). This is a deviation from the
paper, which trains end to end from its own initialisation; the ``paper`` preset does not use it.

The result is a torchvision ResNet-18 state dict (the 8-output regression head is dropped), plus a
``.json`` beside it with the parameters; a rerun with the same parameters reuses it (cached step).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError


PRETRAIN_THREADS = 2  # torch's default on the two-core development machines that made the committed backbones


@dataclass(frozen=True)
class PretrainConfig:
    """Args:
        size: frame side in pixels (the cpu preset's 64).
        clips: clips rendered for pre-training; ``frames_per_clip`` frames are taken from each.
        seed: seed of the pre-training draw (distinct from the study's default seed 0 by design).
        epochs, batch_size, lr, weight_decay: AdamW with a cosine schedule.
    """

    size: int = 64
    clips: int = 2500
    frames_per_clip: int = 4
    seed: int = 1_000_003
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        problems = [f"--{name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 1"
                    for name in ("clips", "frames_per_clip", "epochs", "batch_size") if getattr(self, name) < 1]
        if self.size < 1:
            problems.append(f"--size {self.size}: a frame size is a positive number of pixels, e.g. 64")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: expected a learning rate > 0")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay {self.weight_decay}: expected >= 0")
        if problems:
            raise ConfigError("; ".join(problems))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="where to write the ResNet-18 state dict (.pt)")
    for name, value in asdict(PretrainConfig()).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return p


if __name__ == "__main__":  # flags are checked before torch loads (seconds): a wrong one is reported at once
    build_parser().parse_args()

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import resnet18
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from . import files, inputs
from . import paths
from .data import IMAGENET_MEAN, IMAGENET_STD


def render_frames(cfg: PretrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames ``(M, 3, S, S)`` and their float movement values ``(M, 8)`` from a fresh draw."""
    from data_prep.synthetic import SynDFERConfig, clip_motion, plan_clips
    from data_prep.syndfer_render import render_clip

    syn = SynDFERConfig(size=cfg.size)
    labels, _ = plan_clips(cfg.clips, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    frames, targets = [], []
    for i in tqdm(range(cfg.clips), desc="rendering pre-training frames", mininterval=5):
        motion = clip_motion(i, int(labels[i]), syn, cfg.seed)
        pixels, _ = render_clip(motion, cfg.size)
        pick = rng.choice(motion.num_frames, size=min(cfg.frames_per_clip, motion.num_frames), replace=False)
        frames.append(torch.from_numpy(pixels[pick]).permute(0, 3, 1, 2))
        targets.append(torch.from_numpy(motion.au[pick]).float())
    return torch.cat(frames), torch.cat(targets)


def pretrain(cfg: PretrainConfig, out: str | Path, progress: bool = True) -> Path:
    """Train and save the backbone; reuse ``out`` when it was made with the same parameters."""
    out = Path(out)
    meta_path = out.with_suffix(".json")
    if out.exists() and meta_path.exists() and files.read_json(meta_path, "the backbone's parameters").get("config") == asdict(cfg):
        print(f"pre-trained backbone up to date: {paths.relative(out)}")
        return out
    # The weights depend on the thread count (reductions split differently), so it is fixed: a
    # machine with more cores pre-trains the same backbone as the two-core one (README "Builds").
    previous = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _train(cfg, out, meta_path, progress)
    finally:
        torch.set_num_threads(previous)


def _train(cfg: PretrainConfig, out: Path, meta_path: Path, progress: bool = True) -> Path:
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    frames, targets = render_frames(cfg)
    n_val = len(frames) // 10
    scale = targets[n_val:].std(0)
    net = resnet18(weights=None, num_classes=targets.shape[1]).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-(len(frames) - n_val) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    augment = v2.Compose([v2.RandomResizedCrop(cfg.size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()])

    def prep(x: torch.Tensor, train: bool) -> torch.Tensor:
        if train:
            x = torch.stack([augment(f) for f in x])
        x = TF.normalize(x.float() / 255, IMAGENET_MEAN, IMAGENET_STD)
        return x.contiguous(memory_format=torch.channels_last)  # faster convolutions on the CPU (benchmarks/)

    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(frames) - n_val) + n_val
        bar = tqdm(order.split(cfg.batch_size), desc=f"pre-train epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, mininterval=10)
        for idx in bar:
            loss = F.mse_loss(net(prep(frames[idx], True)) / scale, targets[idx] / scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(prep(frames[i : min(i + 256, n_val)], False)) for i in range(0, n_val, 256)])
    r2 = 1 - ((pred - targets[:n_val]) ** 2).mean(0) / targets[:n_val].var(0)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out) as tmp:
        torch.save(state, tmp)
    meta = {"config": asdict(cfg), "held_out_r2_per_dimension": [round(float(v), 4) for v in r2],
            "seconds": round(time.time() - t0, 1), "frames": len(frames)}
    files.write_json(meta_path, meta, indent=1)
    print(f"pre-trained backbone -> {paths.relative(out)}; held-out R^2 per movement dimension: "
          + " ".join(f"{v:.2f}" for v in r2) + f" ({meta['seconds']} s)")
    if (r2 < 0).any():
        print(f"  ({int((r2 < 0).sum())} of {len(r2)} R^2 below 0: worse than predicting each movement's mean. "
              f"Expected after a short pre-training ({cfg.epochs} epoch(s) on {cfg.clips} clips, e.g. the quick run's "
              f"smoke test); the study's full pre-training ({PretrainConfig.epochs} epochs on {PretrainConfig.clips} "
              f"clips) is the one its results use.)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    out = args.pop("out")
    try:
        cfg = PretrainConfig(**args)
        inputs.check_out(Path(out).parent, "--out")
        pretrain(cfg, out)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
