"""What the caches and rows cost per clip, at two SynDFER sizes, projected to DFEW and FERV39k (issue 29).

    python benchmarks/dfew_scale.py [--clips 500 1000] [--render-size 224] [--data build/bench/syndfer224_1000]
        [--frames 16] [--depths 2 2 2] [--steps 3] [--paper-batch 4] [--threads 0] [--keep-caches]

One SynDFER draw of the largest ``--clips`` rendered at DFEW's frame size (224 x 224 JPEGs), and for
each size N its first N clips in a folder of their own, where from nothing are built and timed:

* the **frame cache** (uint8 frames, ``msstlib.data``) at 64 px (the cpu preset) and at 128 px
  (the paper preset): bytes and build seconds per frame;
* the **feature cache** of a frozen ResNet-18 at 64 px (``msstlib.features``: every frame and its
  flip, 16-bit): bytes and build seconds per frame. The weights are a random initialisation saved
  once (``common.timing_weights``): the time does not depend on their values;
* one **cpu-preset row** (``msstlib.train.run``: MSSTNet ``--depths`` at ``--frames``, fold 1, one
  epoch, the feature cache pinned in memory): its training seconds per training clip and its test
  seconds per test clip, from the row's own ``log.csv``.

Per-frame and per-clip costs at the two sizes are printed side by side with their ratio (1.00:
they grow linearly). Then the **paper preset**'s compute per clip (MSSTNet T = 16 at 128 px, end to
end, SGD; ``--steps`` steps of ``--paper-batch`` clips, the first a warm-up, and one test batch
without gradients) and the projections, from the larger size's figures:

* DFEW: the 11,697 single-labelled clips ``data_prep.dfew`` prepares and the five-fold protocol uses
  (fold 1: 9,356 training, 2,341 test), 77 frames per clip on average (DESIGN.md §4); also all
  16,372 clips of the release, assumed to have the same mean length and a 4 : 1 split;
* FERV39k: 38,935 clips (31,088 training, 7,847 test), 28 frames per clip on average.

``frame_cache_gb`` is at 64 px (the cpu preset's, which its feature cache is built from;
``frame_cache_gb_paper``: at 128 px), ``feature_cache_gb`` at 64 px, ``cpu_row_hours`` one cpu-preset
row (its 5 epochs and a test pass) and ``paper_epoch_hours_cpu`` one paper-preset epoch with its test
pass, compute only (the loader's rate is measured in bench_paper_preset.py), on this machine.
Caveat: a DFEW-sized feature cache (~100 GB) cannot be pinned in memory here, and unpinned its
scattered reads go to the disk (benchmarks/README.md, 21x slower at 9.6 GB): ``cpu_row_hours``
assumes the in-memory rate. The caches built here are removed at the end unless ``--keep-caches``.
The last line is JSON: ``{"dfew": {...}, "ferv39k": {...}, ...}``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from msstlib.config import PRESETS  # noqa: E402


@dataclass(frozen=True)
class Target:
    """A dataset the costs are projected to: its clips, mean frames per clip, and one fold's split."""

    name: str
    clips: int
    frames_per_clip: float
    train_clips: int
    test_clips: int


TARGETS = {
    "dfew": Target("DFEW, the 11,697 single-labelled clips (5-fold protocol; fold 1)", 11_697, 77, 9_356, 2_341),
    "ferv39k": Target("FERV39k, 38,935 clips (train / test split)", 38_935, 28, 31_088, 7_847),
    "dfew_all_clips": Target("DFEW, all 16,372 clips (mean length and 4 : 1 split assumed)", 16_372, 77, 13_098,
                             3_274),
}
CPU_SIZE, PAPER_SIZE = 64, 128


def build_parser() -> common.ArgumentParser:
    parser = common.ArgumentParser(prog="python benchmarks/dfew_scale.py", description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=common.positive, nargs=2, default=[500, 1000], metavar=("SMALL", "LARGE"),
                        help="the two SynDFER sizes (clips; >= 35 each)")
    parser.add_argument("--render-size", type=common.positive, default=224, help="SynDFER frame px (DFEW: 224)")
    parser.add_argument("--data", type=Path, default=None, help="where the draw lives (default build/bench/...)")
    parser.add_argument("--frames", type=common.positive, default=16, help="T of the cpu-preset row")
    parser.add_argument("--depths", type=int, nargs=3, default=[2, 2, 2], help="T-Former depths of the cpu row")
    parser.add_argument("--steps", type=common.positive, default=3, help="paper-preset steps (the first a warm-up)")
    parser.add_argument("--paper-batch", type=common.positive, default=4, help="clips per paper-preset step")
    parser.add_argument("--paper-frames", type=common.positive, default=16, help="T of the paper preset")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--keep-caches", action="store_true", help="keep the caches built here")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check(args) -> None:
    small, large = args.clips
    if small < 35 or large <= small:
        common.fail(f"--clips {small} {large}: expected SMALL >= 35 (every class in every test fold) and LARGE > SMALL")
    if any(d < 0 for d in args.depths) or not any(args.depths):
        common.fail(f"--depths {' '.join(map(str, args.depths))}: expected three integers >= 0, not all 0")
    if args.threads < 0:
        common.fail(f"--threads {args.threads}: expected 0 (torch's default) or more")
    if args.frames > 16 or args.paper_frames > 16:
        common.fail(f"--frames {args.frames} / --paper-frames {args.paper_frames}: at most 16 (the models' max_frames)")


def measure_size(annotations: str, root: str, clips: int, work: Path, weights: str, args) -> dict:
    """Caches and a cpu-preset row for the first ``clips`` clips of the draw, built from nothing."""
    import pandas as pd

    from msstlib import features
    from msstlib.data import cache_paths
    from msstlib.train import run

    folder = work / f"scale_{clips}"
    shutil.rmtree(folder, ignore_errors=True)  # from nothing: no cache of an earlier run is reused
    subset = common.subset(annotations, folder / "annotations.csv", range(clips))
    frames = int(pd.read_csv(subset)["num_frames"].sum())
    out = {"clips": clips, "frames": frames}
    for size in (CPU_SIZE, PAPER_SIZE):
        seconds = common.frame_cache(subset, root, size)
        out[f"frame_cache_{size}px"] = {"bytes": cache_paths(folder / "cache", size)[0].stat().st_size, "s": seconds}
    stages = PRESETS["cpu"].model.stages
    start = time.perf_counter()
    index = features.build(subset, root, weights, CPU_SIZE, stages, progress=False)
    out["feature_cache_64px"] = {"bytes": index.with_suffix(".npy").stat().st_size, "s": time.perf_counter() - start}
    with tempfile.TemporaryDirectory(dir=work) as row:
        result = run(annotations=subset, root=root, fold=1, frames=args.frames, depths=tuple(args.depths),
                     preset="cpu", epochs=1, seed=args.seed, work_dir=str(Path(row) / "run"), threads=args.threads,
                     overrides={"backbone_weights": weights}, progress=False)
        log = pd.read_csv(Path(row) / "run" / "log.csv").iloc[-1]
    train_s = result["train_clips"] / log["clips_per_s"]
    out["row"] = {"train_clips": result["train_clips"], "test_clips": result["test_clips"],
                  "train_s_per_clip": train_s / result["train_clips"],
                  "test_s_per_clip": max(log["seconds"] - train_s, 0.0) / result["test_clips"],
                  "epoch_s": float(log["seconds"]), "input": result["input"],
                  "cache_residency": result.get("cache_residency")}
    if not args.keep_caches:
        shutil.rmtree(folder / "cache", ignore_errors=True)
    return out


def paper_per_clip(args) -> dict:
    """The paper preset's compute per training clip and per test clip (random frames, in memory)."""
    import torch

    from msstlib.data import to_model_input

    run = common.paper_setup("msstnet", frames=args.paper_frames, seed=args.seed)
    size = run.configs[0].image_size
    generator = torch.Generator().manual_seed(args.seed)
    frames = torch.randint(0, 256, (args.paper_batch, args.paper_frames, 3, size, size), dtype=torch.uint8,
                           generator=generator)
    x, y = to_model_input(frames), torch.randint(0, 7, (args.paper_batch,), generator=generator)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        common.train_step(run.model, run.optimizer, x, y)
        times.append(time.perf_counter() - start)
    run.model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        run.model(x)
        test_s = time.perf_counter() - start
    train_s = statistics.median(times[1:] if len(times) > 1 else times)
    return {"frames": args.paper_frames, "size": size, "batch": args.paper_batch, "gflops_per_clip": run.gmacs,
            "train_s_per_clip": train_s / args.paper_batch, "test_s_per_clip": test_s / args.paper_batch}


def project(target: Target, costs: dict, paper: dict) -> dict:
    frames = target.clips * target.frames_per_clip
    per_frame = {key: costs[key]["bytes"] / costs["frames"] for key in
                 ("frame_cache_64px", "frame_cache_128px", "feature_cache_64px")}
    build_s = {key: costs[key]["s"] / costs["frames"] for key in per_frame}
    row, epochs = costs["row"], PRESETS["cpu"].train.epochs
    row_s = epochs * target.train_clips * row["train_s_per_clip"] + target.test_clips * row["test_s_per_clip"]
    paper_s = target.train_clips * paper["train_s_per_clip"] + target.test_clips * paper["test_s_per_clip"]
    return {"frame_cache_gb": round(per_frame["frame_cache_64px"] * frames / 1e9, 2),
            "feature_cache_gb": round(per_frame["feature_cache_64px"] * frames / 1e9, 2),
            "cpu_row_hours": round(row_s / 3600, 3), "paper_epoch_hours_cpu": round(paper_s / 3600, 2),
            "frame_cache_gb_paper": round(per_frame["frame_cache_128px"] * frames / 1e9, 2),
            "frame_cache_build_hours": round(build_s["frame_cache_64px"] * frames / 3600, 3),
            "frame_cache_build_hours_paper": round(build_s["frame_cache_128px"] * frames / 3600, 3),
            "feature_cache_build_hours": round(build_s["feature_cache_64px"] * frames / 3600, 3),
            "paper_fold_hours_cpu": round(PRESETS["paper"].train.epochs * paper_s / 3600, 1),
            "clips": target.clips, "frames": int(frames), "train_clips": target.train_clips,
            "test_clips": target.test_clips}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check(args)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    small, large = args.clips
    data = args.data or common.ROOT / "build" / "bench" / f"syndfer{args.render_size}_{large}"
    annotations, root = common.syndfer(data, large, args.render_size, seed=args.seed)
    work = Path(data) / "scale"
    work.mkdir(exist_ok=True)
    free = shutil.disk_usage(work).free
    need = large * 28 * (2 * 2 * 29_184 + 3 * (CPU_SIZE ** 2 + PAPER_SIZE ** 2))  # SynDFER: ~28 frames per clip
    if need > 0.8 * free:
        common.fail(f"the caches of {large} clips need ~{need / 1e9:.1f} GB but {work} has {free / 1e9:.1f} GB free; "
                    f"pass smaller --clips or another --data")
    weights = common.timing_weights(work / "resnet18_random.pt", seed=args.seed)
    print(f"SynDFER: {large} clips rendered at {args.render_size} px in {data}; sizes {small} and {large}; "
          f"{torch.get_num_threads()} thread(s); cpu row: T={args.frames}, depths {' '.join(map(str, args.depths))}",
          flush=True)
    costs = {n: measure_size(annotations, root, n, work, weights, args) for n in (small, large)}
    paper = paper_per_clip(args)

    rows = [("frame cache 64 px, bytes per frame", lambda c: c["frame_cache_64px"]["bytes"] / c["frames"]),
            ("frame cache 64 px, ms per frame", lambda c: 1e3 * c["frame_cache_64px"]["s"] / c["frames"]),
            ("frame cache 128 px, bytes per frame", lambda c: c["frame_cache_128px"]["bytes"] / c["frames"]),
            ("frame cache 128 px, ms per frame", lambda c: 1e3 * c["frame_cache_128px"]["s"] / c["frames"]),
            ("feature cache 64 px, bytes per frame", lambda c: c["feature_cache_64px"]["bytes"] / c["frames"]),
            ("feature cache 64 px, ms per frame", lambda c: 1e3 * c["feature_cache_64px"]["s"] / c["frames"]),
            ("cpu row, ms per training clip", lambda c: 1e3 * c["row"]["train_s_per_clip"]),
            ("cpu row, ms per test clip", lambda c: 1e3 * c["row"]["test_s_per_clip"])]
    print(f"\nper-frame and per-clip costs ({costs[small]['frames']:,} and {costs[large]['frames']:,} frames):")
    print(f"| cost | {small} clips | {large} clips | ratio |\n|---|---|---|---|")
    linearity = {}
    for name, value in rows:
        at_small, at_large = value(costs[small]), value(costs[large])
        ratio = at_large / at_small if at_small else float("nan")
        linearity[name] = round(ratio, 3) if at_small else None
        print(f"| {name} | {at_small:,.2f} | {at_large:,.2f} | {ratio:.2f} |")
    print(f"paper preset (T={paper['frames']}, {paper['size']} px, end to end, batch {paper['batch']}): "
          f"{paper['train_s_per_clip']:.2f} s per training clip, {paper['test_s_per_clip']:.2f} s per test clip "
          f"(compute; {paper['gflops_per_clip']:.2f} GFLOPs per clip)")

    projections = {key: project(target, costs[large], paper) for key, target in TARGETS.items()}
    print(f"\nprojection from {large} clips, on this machine:")
    print("| dataset | frames | frame cache 64 / 128 px (GB) | feature cache 64 px (GB) | cache builds (h) "
          "| cpu row (h) | paper epoch (h) | paper fold, 40 epochs (h) |\n|---|---|---|---|---|---|---|---|")
    for key, target in TARGETS.items():
        cell = projections[key]
        print(f"| {target.name} | {cell['frames']:,} | {cell['frame_cache_gb']:.1f} / "
              f"{cell['frame_cache_gb_paper']:.1f} | {cell['feature_cache_gb']:.1f} | "
              f"{cell['frame_cache_build_hours']:.2f} + {cell['feature_cache_build_hours']:.2f} | "
              f"{cell['cpu_row_hours']:.2f} | "
              f"{cell['paper_epoch_hours_cpu']:.1f} | {cell['paper_fold_hours_cpu']:.0f} |")
    common.last_line_json({**projections, "measured": {str(n): costs[n] for n in costs}, "paper_per_clip": paper,
                           "linearity_large_over_small": linearity, "threads": torch.get_num_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
