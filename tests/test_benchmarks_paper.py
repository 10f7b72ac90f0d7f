"""The paper-preset benchmarks (issue 29) and the benchmarks' shared set-up (issue 28).

Each script runs end to end at its tiniest size in a subprocess (one thread), and its last line must
be the JSON record with sane values. Nothing here asserts a timing: only that figures exist, are
positive and finite, and that what must be exact is (cache bytes per frame, a resumed CPU run).
"""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

TINY_DATA = ["--render-size", "64"]  # SynDFER's study size: rendering at DFEW's 224 px is for real runs


def run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def sane(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ------------------------------------------------------------------------------ the shared set-up


def test_no_benchmark_imports_under_a_one_letter_alias():
    """Nor a capitals abbreviation (``features as FT``); the conventions ``np`` and ``pd`` are fine."""
    found = []
    for path in BENCHMARKS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [f"{path.name}: {alias.name} as {alias.asname}" for alias in node.names
                          if alias.asname is not None and (len(alias.asname) == 1 or alias.asname.isupper())]
    assert not found


def test_the_frozen_backbone_set_up_is_written_once():
    copies = [path.name for path in BENCHMARKS.glob("*.py")
              if path.name != "common.py" and "requires_grad_(False)" in path.read_text()]
    assert not copies, f"these benchmarks set up a frozen backbone by hand instead of common.frozen_setup: {copies}"


def test_frozen_setup_freezes_the_backbone_and_trains_the_rest():
    from msstlib import features
    from msstlib.config import PRESETS

    stages = PRESETS["cpu"].model.stages
    setup = common.frozen_setup(layout=features.layout(64, stages), embed_dim=32, num_heads=4)
    model = setup.model
    assert isinstance(setup.net, features.FeatureInput) and setup.net.model is model
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training and model.training and model.tformers.training
    optimised = {id(p) for group in setup.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}
    assert common.frozen_setup(embed_dim=32, num_heads=4).net is not None  # frames: the model itself


def test_spec_sheet_peaks_are_found_by_device_name():
    assert common.spec_peak("NVIDIA H100 80GB HBM3")[0] == "H100 SXM"
    assert common.spec_peak("NVIDIA H100 PCIe") == (None, None)  # another card, other peaks
    assert common.spec_peak("NVIDIA TITAN RTX")[1] == {"fp16": 130.0, "fp32": 16.3}


@pytest.mark.parametrize("script, args, says", [
    ("bench_paper_preset.py", ["--steps", "0"], "--steps"),
    ("bench_paper_preset.py", ["--size", "112"], "cannot be tiled"),
    ("dfew_scale.py", ["--clips", "100", "50"], "--clips"),
    ("gpu_check.py", ["--compile-backend", "tvm"], "--compile-backend"),
    ("gpu_check.py", ["--device", "tpu"], "--device"),
    ("paper_stability.py", ["--arm", "clip"], "NAME=KEY:VALUE"),
    ("paper_stability.py", ["--arm", "x=no_such_field:1"], "no_such_field"),
    ("paper_stability.py", ["--device", "tpu"], "--device"),
])
def test_a_bad_flag_is_one_line_and_exit_status_2(script, args, says):
    done = run(script, *args, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


# ------------------------------------------------------------------------------ the three scripts


@pytest.mark.slow
def test_bench_paper_preset_runs_both_models_and_the_loader_and_ends_in_its_json(tmp_path):
    record = last_json(run("bench_paper_preset.py", "--steps", "2", "--batch", "2", "--clips", "35", *TINY_DATA,
                           "--frames", "4", "--size", "64", "--loader-sizes", "64", "--loader-clips", "4",
                           "--workers", "1", "--repeats", "1", "--data", str(tmp_path / "data")))
    assert (record["frames"], record["size"], record["batch"]) == (4, 64, 2)
    for key in ("s_per_step", "clips_per_s", "peak_rss_mb", "compute_s_per_step", "gflops_per_clip",
                "gemm_peak_tflops_fp32", "share_of_gemm_peak"):
        assert sane(record[key]), key
    assert record["clips_per_s"] == pytest.approx(2 / record["s_per_step"], rel=1e-3)
    baseline = record["baseline"]
    assert baseline["variant"] == "resnet18-lstm" and sane(baseline["msstnet_to_baseline_step_ratio"])
    assert baseline["gflops_per_clip"] < record["gflops_per_clip"]
    assert sane(record["loader"]["64"]["per_worker_clips_per_s"]) and sane(record["loader"]["64"]["workers"]["1"])
    assert record["gpu_feed"] and all(row["loader_workers_needed"] >= 1 for row in record["gpu_feed"])


@pytest.mark.slow
def test_dfew_scale_measures_two_sizes_projects_both_datasets_and_cleans_up(tmp_path):
    data = tmp_path / "data"
    record = last_json(run("dfew_scale.py", "--clips", "35", "40", *TINY_DATA, "--data", str(data), "--frames", "4",
                           "--depths", "1", "1", "1", "--steps", "2", "--paper-batch", "1", "--paper-frames", "4"))
    for dataset in ("dfew", "ferv39k"):
        for key in ("frame_cache_gb", "feature_cache_gb", "cpu_row_hours", "paper_epoch_hours_cpu"):
            assert sane(record[dataset][key]), (dataset, key)
    assert record["ferv39k"]["frames"] > record["dfew"]["frames"]
    # Cache bytes per frame do not depend on the dataset's size (up to the .npy header).
    for name, ratio in record["linearity_large_over_small"].items():
        if "bytes" in name:
            assert ratio == pytest.approx(1.0, abs=0.01), name
    assert record["measured"]["40"]["row"]["input"].startswith("feature cache")
    assert not list((data / "scale").glob("scale_*/cache/*.npy"))  # removed unless --keep-caches


@pytest.mark.slow
def test_gpu_check_runs_its_whole_path_on_the_cpu_into_the_folder_given(tmp_path):
    out = tmp_path / "out"
    before = set((ROOT / "results" / "gpu").glob("*")) if (ROOT / "results" / "gpu").exists() else set()
    record = last_json(run("gpu_check.py", "--device", "cpu", "--steps", "2", "--warmup", "1", "--frames", "4",
                           "--size", "64", *TINY_DATA, "--compile-backend", "aot_eager",
                           "--data", str(tmp_path / "data"), "--out", str(out)))
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".md")
    assert json.loads((out / files[0]).read_text()) == record
    assert "Not a GPU figure" in (out / files[1]).read_text()
    now = set((ROOT / "results" / "gpu").glob("*")) if (ROOT / "results" / "gpu").exists() else set()
    assert now == before  # nothing written into results/ from a test
    assert record["device_type"] == "cpu"
    assert {(row["dtype"], row["compile"]) for row in record["throughput"]} == {
        ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    for row in record["throughput"]:
        assert sane(row["clips_per_s"]) and sane(row["peak_memory_mb"]) and sane(row["mfu_measured"])
    resume = record["resume"]
    assert resume["killed_mid_run"] and resume["killed_after_epoch"] == 1
    assert resume["verdict"] == "bit-identical" and resume["loss_resumed"] == resume["loss_uninterrupted"]
    ddp = record["ddp"]
    assert (ddp["processes"], ddp["backend"]) == (2, "gloo") and sane(ddp["clips_per_s"])
    assert len(ddp["loss"]) == 2 and all(math.isfinite(v) for v in ddp["loss"])


def test_paper_stability_trains_every_arm_on_the_same_batches_and_stops_one_at_its_first_nan(tmp_path):
    record = last_json(run("paper_stability.py", "--steps", "3", "--batch", "2", "--clips", "35", *TINY_DATA,
                           "--frames", "2", "--size", "64", "--data", str(tmp_path / "data"),
                           "--arm", "paper=", "--arm", "lr 0.01=lr:0.01", "--arm", "blows up=lr:1e30"))
    arms = record["arms"]
    assert list(arms) == ["paper", "lr 0.01", "blows up"] and (record["steps"], record["frames"]) == (3, 2)
    # The same initialisation and the same first batch: the learning rate cannot change step 1's loss.
    assert arms["paper"]["loss_step1"] == arms["lr 0.01"]["loss_step1"] == arms["blows up"]["loss_step1"]
    assert arms["paper"]["losses"][1] != arms["lr 0.01"]["losses"][1]  # ... but it changes step 2's
    assert all(sane(arms[a][k]) for a in ("paper", "lr 0.01") for k in ("head_input_norm_step1", "grad_norm_step1"))
    parts = arms["paper"]["grad_parts_step1"]  # the parts' norms make up the total
    assert {"head.weight", "melayers.0", "tformers.0", "backbone.stem"} <= set(parts)
    assert math.isclose(sum(v * v for v in parts.values()) ** 0.5, arms["paper"]["grad_norm_step1"], rel_tol=1e-3)
    bad = arms["blows up"]
    assert bad["first_nonfinite_step"] in (2, 3) and len(bad["losses"]) == bad["first_nonfinite_step"]
    assert bad["losses"][-1] is None and bad["loss_last10_mean"] is None


def test_paper_stability_runs_on_into_the_next_epoch_when_asked_for_more_steps_than_one_holds(tmp_path):
    # fold 1 of a 35-clip draw holds 14 batches of 2: 16 steps are one epoch and two batches of the next
    record = last_json(run("paper_stability.py", "--steps", "16", "--batch", "2", "--clips", "35", *TINY_DATA,
                           "--frames", "2", "--size", "64", "--data", str(tmp_path / "data"), "--arm", "lr 0.001=lr:0.001"))
    arm = record["arms"]["lr 0.001"]
    assert (record["epochs"], record["device"]) == (2, "cpu") and len(arm["losses"]) == 16
    assert all(math.isfinite(v) for v in arm["losses"]) and arm["loss_last10_mean"] is not None
