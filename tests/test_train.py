"""Training: the result contract, resume == uninterrupted, NaN handling, schedule, flags."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from msstlib import config as C
from msstlib import loop
from msstlib import train as T
from msstlib.labels import EMOTIONS

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}


@pytest.fixture(scope="module")
def small(r18):
    return {**SMALL, "backbone_weights": r18}


def _run(tiny, work, small, **kw):
    ann, root = tiny
    args = dict(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=2,
                seed=0, work_dir=str(work), overrides=dict(small), progress=False)
    args.update(kw)
    return T.run(**args)


def test_result_json_holds_the_contract(tiny, small, tmp_path):
    r = _run(tiny, tmp_path / "w", small, result_dir=str(tmp_path / "res"), epochs=1)
    saved = json.loads((tmp_path / "res" / "result.json").read_text())
    assert saved == json.loads(json.dumps(r))
    for key in ["dataset", "fold", "frames", "depths", "variant", "preset", "epochs", "seed", "war", "uar",
                "per_class", "confusion", "gflops", "params", "wall_s", "versions", "config"]:
        assert key in saved, key
    assert saved["dataset"] == "synthetic" and saved["fold"] == 1 and saved["depths"] == [1, 1, 1]
    assert 0 <= saved["war"] <= 1 and 0 <= saved["uar"] <= 1
    assert list(saved["per_class"]) == list(EMOTIONS)
    cm = np.array(saved["confusion"])
    assert cm.shape == (7, 7) and cm.sum() == saved["test_clips"] == 14  # fold 1 of 70 clips
    assert saved["war"] == pytest.approx(np.trace(cm) / cm.sum())
    assert saved["config"]["model"]["embed_dim"] == 32 and saved["config"]["train"]["optimizer"] == "adamw"
    log = pd.read_csv(tmp_path / "res" / "log.csv")
    assert list(log.columns) == ["epoch", "loss", "lr", "train_acc", "test_war", "test_uar", "seconds", "clips_per_s"]
    assert "chosen on the test set, not a result" in saved["best_epoch_selected_on_test"]["note"]


def test_resume_after_a_kill_reaches_the_same_result(tiny, small, tmp_path, monkeypatch):
    full = _run(tiny, tmp_path / "full", small, epochs=3)

    saves = {"n": 0}
    real_save = loop.save_checkpoint

    def save_then_die(obj, path):
        real_save(obj, path)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "killed", small, epochs=3)
    assert not (tmp_path / "killed" / "result.json").exists()
    assert T.load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    resumed = _run(tiny, tmp_path / "killed", small, epochs=3)  # run() resumes when a checkpoint exists
    assert resumed["war"] == full["war"] and resumed["uar"] == full["uar"]
    assert resumed["confusion"] == full["confusion"]
    a = pd.read_csv(tmp_path / "full" / "log.csv")
    b = pd.read_csv(tmp_path / "killed" / "log.csv")
    pd.testing.assert_frame_equal(a.drop(columns=["seconds", "clips_per_s"]), b.drop(columns=["seconds", "clips_per_s"]))
    ma = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    mb = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=0, atol=0)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny, small, r18, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_ce = torch.nn.functional.cross_entropy

    def ce_then_nan(*a, **k):
        calls["n"] += 1
        loss = real_ce(*a, **k)
        return loss * float("nan") if calls["n"] > 4 else loss  # 56 training clips / 16 = 4 steps per epoch

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", ce_then_nan)
    ann, root = tiny
    out = tmp_path / "nan"
    status = T.main(["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
                     "--preset", "cpu", "--epochs", "3", "--embed-dim", "32", "--num-heads", "4", "--batch-size", "16",
                     "--backbone-weights", r18, "--out", str(out), "--no-progress"])
    assert status == T.EXIT_NAN
    err = capsys.readouterr().err
    assert "loss became nan at epoch 2" in err and "checkpoint" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "result.json").exists()
    # Through run() with a result folder, the divergence is recorded with the log so far.
    calls["n"] = 0
    with pytest.raises(FloatingPointError):
        _run(tiny, tmp_path / "nan2", small, epochs=3, result_dir=str(tmp_path / "res"))
    record = json.loads((tmp_path / "res" / "diverged.json").read_text())
    assert record["status"] == "diverged" and "epoch 2" in record["message"] and len(record["log"]) == 1
    assert not (tmp_path / "res" / "result.json").exists()
    # Its identity, as a result.json has: a study on another build recognises the probe (README "Builds").
    assert C.run_id(record["identity"]) == record["run_id"]
    assert record["identity"]["model"]["backbone_weights"] == C.weights_digest(r18)


def test_existing_checkpoint_needs_resume(tiny, r18, tmp_path, capsys):
    ann, root = tiny
    args = ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "0", "0", "1",
            "--preset", "cpu", "--epochs", "1", "--embed-dim", "32", "--num-heads", "4", "--backbone-weights", r18,
            "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert T.main(args) == 0
    assert T.main(args) == 2 and "pass --resume" in capsys.readouterr().err
    assert T.main(args + ["--resume"]) == 0  # a finished run: re-evaluated, same numbers


def test_frozen_backbone_stays_frozen(tiny, small, r18, tmp_path):
    _run(tiny, tmp_path / "w", small, epochs=1)
    state = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    from msstlib.model import build_model
    fresh = build_model(T.PRESETS["cpu"].model.replace(embed_dim=32, num_heads=4, depths=(1, 1, 1),
                                                       backbone_weights=r18)).state_dict()
    for k, v in state.items():
        if k.startswith("backbone."):
            torch.testing.assert_close(v, fresh[k], rtol=0, atol=0)  # weights and BatchNorm statistics
    assert any(not torch.equal(state[k], fresh[k]) for k in state if k.startswith("tformers."))


def test_paper_schedule_and_shortened_milestones():
    cfg = T.TrainConfig()
    assert cfg.milestone_epochs() == [20, 35]
    assert [loop.lr_factor(e, cfg) for e in (0, 19.9, 20, 34.9, 35, 39.9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    short = T.TrainConfig(epochs=8)
    assert short.milestone_epochs() == [4, 7]
    cos = T.TrainConfig(schedule="cosine", epochs=10)
    assert loop.lr_factor(0, cos) == pytest.approx(1) and loop.lr_factor(5, cos) == pytest.approx(0.5)
    paper = T.PRESETS["paper"].train
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay, paper.epochs, paper.freeze_backbone) == (
        "sgd", 0.1, 0.9, 1e-4, 40, False)


def test_cli_flags_map_one_to_one_onto_config_fields():
    args = T.build_parser().parse_args(
        ["--annotations", "a", "--root", "r", "--fold", "2", "--frames", "8", "--depths", "2", "0", "3",
         "--preset", "cpu", "--out", "o", "--lr", "0.01", "--embed-norm", "false", "--crop-scale", "0.5", "1.0",
         "--optimizer", "sgd", "--grad-clip", "1.5", "--variant", "msstnet", "--max-frames", "32",
         "--freeze-backbone", "false"])
    model, train, data = T.configs_from_args(args)
    assert model.depths == (2, 0, 3) and model.embed_norm is False and model.max_frames == 32
    assert train.lr == 0.01 and train.optimizer == "sgd" and train.grad_clip == 1.5 and train.epochs == 5
    assert data.frames == 8 and data.crop_scale == (0.5, 1.0) and data.image_size == model.image_size == 64
    import dataclasses
    flags = {a.dest for a in T.build_parser()._actions}
    for cls in (T.MSSTConfig, T.TrainConfig, T.DataConfig):
        assert {f.name for f in dataclasses.fields(cls)} <= flags, cls


def test_unknown_override_is_an_error(tiny, small, tmp_path):
    with pytest.raises(ValueError, match="unknown config fields: \\['learning_rate'\\]"):
        _run(tiny, tmp_path / "w", small, overrides={"learning_rate": 1})


# ------------------------------------------------------------------ faults found in review (issue 8)


def test_resume_with_other_threads_and_from_another_mount(tiny, small, tmp_path, monkeypatch):
    """The same run resumed with another thread count (another --jobs) and with the dataset and the
    backbone at other absolute paths (another machine or mount) continues; the result is unchanged."""
    import shutil

    full = _run(tiny, tmp_path / "full", small, epochs=2, threads=1)
    real_save = loop.save_checkpoint

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "killed", small, epochs=2, threads=1)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    ann, root = tiny
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(root, moved)
    weights = tmp_path / "elsewhere" / "r18.pt"
    shutil.copy(small["backbone_weights"], weights)
    resumed = T.run(annotations=str(moved / "prepared" / "annotations.csv"), root=str(moved), fold=1, frames=4,
                    depths=(1, 1, 1), preset="cpu", epochs=2, seed=0, work_dir=str(tmp_path / "killed"),
                    overrides={**small, "backbone_weights": str(weights), "num_workers": 0}, threads=2, progress=False)
    assert resumed["run_id"] == full["run_id"]
    assert resumed["confusion"] == full["confusion"] and resumed["war"] == full["war"]
    assert pd.read_csv(tmp_path / "killed" / "log.csv")["epoch"].tolist() == [1, 2]


def test_resume_refuses_a_different_run_and_names_the_fields(tiny, small, r18, tmp_path, capsys):
    ann, root = tiny
    base = ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
            "--preset", "cpu", "--embed-dim", "32", "--num-heads", "4", "--backbone-weights", r18,
            "--out", str(tmp_path / "o"), "--no-progress"]
    assert T.main(base + ["--epochs", "1"]) == 0
    assert T.main(base + ["--epochs", "2", "--lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs: 1 != 2" in err and "train.lr: 0.001 != 0.01" in err


def test_checkpoint_restores_on_any_device(tiny, small, tmp_path):
    """A checkpoint's tensors load on the CPU whatever device trains next: the saved CPU RNG state
    must stay a CPU byte tensor (``map_location=device`` put it on the GPU, and
    ``set_rng_state`` raised, so a pre-empted GPU run could never resume). The meta device stands
    in for a GPU here: a non-CPU device this machine has."""
    _run(tiny, tmp_path / "w", small, epochs=1)
    ckpt = T.load_checkpoint(tmp_path / "w" / "checkpoint.pt")
    assert {"torch_rng", "cuda_rng", "run_id", "identity"} <= set(ckpt)
    assert ckpt["torch_rng"].device.type == "cpu"
    state = torch.random.get_rng_state()
    torch.manual_seed(123)
    loop.restore_rng(ckpt, torch.device("meta"))
    assert torch.equal(torch.random.get_rng_state(), ckpt["torch_rng"])
    torch.random.set_rng_state(state)
    # What the old code did: map the checkpoint onto the training device. On a non-CPU device the
    # RNG state is no longer a CPU tensor and cannot be restored.
    moved = torch.load(tmp_path / "w" / "checkpoint.pt", map_location="meta", weights_only=True)
    with pytest.raises((TypeError, RuntimeError)):
        torch.random.set_rng_state(moved["torch_rng"])


def test_freezing_a_backbone_without_weights_is_an_error(tiny, tmp_path, capsys):
    """--preset cpu freezes the ResNet-18; on a dataset without supplied weights that froze a random
    network without a word. Now: exit 2 naming the flag, and no output folder."""
    ann, root = tiny
    out = tmp_path / "o"
    args = ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
            "--preset", "cpu", "--out", str(out), "--no-progress"]
    assert T.main(args) == 2
    err = capsys.readouterr().err
    assert "--backbone-weights" in err and "--freeze-backbone false" in err
    assert not out.exists()
    assert T.main(args + ["--backbone-weights", str(tmp_path / "missing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_later_success_removes_a_stale_divergence_record(tiny, small, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    (res / "diverged.json").write_text('{"status": "diverged"}')
    _run(tiny, tmp_path / "w", small, epochs=1, result_dir=str(res))
    assert (res / "result.json").exists() and not (res / "diverged.json").exists()


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tiny, r18, tmp_path):
    """``torchrun --nproc-per-node 2`` (gloo, CPU) against one process with the same global batch.

    Each process takes half of every global batch; its loss is scaled so DDP's averaged gradient is
    the one-process gradient, so the runs differ only by the order of floating-point additions
    (per-process sums, then the all-reduce). Measured here: the logged loss agrees to 1e-8
    (relative), the weights to 3e-5, the predictions exactly. We allow 1e-4 on the loss and 1e-3 on the weights
    (AdamW divides by sqrt(v), so a gradient coordinate near zero can move by up to lr = 1e-3 when
    rounding flips its sign). The frozen backbone keeps BatchNorm out of it (per-process batch
    statistics would make end-to-end runs differ more: the paper preset under DDP is not
    bit-comparable to one process)."""
    import subprocess
    import sys

    ann, root = tiny
    args = ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
            "--preset", "cpu", "--epochs", "2", "--embed-dim", "32", "--num-heads", "4", "--batch-size", "16",
            "--backbone-weights", r18, "--threads", "1", "--no-progress"]
    one = subprocess.run([sys.executable, "-m", "msstlib.train", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "msstlib.train", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "result.json").read_text())
    b = json.loads((tmp_path / "two" / "result.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2) and a["run_id"] == b["run_id"]
    assert b["test_clips"] == a["test_clips"] == 14  # every test clip exactly once
    assert b["confusion"] == a["confusion"] and b["war"] == a["war"] and b["uar"] == a["uar"]
    la, lb = pd.read_csv(tmp_path / "one" / "log.csv"), pd.read_csv(tmp_path / "two" / "log.csv")
    np.testing.assert_allclose(lb["loss"], la["loss"], rtol=1e-4)
    assert (lb["train_acc"] == la["train_acc"]).all()
    wa = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst < 1e-3, worst


@pytest.mark.parametrize("case", ["annotations", "root", "wrong-root", "fold", "frames"])
def test_bad_data_flags_fail_in_one_line_before_writing_anything(case, tiny, r18, tmp_path, capsys):
    """A missing annotations file printed a bare `[Errno 2]` (with --dataset given) and a wrong
    --root failed inside the DataLoader after creating --out (issue 11)."""
    ann, root = tiny
    out = tmp_path / "o"
    args = {"annotations": ann, "root": root, "fold": "1", "frames": "4"}
    args.update({"annotations": {"annotations": str(tmp_path / "nope.csv")}, "root": {"root": str(tmp_path / "x")},
                 "wrong-root": {"root": str(tmp_path)}, "fold": {"fold": "9"}, "frames": {"frames": "32"}}[case])
    argv = [a for k, v in args.items() for a in (f"--{k}", v)]
    argv += ["--dataset", "synthetic", "--preset", "cpu", "--backbone-weights", r18, "--out", str(out),
             "--no-progress", "--epochs", "1"]
    assert T.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    flag = {"annotations": "--annotations", "root": "--root", "wrong-root": "--root", "fold": "fold 9",
            "frames": "--frames 32"}[case]
    assert flag in err[0] and "Errno" not in err[0]
    assert not out.exists()


def test_weight_decay_on_matrices_is_a_new_field_that_only_its_runs_carry():
    """Issue 28: decay on matrices only (nanoGPT, timm) as a config field; the committed runs (every
    parameter decayed) keep their identity, so they stay done."""
    from msstlib.model import build_model

    model_cfg, train_cfg, data_cfg = C.resolve("cpu", frames=4, depths=(1, 1, 1),
                                               overrides={**SMALL, "backbone_weights": None, "freeze_backbone": False})
    ident = C.identity(model_cfg, train_cfg, data_cfg, dataset="synthetic", fold=1, split=None, seed=0,
                       annotations=__file__, root=".")
    assert "weight_decay_on" not in ident["train"]
    m_train = C.resolve("cpu", frames=4, depths=(1, 1, 1), overrides={**SMALL, "backbone_weights": None,
                                                                     "freeze_backbone": False,
                                                                     "weight_decay_on": "matrices"})[1]
    other = C.identity(model_cfg, m_train, data_cfg, dataset="synthetic", fold=1, split=None, seed=0,
                       annotations=__file__, root=".")
    assert other["train"]["weight_decay_on"] == "matrices" and C.run_id(other) != C.run_id(ident)
    model = build_model(model_cfg)
    every = loop.make_optimizer(model, train_cfg)
    assert [len(g["params"]) for g in every.param_groups] == [
        sum(1 for n, p in model.named_parameters() if not n.startswith("backbone.")),
        sum(1 for n, p in model.named_parameters() if n.startswith("backbone."))]
    groups = loop.make_optimizer(model, m_train).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed.isdisjoint(plain) and decayed | plain == set(names.values())
    assert "melayers.0.pos" in plain and "tformers.0.blocks.0.ln1.weight" in plain
    assert "melayers.0.proj.bias" in plain and "backbone.stem.1.weight" in plain  # a BatchNorm weight
    assert "melayers.0.proj.weight" in decayed and "backbone.stem.0.weight" in decayed
    with pytest.raises(C.ConfigError, match="--weight-decay-on 'norms'"):
        C.TrainConfig(weight_decay_on="norms")
