"""Training: the result contract, resume == uninterrupted, NaN handling, schedule, flags."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from msstlib import train as T
from msstlib.labels import EMOTIONS
from msstlib.study import tiny_synthetic

SMALL = {"embed_dim": 32, "num_heads": 4, "batch_size": 16}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory.mktemp("syndfer") / "data")


def _run(tiny, work, **kw):
    ann, root = tiny
    args = dict(annotations=ann, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=2,
                seed=0, work_dir=str(work), overrides=dict(SMALL), progress=False)
    args.update(kw)
    return T.run(**args)


def test_result_json_holds_the_contract(tiny, tmp_path):
    r = _run(tiny, tmp_path / "w", result_dir=str(tmp_path / "res"), epochs=1)
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


def test_resume_after_a_kill_reaches_the_same_result(tiny, tmp_path, monkeypatch):
    full = _run(tiny, tmp_path / "full", epochs=3)

    saves = {"n": 0}
    real_save = T._atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(T, "_atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "killed", epochs=3)
    assert not (tmp_path / "killed" / "result.json").exists()
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    resumed = _run(tiny, tmp_path / "killed", epochs=3)  # run() resumes when a checkpoint exists
    assert resumed["war"] == full["war"] and resumed["uar"] == full["uar"]
    assert resumed["confusion"] == full["confusion"]
    a = pd.read_csv(tmp_path / "full" / "log.csv")
    b = pd.read_csv(tmp_path / "killed" / "log.csv")
    pd.testing.assert_frame_equal(a.drop(columns=["seconds", "clips_per_s"]), b.drop(columns=["seconds", "clips_per_s"]))
    ma = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    mb = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["model"]
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=0, atol=0)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_ce = T.F.cross_entropy

    def ce_then_nan(*a, **k):
        calls["n"] += 1
        loss = real_ce(*a, **k)
        return loss * float("nan") if calls["n"] > 4 else loss  # 56 training clips / 16 = 4 steps per epoch

    monkeypatch.setattr(T.F, "cross_entropy", ce_then_nan)
    ann, root = tiny
    out = tmp_path / "nan"
    status = T.main(["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "1", "1", "1",
                     "--preset", "cpu", "--epochs", "3", "--embed-dim", "32", "--num-heads", "4", "--batch-size", "16",
                     "--out", str(out), "--no-progress"])
    assert status == T.EXIT_NAN
    err = capsys.readouterr().err
    assert "loss became nan at epoch 2" in err and "checkpoint" in err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (out / "result.json").exists()
    # Through run() with a result folder, the divergence is recorded with the log so far.
    calls["n"] = 0
    with pytest.raises(FloatingPointError):
        _run(tiny, tmp_path / "nan2", epochs=3, result_dir=str(tmp_path / "res"))
    record = json.loads((tmp_path / "res" / "diverged.json").read_text())
    assert record["status"] == "diverged" and "epoch 2" in record["message"] and len(record["log"]) == 1
    assert not (tmp_path / "res" / "result.json").exists()


def test_existing_checkpoint_needs_resume(tiny, tmp_path, capsys):
    ann, root = tiny
    args = ["--annotations", ann, "--root", root, "--fold", "1", "--frames", "4", "--depths", "0", "0", "1",
            "--preset", "cpu", "--epochs", "1", "--embed-dim", "32", "--num-heads", "4", "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert T.main(args) == 0
    assert T.main(args) == 2 and "pass --resume" in capsys.readouterr().err
    assert T.main(args + ["--resume"]) == 0  # a finished run: re-evaluated, same numbers


def test_frozen_backbone_stays_frozen(tiny, tmp_path):
    _run(tiny, tmp_path / "w", epochs=1)
    state = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=False)["model"]
    torch.manual_seed(0)
    from msstlib.model import build_model
    fresh = build_model(T.PRESETS["cpu"].model.replace(embed_dim=32, num_heads=4, depths=(1, 1, 1))).state_dict()
    for k, v in state.items():
        if k.startswith("backbone."):
            torch.testing.assert_close(v, fresh[k], rtol=0, atol=0)  # weights and BatchNorm statistics
    assert any(not torch.equal(state[k], fresh[k]) for k in state if k.startswith("tformers."))


def test_paper_schedule_and_shortened_milestones():
    cfg = T.TrainConfig()
    assert cfg.milestone_epochs() == [20, 35]
    assert [T.lr_factor(e, cfg) for e in (0, 19.9, 20, 34.9, 35, 39.9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    short = T.TrainConfig(epochs=8)
    assert short.milestone_epochs() == [4, 7]
    cos = T.TrainConfig(schedule="cosine", epochs=10)
    assert T.lr_factor(0, cos) == pytest.approx(1) and T.lr_factor(5, cos) == pytest.approx(0.5)
    paper = T.PRESETS["paper"].train
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay, paper.epochs, paper.freeze_backbone) == (
        "sgd", 0.1, 0.9, 1e-4, 40, False)


def test_cli_flags_map_one_to_one_onto_config_fields():
    args = T.build_parser().parse_args(
        ["--annotations", "a", "--root", "r", "--fold", "2", "--frames", "8", "--depths", "2", "0", "3",
         "--preset", "cpu", "--out", "o", "--lr", "0.01", "--embed-norm", "false", "--crop-scale", "0.5", "1.0",
         "--optimizer", "sgd", "--grad-clip", "1.5", "--variant", "msstnet", "--max-frames", "32"])
    model, train, data = T.configs_from_args(args)
    assert model.depths == (2, 0, 3) and model.embed_norm is False and model.max_frames == 32
    assert train.lr == 0.01 and train.optimizer == "sgd" and train.grad_clip == 1.5 and train.epochs == 5
    assert data.frames == 8 and data.crop_scale == (0.5, 1.0) and data.image_size == model.image_size == 64
    import dataclasses
    flags = {a.dest for a in T.build_parser()._actions}
    for cls in (T.MSSTConfig, T.TrainConfig, T.DataConfig):
        assert {f.name for f in dataclasses.fields(cls)} <= flags, cls


def test_unknown_override_is_an_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown config fields: \\['learning_rate'\\]"):
        _run(tiny, tmp_path / "w", overrides={"learning_rate": 1})
