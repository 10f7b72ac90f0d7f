"""Why does the paper's SGD not train the new layers in the CPU set-up? Update sizes per module.

    python results/calibration/sgd_diagnosis.py --annotations DATA/prepared/annotations.csv --root DATA \
        --backbone BACKBONE.pt [--steps 150]

Trains the cpu-preset MSSTNet (T=4, depth 1, frozen pre-trained backbone) for a few steps with
SGD (lr 0.1, momentum 0.9, the paper's) and with AdamW (lr 1e-3, the cpu preset's), and prints, per
module group, the mean gradient norm and the relative update ||dW|| / ||W|| per step, plus the
training loss. Prints a table; writes nothing.
"""

import argparse
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from msstlib.data import ClipDataset, DataConfig
from msstlib.model import build_model
from msstlib.train import PRESETS, TrainConfig, make_optimizer

GROUPS = {"MELayer E": "melayers.", "temporal PE": ".pos", "T-Former attn": ".attn.", "T-Former MLP": ".mlp.",
          "LayerNorms": ".ln", "head": "head."}


def group_of(name: str) -> str:
    if name.endswith(".pos"):
        return "temporal PE"
    for g, key in GROUPS.items():
        if key in name and g != "temporal PE":
            return g
    return "other"


def run(opt_cfg: TrainConfig, loader, backbone: str, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = PRESETS["cpu"].model.replace(depths=(1, 1, 1), backbone_weights=backbone)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    model.backbone.requires_grad_(False)
    model.train()
    model.backbone.eval()
    opt = make_optimizer(model, opt_cfg)
    stats, losses = defaultdict(list), []
    it = iter(loader)
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        loss = F.cross_entropy(model(x), y)
        if not torch.isfinite(loss):
            break  # diverged: the statistics below cover the steps before it
        opt.zero_grad()
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        if not all(torch.isfinite(g).all() for g in grads.values()):
            break
        opt.step()
        # Per group: gradient norm, and the relative update ||dW|| / ||W|| over all its tensors together.
        sq = defaultdict(lambda: [0.0, 0.0, 0.0])  # grad^2, dW^2, W^2
        for n, p in model.named_parameters():
            if p.requires_grad:
                acc = sq[group_of(n)]
                acc[0] += grads[n].pow(2).sum().item()
                acc[1] += (p.detach() - before[n]).pow(2).sum().item()
                acc[2] += before[n].pow(2).sum().item()
        for g, (g2, d2, w2) in sq.items():
            stats[(g, "grad")].append(g2 ** 0.5)
            stats[(g, "rel_update")].append((d2 / max(w2, 1e-12)) ** 0.5)
        losses.append(loss.item())
    return {"stats": {k: float(np.median(v)) for k, v in stats.items()},
            "max_update": {g: float(np.max(v)) for (g, kind), v in stats.items() if kind == "rel_update"},
            "steps": len(losses), "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:]))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--annotations", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--steps", type=int, default=150)
    a = p.parse_args()
    ds = ClipDataset(a.annotations, a.root, fold=1, train=True, cfg=DataConfig(
        frames=4, image_size=64, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)))
    loader = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    runs = {"SGD 0.1 (paper)": TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
            "AdamW 1e-3 (cpu)": PRESETS["cpu"].train}
    res = {k: run(v, loader, a.backbone, a.steps) for k, v in runs.items()}
    print(f"median over the finite steps (of {a.steps}) and the parameters of each group (T=4, depth 1, batch 16)")
    print(f"{'group':16s}" + "".join(f"{k + ' grad':>22s}{k + ' dW/W':>22s}" for k in res))
    for g in [*GROUPS, "other"]:
        if (g, "grad") not in res[next(iter(res))]["stats"]:
            continue
        print(f"{g:16s}" + "".join(f"{r['stats'][(g, 'grad')]:>22.2e}{r['stats'][(g, 'rel_update')]:>22.2e}"
                                   for r in res.values()))
    for k, r in res.items():
        print(f"{k}: {r['steps']} finite steps; training loss {r['loss_first']:.3f} (first 20) -> "
              f"{r['loss_last']:.3f} (last 20); largest relative update per group: "
              + ", ".join(f"{g} {v:.2g}" for g, v in r["max_update"].items()))


if __name__ == "__main__":
    main()
