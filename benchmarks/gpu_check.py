"""The paper preset on a GPU, checked in one go for the day one is at hand (issue 29): speed, memory,
torch.compile, a kill -9 and resume, and DistributedDataParallel.

    python benchmarks/gpu_check.py [--device auto] [--steps 20] [--warmup 3] [--batch 32] [--frames 16]
        [--size 128] [--resume-steps 10] [--clips 500] [--render-size 224] [--data DIR]
        [--compile-backend inductor] [--threads 0] [--out results/gpu]

Sections, each written to ``OUT/<device-name>.json`` (and a short ``.md``) as soon as it is done,
so a run cut short keeps what it measured:

1. **peaks**: the device's dense matrix-product rate measured here in fp32 and bf16, and the public
   spec-sheet peaks when the device is one whose sheet we cite (``common.SPEC_PEAKS``).
2. **throughput**: MSSTNet in the paper preset (T = 16, 128 px, ResNet-18 trained end to end, SGD)
   on one batch of real SynDFER clips held on the device, ``--warmup`` steps then ``--steps`` timed
   steps, in fp32 and under ``torch.autocast`` bf16, with ``torch.compile`` off and on: clips/s,
   seconds per step, peak memory (CUDA: ``max_memory_allocated`` per setting; CPU: the process's
   RSS high-water mark, which only grows from one setting to the next), compile + warm-up seconds,
   and MFU = counted training FLOPs/s (3 x forward MACs x 2) over the spec-sheet peak of that dtype
   and over the measured one.
3. **resume**: ``python -m msstlib.train`` (the paper preset, 2 epochs of ``--resume-steps`` steps on a
   subset of the draw, the gradient norm clipped at 1 so that SGD at lr 0.1 on a few clips stays
   finite: this checks resuming, not the recipe) run once uninterrupted, and once killed with
   SIGKILL in its second epoch, then resumed with ``--resume``. The two final checkpoints are compared tensor by
   tensor: bit-identical where the computation is deterministic (the CPU), else how close (the
   largest weight difference and the per-epoch losses side by side; cuDNN and bf16 autocast are not
   deterministic run to run).
4. **ddp**: the same 2-epoch run under ``torchrun --nproc-per-node K`` (K = the GPUs present, NCCL;
   on the CPU two processes over gloo, one thread each): its clips/s against the one-process run's,
   and how far its weights end from the one-process run's (BatchNorm sees each process's share of a
   batch, so they are close, not equal). Skipped with one GPU.

``--device cpu --steps 2`` runs the whole path on a CPU in a few minutes (the tests do, with
``--out`` a temporary folder and a quick ``--compile-backend``); no figure it writes is a GPU figure.
The last line is the JSON record.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

BACKENDS = ("inductor", "aot_eager", "eager")


def build_parser() -> common.ArgumentParser:
    parser = common.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU when present), cuda, cuda:K or cpu")
    parser.add_argument("--steps", type=common.positive, default=20, help="timed steps per setting")
    parser.add_argument("--warmup", type=common.positive, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--batch", type=common.positive, default=None, help="clips per step (default: 32 on a GPU, "
                        "2 on the CPU)")
    parser.add_argument("--frames", type=common.positive, default=16)
    parser.add_argument("--size", type=common.positive, default=None, help="model input px (default: the preset's 128)")
    parser.add_argument("--resume-steps", type=common.positive, default=None,
                        help="steps per epoch of the resume and DDP runs (default: min(--steps, 10))")
    parser.add_argument("--clips", type=common.positive, default=None, help="clips of the SynDFER draw (default: "
                        "enough for the resume runs, >= 35)")
    parser.add_argument("--render-size", type=common.positive, default=224, help="SynDFER frame px (DFEW: 224)")
    parser.add_argument("--data", type=Path, default=None, help="where the draw lives (default build/bench/...)")
    parser.add_argument("--compile-backend", choices=BACKENDS, default="inductor",
                        help="torch.compile's backend (inductor: what a run would use; aot_eager: the same graph "
                             "capture without code generation, for a quick CPU pass)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the record (default results/gpu)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


class Check:
    """The record being filled in and written after every section."""

    def __init__(self, out: Path, name: str, record: dict):
        self.json, self.md, self.record = out / f"{name}.json", out / f"{name}.md", record

    def save(self) -> None:
        from msstlib import files

        files.write_json(self.json, self.record, indent=1)
        files.write_text(self.md, markdown(self.record))


def markdown(record: dict) -> str:
    lines = [f"# gpu_check: {record['device']}", "",
             f"`{record['command']}` ({record['date']}, torch {record['torch']}, {record['device_count']} "
             f"{record['device_type']} device(s)). Paper preset: MSSTNet T = {record['frames']}, {record['size']} px, "
             f"end to end, batch {record['batch']}; torch.compile backend {record['compile_backend']}.", ""]
    if record["device_type"] != "cuda":
        lines += ["**Not a GPU figure**: this record was made on the CPU (a check of the script's path).", ""]
    peaks = record.get("peaks")
    if peaks:
        lines += [f"Measured GEMM peak: fp32 {peaks['measured_tflops']['fp32']:.2f} TFLOP/s, bf16 "
                  f"{peaks['measured_tflops']['bf16']:.2f} TFLOP/s; spec sheet: {peaks['spec_sheet'] or 'none cited'}.",
                  ""]
    if record.get("throughput"):
        lines += ["| dtype | compile | clips/s | s/step | peak memory (MB) | MFU (spec) | MFU (measured peak) |"
                  " compile + warm-up (s) |", "|---|---|---|---|---|---|---|---|"]
        for row in record["throughput"]:
            spec = f"{row['mfu_spec']:.3f}" if row["mfu_spec"] is not None else "-"
            lines.append(f"| {row['dtype']} | {'on' if row['compile'] else 'off'} | {row['clips_per_s']:.2f} | "
                         f"{row['s_per_step']:.3f} | {row['peak_memory_mb']:,.0f} | {spec} | "
                         f"{row['mfu_measured']:.3f} | {row['warmup_s']:.1f} |")
        lines.append("")
    resume = record.get("resume")
    if resume:
        lines += [f"Kill -9 and resume: killed after epoch {resume['killed_after_epoch']} "
                  f"({'mid-run' if resume['killed_mid_run'] else 'too late: the run had finished'}); verdict "
                  f"**{resume['verdict']}** (largest weight difference {resume['max_abs_diff']:.3g}; losses "
                  f"{resume['loss_uninterrupted']} uninterrupted, {resume['loss_resumed']} resumed).", ""]
    ddp = record.get("ddp")
    if ddp:
        if ddp.get("skipped"):
            lines += [f"DDP: skipped ({ddp['skipped']}).", ""]
        else:
            lines += [f"DDP: {ddp['processes']} processes ({ddp['backend']}): {ddp['clips_per_s']:.2f} clips/s against "
                      f"{ddp['one_process_clips_per_s']:.2f} in one process ({ddp['speedup']:.2f}x); largest weight "
                      f"difference from the one-process run {ddp['max_abs_diff_vs_one_process']:.3g}; losses "
                      f"{ddp['loss']} against {ddp['one_process_loss']}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- sections


def peaks(device, name: str) -> dict:
    import torch

    cpu = device.type != "cuda"
    size = 1024 if cpu else None  # a CPU's bf16 product can be slow: a smaller matrix keeps this short
    measured = {"fp32": common.gemm_peak_tflops(device, torch.float32, size=size),
                "bf16": common.gemm_peak_tflops(device, torch.bfloat16, size=size)}
    sheet_name, sheet = common.spec_peak(name) if device.type == "cuda" else (None, None)
    return {"measured_tflops": {k: round(v, 4) for k, v in measured.items()},
            "spec_sheet": {"device": sheet_name, "tflops": sheet} if sheet else None}


def one_batch(annotations: str, root: str, data_cfg, batch: int, device):
    """``batch`` training clips of the draw as the model's input on ``device`` (uint8 -> normalised)."""
    import torch

    from msstlib.data import ClipDataset, to_model_input

    dataset = ClipDataset(annotations, root, fold=1, train=True, cfg=data_cfg, raw=True)
    items = [dataset[(i % len(dataset), 0)] for i in range(batch)]
    frames = torch.stack([x for x, _ in items])
    labels = torch.tensor([y for _, y in items], device=device)
    return to_model_input(frames, data_cfg.normalize, device), labels


def throughput(args, device, spec: dict | None, measured: dict, annotations: str, root: str) -> list[dict]:
    import torch

    rows = []
    x = y = None
    for dtype in ("fp32", "bf16"):
        for compiled in (False, True):
            torch._dynamo.reset()
            run = common.paper_setup("msstnet", frames=args.frames, size=args.size, device=device, seed=args.seed)
            if x is None:
                x, y = one_batch(annotations, root, run.configs[2], args.batch, device)
            net = torch.compile(run.model, backend=args.compile_backend) if compiled else run.model
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            bf16 = dtype == "bf16"
            start = time.perf_counter()
            for _ in range(args.warmup):
                common.train_step(net, run.optimizer, x, y, bf16)
            common.synchronize(device)
            warmup_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = common.train_step(net, run.optimizer, x, y, bf16)
            common.synchronize(device)
            seconds = (time.perf_counter() - start) / args.steps
            clips_per_s = args.batch / seconds
            memory = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                      else common.peak_rss_mb())
            spec_key = "bf16" if bf16 else "fp32"
            if spec is not None and bf16 and "bf16" not in spec["tflops"]:
                spec_key = "fp16"  # a card without bf16 tensor cores: its 16-bit figure
            spec_tflops = spec["tflops"].get(spec_key) if spec is not None else None
            flops_per_s = run.train_flops * clips_per_s
            rows.append({"dtype": dtype, "compile": compiled, "clips_per_s": round(clips_per_s, 3),
                         "s_per_step": round(seconds, 4), "peak_memory_mb": round(memory, 1),
                         "warmup_s": round(warmup_s, 2), "tflops_per_s": round(flops_per_s / 1e12, 4),
                         "mfu_spec": round(flops_per_s / (spec_tflops * 1e12), 4) if spec_tflops else None,
                         "mfu_measured": round(flops_per_s / (measured[dtype] * 1e12), 4),
                         "loss": float(loss), "gflops_per_clip": round(run.gmacs, 4)})
            print(f"  {dtype}, compile {'on ' if compiled else 'off'}: {clips_per_s:8.2f} clips/s, "
                  f"{seconds:.3f} s/step, peak memory {memory:,.0f} MB, MFU {rows[-1]['mfu_measured']:.3f} of the "
                  f"measured {dtype} peak, warm-up {warmup_s:.1f} s", flush=True)
            del run, net
    return rows


def train_command(args, sub: str, root: str, device: str, out: Path, epochs: int, batch: int) -> list[str]:
    command = ["-m", "msstlib.train", "--annotations", sub, "--root", root, "--fold", "1", "--frames",
               str(args.frames), "--preset", "paper", "--epochs", str(epochs), "--batch-size", str(batch),
               "--device", device, "--seed", str(args.seed), "--out", str(out), "--no-progress",
               "--grad-clip", "1.0"]  # SGD at lr 0.1 on a few clips can diverge; this checks resuming, not the recipe
    if args.size:
        command += ["--image-size", str(args.size)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


def run_checked(command: list[str], env: dict | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(command[:6])} ... exited with {done.returncode}: {tail[0]}")


def state_difference(first: Path, second: Path) -> tuple[bool, float]:
    """(all model tensors equal, largest absolute difference) of two checkpoints, read weights-only."""
    import torch

    from msstlib.checkpoint import load

    one, two = load(first)["model"], load(second)["model"]
    equal, largest = set(one) == set(two), 0.0
    for key, left in one.items():
        right = two.get(key)
        if right is None or left.shape != right.shape:
            return False, math.inf
        equal = equal and torch.equal(left, right)
        if left.is_floating_point() and left.numel():
            largest = max(largest, float((left.double() - right.double()).abs().max()))
    return equal, largest


def losses(out: Path) -> list[float]:
    import pandas as pd

    return [round(float(v), 6) for v in pd.read_csv(out / "log.csv")["loss"]]


def resume_check(args, device, work: Path, sub: str, root: str, batch: int) -> dict:
    """Uninterrupted vs killed (SIGKILL mid epoch 2) + resumed; see the module docstring."""
    import pandas as pd

    from msstlib.checkpoint import load

    python = sys.executable
    whole, killed = work / "uninterrupted", work / "killed"
    run_checked([python] + train_command(args, sub, root, str(device), whole, 2, batch))
    log = pd.read_csv(whole / "log.csv")
    epoch_s = float(log["seconds"].iloc[-1])
    process = subprocess.Popen([python] + train_command(args, sub, root, str(device), killed, 2, batch),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = killed / "checkpoint.pt", time.time() + 600
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.4 * epoch_s)  # into the second epoch's training
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if not checkpoint.exists():
        raise RuntimeError(f"the run to kill wrote no checkpoint ({killed}); exit status {process.returncode}")
    mid_run = not (killed / "result.json").exists()
    after = int(load(checkpoint)["epoch"])
    run_checked([python] + train_command(args, sub, root, str(device), killed, 2, batch) + ["--resume"])
    equal, largest = state_difference(whole / "checkpoint.pt", checkpoint)
    first, second = losses(whole), losses(killed)
    close = math.isfinite(largest) and all(abs(mine - theirs) <= 0.05 * max(abs(mine), 1e-8)
                                           for mine, theirs in zip(first, second))
    verdict = "bit-identical" if equal else ("close" if close else "differs")
    print(f"  killed after epoch {after} ({'mid-run' if mid_run else 'too late: the run had finished'}), resumed: "
          f"{verdict} (largest weight difference {largest:.3g}; losses {first} vs {second})", flush=True)
    return {"killed_after_epoch": after, "killed_mid_run": mid_run, "bit_identical": equal, "verdict": verdict,
            "max_abs_diff": largest, "loss_uninterrupted": first, "loss_resumed": second,
            "clips_per_s": float(log["clips_per_s"].iloc[-1]), "epoch_s": epoch_s}


def ddp_check(args, device, work: Path, sub: str, root: str, batch: int, one: dict) -> dict:
    import torch

    if device.type == "cuda":
        processes, backend = torch.cuda.device_count(), "nccl"
        if processes < 2:
            print("  DDP: skipped (one GPU)", flush=True)
            return {"skipped": f"{processes} GPU present"}
    else:
        processes, backend = 2, "gloo"
    out = work / "ddp"
    env = dict(os.environ)
    command = train_command(args, sub, root, "auto" if device.type == "cuda" else "cpu", out, 2, batch)
    if device.type != "cuda":  # one thread per process on the CPU
        env["OMP_NUM_THREADS"] = "1"
        if "--threads" in command:
            at = command.index("--threads")
            del command[at:at + 2]
        command += ["--threads", "1"]
    run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                + command, env)  # torchrun ... -m msstlib.train ...
    import pandas as pd

    rate = float(pd.read_csv(out / "log.csv")["clips_per_s"].iloc[-1])
    _, largest = state_difference(work / "uninterrupted" / "checkpoint.pt", out / "checkpoint.pt")
    print(f"  DDP, {processes} processes ({backend}): {rate:.2f} clips/s against {one['clips_per_s']:.2f} in one "
          f"process ({rate / one['clips_per_s']:.2f}x); largest weight difference {largest:.3g}", flush=True)
    return {"processes": processes, "backend": backend, "clips_per_s": rate,
            "one_process_clips_per_s": one["clips_per_s"], "speedup": round(rate / one["clips_per_s"], 3),
            "max_abs_diff_vs_one_process": largest, "loss": losses(out), "one_process_loss": one["loss_uninterrupted"]}


def resume_subset(annotations: str, folder: Path, batch: int, steps: int) -> str:
    """``batch`` test clips of fold 1 and ``steps * batch`` training clips of the others."""
    import pandas as pd

    table = pd.read_csv(annotations, dtype={"clip": str})
    test = [i for i, f in enumerate(table["fold"]) if f == 1][:batch]
    train = [i for i, f in enumerate(table["fold"]) if f != 1][:steps * batch]
    if len(test) < batch or len(train) < steps * batch:
        common.fail(f"the draw has too few clips for --resume-steps {steps} at batch {batch}: pass more --clips")
    return common.subset(annotations, folder / "annotations.csv", sorted(test + train))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 0:
        common.fail(f"--threads {args.threads}: expected 0 (torch's default) or more")
    from msstlib.config import ConfigError

    try:
        model_cfg = common.paper_configs("msstnet", frames=args.frames, size=args.size)[0]
    except (ConfigError, ValueError) as exc:
        common.fail(f"--size/--frames: {str(exc).splitlines()[0]}")
    import torch

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            common.fail(f"--device {args.device!r}: expected auto, cpu, cuda or cuda:K")
        if device.type not in ("cpu", "cuda"):
            common.fail(f"--device {args.device!r}: expected auto, cpu, cuda or cuda:K")
        if device.type == "cuda" and not torch.cuda.is_available():
            common.fail(f"--device {args.device}: no CUDA device is available here (try --device cpu)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch = args.batch or (32 if device.type == "cuda" else 2)
    args.size = model_cfg.image_size
    resume_steps = args.resume_steps or min(args.steps, 10)
    clips = args.clips or max(35, 6 * args.batch, math.ceil(1.4 * resume_steps * args.batch))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {common.cpu_name()}"
    out = args.out or common.ROOT / "results" / "gpu"
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, slug(name), {
        "device": name, "device_type": device.type,
        "device_count": torch.cuda.device_count() if device.type == "cuda" else 1,
        "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "frames": args.frames, "size": args.size, "batch": args.batch, "steps": args.steps,
        "compile_backend": args.compile_backend, "threads": torch.get_num_threads()})
    print(f"gpu_check on {name} ({device}): paper preset, MSSTNet T={args.frames}, {args.size} px, batch {args.batch}; "
          f"writing {check.json}", flush=True)

    data = args.data or common.ROOT / "build" / "bench" / f"syndfer{args.render_size}_{clips}"
    annotations, root = common.syndfer(data, clips, args.render_size, seed=args.seed,
                                       jobs=max(1, min(8, (os.cpu_count() or 2) - 1)))
    common.frame_cache(annotations, root, args.size)

    print("peaks:", flush=True)
    check.record["peaks"] = peaks(device, name)
    print(f"  measured GEMM: {check.record['peaks']['measured_tflops']} TFLOP/s; spec sheet: "
          f"{check.record['peaks']['spec_sheet']}", flush=True)
    check.save()
    print("throughput:", flush=True)
    check.record["throughput"] = throughput(args, device, check.record["peaks"]["spec_sheet"],
                                            check.record["peaks"]["measured_tflops"], annotations, root)
    check.save()

    work = Path(data) / "gpu_check" / slug(name)
    shutil.rmtree(work, ignore_errors=True)
    sub = resume_subset(annotations, work, args.batch, resume_steps)
    common.frame_cache(sub, root, args.size)
    print(f"resume ({resume_steps} steps per epoch, 2 epochs, python -m msstlib.train):", flush=True)
    check.record["resume"] = resume_check(args, device, work, sub, root, args.batch)
    check.save()
    print("ddp:", flush=True)
    check.record["ddp"] = ddp_check(args, device, work, sub, root, args.batch, check.record["resume"])
    check.save()
    print(f"wrote {check.json} and {check.md}")
    common.last_line_json(check.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
