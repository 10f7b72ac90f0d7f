"""The ``paper`` preset at its real size on this CPU: an end-to-end training step, where its time goes,
and whether an input pipeline can feed a GPU (issue 29).

    python benchmarks/bench_paper_preset.py [--steps 5] [--batch 32] [--frames 16] [--size 128]
        [--clips 1000] [--render-size 224] [--data build/bench/syndfer224_1000] [--threads 0]
        [--baseline resnet18-lstm] [--loader-sizes 112 128] [--loader-clips 512] [--workers 1 2]
        [--repeats 3] [--mfu 0.4]

What runs. A SynDFER draw rendered at DFEW's frame size (224 x 224 JPEGs, ``--render-size``), its
frame cache at the model's size, and the paper preset end to end: a randomly initialised ResNet-18
trained with everything after it, T = 16 frames, SGD at lr 0.1 (momentum 0.9, weight decay 1e-4),
random-resized-crop + flip, on fold 1's training clips in the order an epoch draws them. Batch 32:
the paper does not state one; 32 is Former-DFER's and the preset's ``TrainConfig.batch_size``. The
image is 128 px, the preset's documented choice: at 112 px (the DFER convention) the 14 and 7 px
stage maps cannot be tiled into N = 16 patches, so MSSTNet cannot be built there
(``--size 112`` says so).

Each step loads a batch (the DataLoader on the frame cache, no worker: the CPU default, plus the
[0, 1] / ImageNet normalisation) -- the **data** time -- then trains MSSTNet on it and, side by side
on the same batch, Table 3's ResNet-18 + LSTM (``--baseline``) -- each one's **compute** time.
Steps after the first are summarised by their medians (the first is a warm-up; every step is
printed with both losses, so the log shows whether the loss falls; the means of the first and last
ten steps are printed too, and the norm of what each classifier reads at the first step). Also
printed:

* GFLOPs per clip: forward multiply-accumulates as Table 3 counts them (``msstlib.flops``);
* the counted FLOPs/s of the compute (3 x forward MACs x 2 FLOPs per training clip) against this
  CPU's fp32 matrix-product rate measured in the same run at the same thread count (the best of a
  measurement before and one after the steps): the fraction of the attainable peak the step uses;
* peak RSS: the process's high-water mark after the steps (before any loader worker starts);
* the input pipeline: clips/s of the training loader (frame cache, crop + flip) at each of
  ``--loader-sizes``, in this process at one thread (a worker's own work, without the hand-off
  into the training process) and through a DataLoader with ``--workers`` worker processes (what a
  run gets; one worker's rate is the figure per worker), timed from each pass's first batch on
  (the rate a running epoch sustains), medians of ``--repeats`` interleaved passes; against what
  one GPU step would consume: measured GPU figures when ``results/gpu/*.json`` holds any
  (``benchmarks/gpu_check.py``), else the public spec-sheet peaks at an assumed MFU (``--mfu``),
  as clips/s and as the loader workers needed.

The last line is JSON: ``frames``, ``size``, ``batch``, ``s_per_step``, ``clips_per_s``,
``peak_rss_mb`` (MSSTNet's step: data + compute), then the rest of the figures above.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402


def build_parser() -> common.ArgumentParser:
    parser = common.ArgumentParser(prog="python benchmarks/bench_paper_preset.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=common.positive, default=5, help="training steps (the first is a warm-up)")
    parser.add_argument("--batch", type=common.positive, default=32, help="clips per step (default 32: Former-DFER's)")
    parser.add_argument("--frames", type=common.positive, default=16)
    parser.add_argument("--size", type=common.positive, default=None, help="model input px (default: the preset's 128)")
    parser.add_argument("--clips", type=common.positive, default=1000, help="clips of the SynDFER draw (>= 35)")
    parser.add_argument("--render-size", type=common.positive, default=224, help="SynDFER frame px (DFEW: 224)")
    parser.add_argument("--data", type=Path, default=None, help="where the draw lives (default build/bench/...)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--baseline", default="resnet18-lstm", help="the same-backbone variant run beside it "
                        "('none': MSSTNet alone)")
    parser.add_argument("--loader-sizes", type=common.positive, nargs="+", default=None,
                        help="frame sizes of the loader measurement (default: 112 and the model's)")
    parser.add_argument("--loader-clips", type=common.positive, default=512,
                        help="clips per loader pass (its first batch is not timed: workers starting)")
    parser.add_argument("--workers", type=common.positive, nargs="*", default=[1, 2],
                        help="loader worker counts measured besides the in-process loader")
    parser.add_argument("--repeats", type=common.positive, default=3, help="interleaved loader passes")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed GPU MFU for the spec-sheet rows")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate (default: the preset's, the "
                        "paper's 0.1; anything else is a deviation, printed as one)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check(args) -> None:
    """Flag values argparse cannot check, each a one-line error (exit 2)."""
    from msstlib.config import VARIANTS, ConfigError

    if args.clips < 35:
        common.fail(f"--clips {args.clips}: SynDFER needs at least 35 clips (every class in every test fold)")
    if args.threads < 0:
        common.fail(f"--threads {args.threads}: expected 0 (torch's default) or more")
    if args.lr is not None and not args.lr > 0:
        common.fail(f"--lr {args.lr}: expected a learning rate > 0")
    if not 0 < args.mfu <= 1:
        common.fail(f"--mfu {args.mfu}: expected a fraction in (0, 1]")
    if args.baseline != "none" and args.baseline not in VARIANTS:
        common.fail(f"--baseline {args.baseline!r}: expected 'none' or one of {', '.join(VARIANTS)}")
    for variant in ["msstnet"] + ([args.baseline] if args.baseline != "none" else []):
        try:
            common.paper_configs(variant, frames=args.frames, size=args.size)
        except (ConfigError, ValueError) as exc:
            common.fail(f"--size/--frames for {variant}: {str(exc).splitlines()[0]}")


def finite(value: float) -> float | None:
    """A loss as JSON can hold it: None when it diverged (NaN or infinite)."""
    return round(value, 5) if math.isfinite(value) else None


def trend(values: list[float], window: int) -> str:
    """Mean loss of the first and of the last ``window`` steps, and how many steps were not finite."""
    def mean(part: list[float]) -> float:
        return statistics.fmean(part) if all(math.isfinite(v) for v in part) else math.nan

    bad = sum(not math.isfinite(v) for v in values)
    return (f"mean of steps 1-{window} {mean(values[:window]):.4f}, of the last {window} {mean(values[-window:]):.4f}"
            + (f", {bad} of {len(values)} steps not finite" if bad else ""))


def batches(loader, sampler):
    """The loader's batches over as many epochs as asked for (each epoch its own draws)."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def gpu_figures(root: Path) -> list[dict]:
    """Measured paper-preset training rates from ``results/gpu/*.json`` (gpu_check.py), if any."""
    rows = []
    for path in sorted((root / "results" / "gpu").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("device_type") != "cuda":
            continue
        for row in record.get("throughput", []):
            rows.append({"source": f"measured: {path.name}", "device": record.get("device"),
                         "setting": f"{row['dtype']}, compile {'on' if row['compile'] else 'off'}",
                         "frames": record.get("frames"), "size": record.get("size"),
                         "clips_per_s": row["clips_per_s"]})
    return rows


def spec_sheet_rows(train_flops: float, mfu: float) -> list[dict]:
    rows = []
    for device, peaks in common.SPEC_PEAKS.items():
        if device == "H200":  # the same chip and figures as the H100 SXM: one row says it
            continue
        for dtype, tflops in peaks.items():
            rows.append({"source": f"spec-sheet peak {tflops:g} TFLOP/s x assumed MFU {mfu:g}", "device": device,
                         "setting": dtype, "clips_per_s": tflops * 1e12 * mfu / train_flops})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check(args)

    import torch
    from torch.utils.data import DataLoader

    from msstlib.data import ClipDataset, EpochBatches, to_model_input

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    data = args.data or common.ROOT / "build" / "bench" / f"syndfer{args.render_size}_{args.clips}"
    annotations, root = common.syndfer(data, args.clips, args.render_size, seed=args.seed)

    msst = common.paper_setup("msstnet", frames=args.frames, size=args.size, seed=args.seed, lr=args.lr)
    model_cfg, train_cfg, data_cfg = msst.configs
    size = model_cfg.image_size
    runs = [msst] + ([common.paper_setup(args.baseline, frames=args.frames, size=size, seed=args.seed, lr=args.lr)]
                     if args.baseline != "none" else [])
    loader_sizes = args.loader_sizes or sorted({112, size})
    cache_s = {s: common.frame_cache(annotations, root, s) for s in sorted(set(loader_sizes) | {size})}
    print(f"SynDFER: {args.clips} clips rendered at {args.render_size} px in {data}; frame caches "
          + ", ".join(f"{s} px {'built in %.1f s' % t if t else 'reused'}" for s, t in cache_s.items()), flush=True)

    train_set = ClipDataset(annotations, root, fold=1, train=True, cfg=data_cfg, seed=args.seed, raw=True)
    sampler = EpochBatches(len(train_set), args.batch, shuffle=True, seed=args.seed)
    stream = batches(DataLoader(train_set, batch_sampler=sampler, num_workers=0), sampler)

    peak_before = common.gemm_peak_tflops("cpu")
    deviation = "" if args.lr is None else f" (a deviation: the paper's is {common.PRESETS['paper'].train.lr})"
    print(f"paper preset, end to end: T={args.frames}, {size} px, batch {args.batch}, "
          f"SGD lr {train_cfg.lr}{deviation}, "
          f"{threads} thread(s), fold 1's {len(train_set)} training clips; {args.steps} steps "
          f"(the first a warm-up)", flush=True)
    names = [run.variant for run in runs]
    print("step  data_s  " + "  ".join(f"{n}_s  {n}_loss" for n in names), flush=True)
    data_s, compute_s, losses = [], {n: [] for n in names}, {n: [] for n in names}
    # What the classifier reads at the first step: the norm of its input per clip (a large one makes one
    # SGD step at lr 0.1 move the logits far). Recorded once, then the hooks are removed.
    head_norm: dict[str, float] = {}

    def record_norm(name: str):
        def hook(module, inputs) -> None:  # returns None: the input goes on unchanged
            head_norm.setdefault(name, float(inputs[0].detach().norm(dim=-1).mean()))
        return hook

    hooks = [run.model.head.register_forward_pre_hook(record_norm(run.variant)) for run in runs]
    for step in range(args.steps):
        start = time.perf_counter()
        frames, labels = next(stream)
        x = to_model_input(frames, data_cfg.normalize)
        data_s.append(time.perf_counter() - start)
        for run in runs:
            start = time.perf_counter()
            loss = float(common.train_step(run.model, run.optimizer, x, labels))
            compute_s[run.variant].append(time.perf_counter() - start)
            losses[run.variant].append(loss)
        print(f"{step + 1:4d}  {data_s[-1]:6.2f}  " + "  ".join(
            f"{compute_s[n][-1]:8.2f}  {losses[n][-1]:8.4f}" for n in names), flush=True)
    for hook in hooks:
        hook.remove()
    peak_rss = common.peak_rss_mb()
    peak = max(peak_before, common.gemm_peak_tflops("cpu"))

    def median(values: list[float]) -> float:
        return statistics.median(values[1:] if len(values) > 1 else values)

    step_s = median([d + c for d, c in zip(data_s, compute_s["msstnet"])])
    msst_compute = median(compute_s["msstnet"])
    flops_per_s = msst.train_flops * args.batch / msst_compute
    print(f"\nMSSTNet: {step_s:.2f} s per step = data {median(data_s):.2f} s + compute {msst_compute:.2f} s; "
          f"{args.batch / step_s:.2f} clips/s; {msst.gmacs:.2f} GFLOPs (MACs) per clip forward; "
          f"peak RSS {peak_rss:,.0f} MB")
    print(f"  counted {flops_per_s / 1e9:.1f} GFLOP/s in compute against this CPU's measured fp32 GEMM peak "
          f"{peak * 1e3:.1f} GFLOP/s ({threads} thread(s)): {flops_per_s / (peak * 1e12):.2f} of it")
    loss_first, loss_last = losses["msstnet"][0], losses["msstnet"][-1]
    window = max(1, min(10, args.steps // 2))
    print(f"  loss {loss_first:.4f} at step 1 -> {loss_last:.4f} at step {args.steps}; "
          + "; ".join(f"{name}: {trend(losses[name], window)}" for name in names))
    print("  the classifier's input at step 1, norm per clip: "
          + ", ".join(f"{name} {value:.1f}" for name, value in head_norm.items()))
    baseline = None
    if len(runs) > 1:
        other = runs[1]
        other_compute = median(compute_s[other.variant])
        other_step = median([d + c for d, c in zip(data_s, compute_s[other.variant])])
        baseline = {"variant": other.variant, "s_per_step": round(other_step, 4),
                    "compute_s_per_step": round(other_compute, 4), "gflops_per_clip": round(other.gmacs, 4),
                    "msstnet_to_baseline_step_ratio": round(step_s / other_step, 3),
                    "msstnet_to_baseline_compute_ratio": round(msst_compute / other_compute, 3),
                    "loss_first": finite(losses[other.variant][0]), "loss_last": finite(losses[other.variant][-1])}
        print(f"{other.variant} beside it, same batches: {other_step:.2f} s per step (compute {other_compute:.2f} s), "
              f"{other.gmacs:.2f} GFLOPs per clip; MSSTNet's step takes {step_s / other_step:.2f}x its step "
              f"({msst_compute / other_compute:.2f}x its compute; {msst.gmacs / other.gmacs:.2f}x its FLOPs)")

    # The input pipeline: a worker's own work in this process, then DataLoader worker processes, interleaved.
    rates: dict[tuple[int, int], list[float]] = {}
    loaders = {px: ClipDataset(annotations, root, fold=1, train=True, seed=args.seed, raw=True,
                               cfg=dataclasses.replace(data_cfg, image_size=px)) for px in loader_sizes}
    counts = [0] + list(args.workers)
    for _ in range(args.repeats):
        for px, dataset in loaders.items():
            for workers in counts:
                rates.setdefault((px, workers), []).append(common.loader_clips_per_s(
                    dataset, args.loader_clips, args.batch, workers, threads=1 if workers == 0 else None, steady=True))
    loader = {}
    print(f"\ninput pipeline: training loader on the frame cache (crop + flip, uint8), T={args.frames}, batch "
          f"{args.batch}, {min(args.loader_clips, len(train_set))} clips (the first batch untimed), medians of "
          f"{args.repeats} interleaved passes")
    for px in loader_sizes:
        entry = {"in_process_clips_per_s": round(statistics.median(rates[(px, 0)]), 1),
                 "workers": {str(w): round(statistics.median(rates[(px, w)]), 1) for w in args.workers}}
        entry["per_worker_clips_per_s"] = entry["workers"].get("1", entry["in_process_clips_per_s"])
        loader[str(px)] = entry
        print(f"  {px} px: a worker's own work (in-process, one thread) {entry['in_process_clips_per_s']:.0f} clips/s; "
              f"DataLoader into this process: " + "; ".join(
                  f"{w} worker{'s' if w != '1' else ''} {v:.0f} clips/s ({v / int(w):.0f} per worker)"
                  for w, v in entry["workers"].items()))
    per_worker = loader[str(size)]["per_worker_clips_per_s"]
    in_process = loader[str(size)]["in_process_clips_per_s"]
    what = "one DataLoader worker's" if "1" in loader[str(size)]["workers"] else "a worker's in-process"
    measured = gpu_figures(common.ROOT)
    feed = measured or spec_sheet_rows(msst.train_flops, args.mfu)
    print(f"what one GPU's MSSTNet step consumes at {size} px (training: {msst.train_flops / 1e9:.0f} GFLOP per clip) "
          f"against {what} {per_worker:.0f} clips/s here (in-process {in_process:.0f}):")
    for row in feed:
        row["loader_workers_needed"] = math.ceil(row["clips_per_s"] / per_worker)
        row["loader_workers_needed_in_process_rate"] = math.ceil(row["clips_per_s"] / in_process)
        row["clips_per_s"] = round(row["clips_per_s"], 1)
        print(f"  {row['device']:>9} {row['setting']:<5} {row['clips_per_s']:>8,.0f} clips/s -> "
              f"{row['loader_workers_needed']:>3} workers ({row['loader_workers_needed_in_process_rate']} at the "
              f"in-process rate; {row['source']})")
    if not measured:
        print("  (no GPU figure exists yet: these rows are spec-sheet peaks at an assumed MFU, not measurements)")

    common.last_line_json({
        "frames": args.frames, "size": size, "batch": args.batch, "s_per_step": round(step_s, 4),
        "clips_per_s": round(args.batch / step_s, 4), "peak_rss_mb": round(peak_rss, 1),
        "data_s_per_step": round(median(data_s), 4), "compute_s_per_step": round(msst_compute, 4),
        "gflops_per_clip": round(msst.gmacs, 4), "counted_tflops_per_s": round(flops_per_s / 1e12, 5),
        "gemm_peak_tflops_fp32": round(peak, 5), "share_of_gemm_peak": round(flops_per_s / (peak * 1e12), 4),
        "loss_first": finite(loss_first), "loss_last": finite(loss_last), "head_input_norm_step1": head_norm,
        "steps": args.steps, "threads": threads, "lr": train_cfg.lr, "baseline": baseline, "loader": loader,
        "gpu_feed": feed,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
