"""Why the ``paper`` preset's loss does not fall at the paper's lr 0.1: the same batches, the same
initialisation, one change at a time (issue 29).

    python benchmarks/paper_stability.py [--steps 40] [--batch 8] [--frames 4] [--size 128]
        [--clips 1000] [--render-size 224] [--data build/bench/syndfer224_1000] [--threads 0]
        [--arm NAME=KEY:VALUE,KEY:VALUE ...] [--seed 0] [--device cpu]

``bench_paper_preset.py`` found MSSTNet's loss at 2.31, 67.8, 800, 1,714 over its first four steps
(batch 32, T = 16) and NaN from step 7 at batch 8, while Table 3's ResNet-18 + LSTM beside it stayed
near chance. This script asks which part of the recipe that is. Every *arm* is the paper preset end
to end (a randomly initialised ResNet-18 trained with the rest, SGD with momentum 0.9 and weight
decay 1e-4) with the overrides its name lists, on fold 1's training clips of a SynDFER draw in the
order one epoch draws them. Every arm sees the same ``--steps`` batches (drawn once, before any arm
trains) and starts from the same seed. The default arms:

* ``paper``: the preset as written (lr 0.1 for every layer, no clipping, no warm-up);
* ``lr 0.01``, ``lr 0.001``: a tenth, a hundredth of the learning rate everywhere;
* ``new layers lr 0.01``: the backbone at the paper's 0.1, everything after it (MELayers,
  T-Formers, classifier) at 0.01 (``backbone_lr``);
* ``clip 1``: the paper's lr with the global gradient norm clipped to 1 (``grad_clip``), as
  ``msstlib.loop`` clips it;
* ``embed norm``: the paper's lr with a LayerNorm on each patch before the MELayer projection
  (``embed_norm``, the cpu preset's deviation);
* ``head norm``: the paper's lr with a LayerNorm on the pooled vector the classifier reads
  (``head_norm``; eq. 12 has none), and ``head norm, clip 1`` with the clipping too;
* ``R18+LSTM``: Table 3's ResNet-18 + LSTM at the paper's recipe, the reference that does train.

Per step it records the loss, the gradient norm before any clipping, the norm of the vector the
classifier reads (per clip, the batch's mean) and the largest logit; at step 1 also the gradient
norm of each part of the model (``head.weight``, ``melayers.0``, ``backbone.stem``, ...). An arm stops at its first
non-finite loss. Printed: every step of every arm, then one table (loss at step 1, mean of the
last ten steps, the largest loss, the first non-finite step, the classifier input norm and the
gradient norm at step 1). The last line is JSON: ``{"arms": {name: {...}}, "steps", "batch",
"frames", "size", "threads", "seed"}``.

``--steps`` beyond one epoch of fold 1 run on into the next epochs (each in its own order, as a
training run draws them). ``--device cuda`` runs the arms on a GPU (fp32, as the CPU does), where
the paper's T = 16 and hundreds of steps take seconds per arm.

The frame count defaults to 4, not the paper's 16, to keep nine arms to minutes on two CPU cores:
the temporal attention sees 4 frames instead of 16, everything else (widths, depths 2-2-2, the
backbone, the recipe) is the paper preset's. ``--frames 16`` runs it as is.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

DEFAULT_ARMS = {
    "paper": {},
    "lr 0.01": {"lr": 0.01},
    "lr 0.001": {"lr": 0.001},
    "new layers lr 0.01": {"lr": 0.01, "backbone_lr": 0.1},
    "clip 1": {"grad_clip": 1.0},
    "embed norm": {"embed_norm": True},
    "head norm": {"head_norm": True},
    "head norm, clip 1": {"head_norm": True, "grad_clip": 1.0},
    "R18+LSTM": {"variant": "resnet18-lstm"},
}


def parse_arm(text: str) -> tuple[str, dict]:
    """``NAME=KEY:VALUE,KEY:VALUE`` (VALUE read as JSON, else kept as a string) -> (NAME, overrides)."""
    name, sep, body = text.partition("=")
    if not sep or not name.strip():
        common.fail(f"--arm {text!r}: expected NAME=KEY:VALUE[,KEY:VALUE...] (e.g. 'clip 1=grad_clip:1.0'), "
                    f"or NAME= for the preset as written")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition(":")
        if not sep:
            common.fail(f"--arm {text!r}: {item!r} is not KEY:VALUE")
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value.strip()
    return name.strip(), overrides


def build_parser() -> common.ArgumentParser:
    parser = common.ArgumentParser(prog="python benchmarks/paper_stability.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=common.positive, default=40, help="training steps per arm")
    parser.add_argument("--batch", type=common.positive, default=8, help="clips per step")
    parser.add_argument("--frames", type=common.positive, default=4, help="T (the paper's is 16; see the docstring)")
    parser.add_argument("--size", type=common.positive, default=None, help="model input px (default: the preset's 128)")
    parser.add_argument("--clips", type=common.positive, default=1000, help="clips of the SynDFER draw (>= 35)")
    parser.add_argument("--render-size", type=common.positive, default=224, help="SynDFER frame px (DFEW: 224)")
    parser.add_argument("--data", type=Path, default=None, help="where the draw lives (default build/bench/...)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--arm", action="append", default=None, metavar="NAME=KEY:VALUE,...",
                        help="an arm of your own (repeatable; replaces the default arms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (the arms run there, in fp32)")
    return parser


def split_variant(overrides: dict) -> tuple[str, dict]:
    """An arm's overrides as (variant, the other config fields)."""
    return overrides.get("variant", "msstnet"), {k: v for k, v in overrides.items() if k != "variant"}


def check(args, arms: dict) -> None:
    from msstlib.config import ConfigError

    if args.clips < 35:
        common.fail(f"--clips {args.clips}: SynDFER needs at least 35 clips (every class in every test fold)")
    if args.threads < 0:
        common.fail(f"--threads {args.threads}: expected 0 (torch's default) or more")
    for name, overrides in arms.items():
        try:
            variant, rest = split_variant(overrides)
            common.paper_configs(variant, frames=args.frames, size=args.size, overrides=rest)
        except (ConfigError, ValueError, TypeError) as exc:
            common.fail(f"--arm {name!r}: {str(exc).splitlines()[0]}")


def run_arm(overrides: dict, batches: list, frames: int, size: int | None, seed: int, device="cpu",
            normalize: bool = True) -> list[dict]:
    """Train one arm over the batches (uint8 frames, made the model's input on ``device`` step by
    step); one record per step, stopping at the first non-finite loss."""
    import torch
    import torch.nn.functional as functional

    from msstlib.data import to_model_input

    variant, rest = split_variant(overrides)
    run = common.paper_setup(variant, frames=frames, size=size, seed=seed, overrides=rest, device=device)
    model, optimizer, train_cfg = run.model, run.optimizer, run.configs[1]
    seen = {}
    model.head.register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("norm", inputs[0].detach().norm(dim=-1).mean()))
    records = []
    for step, (frames_u8, y) in enumerate(batches, 1):
        t = time.perf_counter()
        x, y = to_model_input(frames_u8, normalize, device), y.to(device)
        logits = model(x)
        loss = functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:
            parts = grad_parts(model)
        # The total norm before clipping; clipping (when the arm asks) as msstlib.loop does it.
        grad = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip or math.inf)
        optimizer.step()
        loss = loss.detach()
        common.synchronize(device)
        records.append({"step": step, "loss": float(loss), "grad_norm": float(grad), "head_input_norm": float(seen["norm"]),
                        "max_logit": float(logits.detach().abs().max()), "s": time.perf_counter() - t})
        if not math.isfinite(records[-1]["loss"]):
            break
    records[0]["grad_parts"] = parts
    return records


def grad_parts(model) -> dict[str, float]:
    """The gradient norm of each part of the model (parameters grouped by the first two parts of
    their names: ``head.weight``, ``melayers.0``, ``backbone.stem``, ``tformers.1``, ...), largest first."""
    squares: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            key = ".".join(name.split(".")[:2])
            squares[key] = squares.get(key, 0.0) + float(p.grad.detach().float().norm()) ** 2
    return {k: round(v ** 0.5, 4) for k, v in sorted(squares.items(), key=lambda kv: -kv[1])}


def summary(records: list[dict], steps: int) -> dict:
    losses = [r["loss"] for r in records]
    finite = [v for v in losses if math.isfinite(v)]
    bad = next((r["step"] for r in records if not math.isfinite(r["loss"])), None)
    last = losses[-10:] if len(records) == steps and bad is None else []

    def value(v):
        return round(v, 4) if v is not None and math.isfinite(v) else None

    return {"loss_step1": value(losses[0]), "loss_last10_mean": value(statistics.fmean(last)) if last else None,
            "loss_max": value(max(finite)) if finite else None, "first_nonfinite_step": bad,
            "head_input_norm_step1": value(records[0]["head_input_norm"]),
            "grad_norm_step1": value(records[0]["grad_norm"]), "grad_parts_step1": records[0]["grad_parts"],
            "s_per_step": value(statistics.median(r["s"] for r in records[1:])) if len(records) > 1 else None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    arms = dict(parse_arm(a) for a in args.arm) if args.arm else DEFAULT_ARMS
    check(args, arms)

    import torch
    from torch.utils.data import DataLoader

    from msstlib.data import ClipDataset, EpochBatches
    from msstlib.paths import relative

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        common.fail(f"--device {args.device!r}: expected cpu, cuda or cuda:K")
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        common.fail(f"--device {args.device!r}: not available here (expected cpu, or cuda where a GPU is present)")
    data = args.data or common.ROOT / "build" / "bench" / f"syndfer{args.render_size}_{args.clips}"
    annotations, root = common.syndfer(data, args.clips, args.render_size, seed=args.seed)
    model_cfg, _, data_cfg = common.paper_configs(frames=args.frames, size=args.size)
    common.frame_cache(annotations, root, model_cfg.image_size)
    train_set = ClipDataset(annotations, root, fold=1, train=True, cfg=data_cfg, seed=args.seed, raw=True)
    sampler = EpochBatches(len(train_set), args.batch, shuffle=True, seed=args.seed)
    batches, epoch = [], 0  # drawn once (uint8, epoch after epoch): every arm trains on these same clips
    while len(batches) < args.steps:
        sampler.set_epoch(epoch)
        before = len(batches)
        for x, y in DataLoader(train_set, batch_sampler=sampler, num_workers=0):
            batches.append((x, y))
            if len(batches) == args.steps:
                break
        if len(batches) == before:
            common.fail(f"--batch {args.batch}: fold 1's {len(train_set)} training clips hold no batch; ask for less")
        epoch += 1
    print(f"paper preset, end to end: T={args.frames}, {model_cfg.image_size} px, batch {args.batch}, on {device}, "
          f"{torch.get_num_threads()} thread(s), {args.steps} steps ({epoch} epoch(s)) of fold 1's {len(train_set)} training clips "
          f"({relative(data)}); every arm on the same batches from seed {args.seed}", flush=True)
    results = {}
    for name, overrides in arms.items():
        print(f"\n== {name}: {overrides or 'the preset as written'}", flush=True)
        print("step      loss   grad_norm  head_in_norm  max_logit     s", flush=True)
        records = run_arm(overrides, batches, args.frames, args.size, args.seed, device, data_cfg.normalize)
        for r in records:
            print(f"{r['step']:>4} {r['loss']:>9.4g} {r['grad_norm']:>11.4g} {r['head_input_norm']:>13.4g} "
                  f"{r['max_logit']:>10.4g} {r['s']:>5.2f}", flush=True)
        print("gradient norm by part at step 1: " + ", ".join(f"{k} {v:.3g}" for k, v in
                                                               list(records[0]["grad_parts"].items())[:6]), flush=True)
        results[name] = {"overrides": overrides, **summary(records, args.steps),
                         "losses": [round(r["loss"], 4) if math.isfinite(r["loss"]) else None for r in records]}
    print(f"\nchance: ln 7 = {math.log(7):.3f}")
    print(f"{'arm':<22} {'step 1':>8} {'last 10':>8} {'max':>10} {'NaN at':>7} {'head in':>8} {'grad 1':>9}")
    for name, s in results.items():
        def cell(v, fmt):
            return "-" if v is None else format(v, fmt)
        print(f"{name:<22} {cell(s['loss_step1'], '.3f'):>8} {cell(s['loss_last10_mean'], '.3f'):>8} "
              f"{cell(s['loss_max'], '.4g'):>10} {cell(s['first_nonfinite_step'], 'd'):>7} "
              f"{cell(s['head_input_norm_step1'], '.1f'):>8} {cell(s['grad_norm_step1'], '.3g'):>9}")
    print(json.dumps({"arms": results, "steps": args.steps, "batch": args.batch, "frames": args.frames,
                      "size": model_cfg.image_size, "threads": torch.get_num_threads(), "seed": args.seed,
                      "device": str(device), "epochs": epoch}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
