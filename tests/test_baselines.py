"""Table 3's same-backbone baselines (LSTM, GRU, TCN) and MSSTNet with joint space-time attention."""

import pytest
import torch

from msstlib import config as C
from msstlib.config import PRESETS
from msstlib.flops import count_gmacs
from msstlib.model import MSSTNet, ResNet18Temporal, TFormer, build_model

CPU = PRESETS["cpu"].model.replace(depths=(1, 1, 1))
TEMPORAL = ("resnet18-lstm", "resnet18-gru", "resnet18-tcn")


@pytest.mark.parametrize("variant", TEMPORAL)
def test_baselines_give_logits_and_train_only_what_follows_a_frozen_backbone(variant):
    torch.manual_seed(0)
    model = build_model(CPU.replace(variant=variant))
    assert isinstance(model, ResNet18Temporal) and model.feature_stages == ("pool4",)
    model.backbone.requires_grad_(False)
    x = torch.randn(2, 4, 3, 64, 64)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if not n.startswith("backbone.")}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.parametrize("variant", TEMPORAL)
def test_baselines_read_the_pooled_feature_and_see_frame_order(variant):
    """forward == forward_maps(pooled layer4) (the feature-cache path); unlike the temporal mean,
    each of them gives another output when the frames are reversed."""
    torch.manual_seed(0)
    model = build_model(CPU.replace(variant=variant)).eval()
    mean = build_model(CPU.replace(variant="resnet18-mean")).eval()
    x = torch.randn(2, 5, 3, 64, 64)
    with torch.no_grad():
        pooled = model.backbone(x.flatten(0, 1))["layer4"].mean(dim=(2, 3))
        torch.testing.assert_close(model(x), model.forward_maps({"pool4": pooled}, 2, 5))
        assert not torch.allclose(model(x), model(x.flip(1)), atol=1e-6)
        torch.testing.assert_close(mean(x), mean(x.flip(1)), rtol=1e-5, atol=1e-6)


def test_lstm_and_gru_have_the_fields_width():
    lstm = build_model(CPU.replace(variant="resnet18-lstm"))
    gru = build_model(CPU.replace(variant="resnet18-gru"))
    assert lstm.temporal.hidden_size == gru.temporal.hidden_size == 512 and lstm.temporal.num_layers == 1
    assert build_model(CPU.replace(variant="resnet18-tcn", baseline_hidden=64)).head.in_features == 64


def test_baseline_flops_are_counted_including_the_lstm():
    """torch runs nn.LSTM on the CPU as one oneDNN kernel the flop counter cannot see into; its
    multiply-accumulates are added from its sizes (4 gates x (512 + 512) x 512 per frame)."""
    frames = 4
    base = count_gmacs(CPU.replace(variant="resnet18-mean"), frames)
    lstm = count_gmacs(CPU.replace(variant="resnet18-lstm"), frames)
    gru = count_gmacs(CPU.replace(variant="resnet18-gru"), frames)
    tcn = count_gmacs(CPU.replace(variant="resnet18-tcn"), frames)
    assert lstm["temporal"] == pytest.approx(4 * 1024 * 512 * frames / 1e9)
    assert gru["temporal"] == pytest.approx(3 * 1024 * 512 * frames / 1e9)
    assert tcn["temporal"] == pytest.approx((512 * 512 * 3 * frames * 5) / 1e9)
    for g in (lstm, gru, tcn):
        assert g["backbone"] == base["backbone"]
        assert g["total"] == pytest.approx(base["total"] + g["temporal"])


def _tformer(attention):
    torch.manual_seed(0)
    return TFormer(CPU.replace(attention=attention), depth=1).eval()


def test_joint_attention_mixes_patch_locations_and_temporal_attention_does_not():
    z = torch.randn(1, 4, 16, 128)  # (B, T, N, D)
    z2 = z.clone()
    z2[0, 0, 3] += 1.0  # change one patch of the first frame
    for attention, mixes in (("temporal", False), ("joint", True)):
        t = _tformer(attention)
        with torch.no_grad():
            d = (t(z2) - t(z)).abs().sum(dim=(0, 1, 3))  # change per patch location
        assert d[3] > 0
        others = torch.cat([d[:3], d[4:]])
        assert (others > 1e-6).all() if mixes else (others == 0).all(), attention


def test_joint_attention_model_costs_more_attention_and_knows_patch_positions():
    joint = build_model(CPU.replace(attention="joint"))
    temporal = build_model(CPU)
    assert isinstance(joint, MSSTNet)
    assert all(m.spatial_pos is not None for m in joint.melayers)
    assert all(m.spatial_pos is None for m in temporal.melayers)
    for frames in (4, 16):
        gj = count_gmacs(CPU.replace(attention="joint"), frames, joint)
        gt = count_gmacs(CPU, frames, temporal)
        assert gj["tformers"] > gt["tformers"] and gj["backbone"] == gt["backbone"]
    x = torch.randn(2, 4, 3, 64, 64)
    y = joint(x)
    y.sum().backward()
    assert y.shape == (2, 7) and joint.melayers[0].spatial_pos.grad.abs().sum() > 0


def test_new_fields_keep_old_run_ids_unless_changed(tiny, r18):
    ann, root = tiny

    def ident(**model_changes):
        m, t, d = C.resolve("cpu", overrides={"backbone_weights": r18})
        m = m.replace(**model_changes)
        return C.identity(m, t, d, dataset="synthetic", fold=1, split=None, seed=0, annotations=ann, root=root)

    plain = ident()
    assert "attention" not in plain["model"] and "baseline_hidden" not in plain["model"]
    assert C.run_id(ident(attention="temporal")) == C.run_id(plain)
    assert C.run_id(ident(attention="joint")) != C.run_id(plain)
    assert C.run_id(ident(baseline_hidden=256)) != C.run_id(plain)
    with pytest.raises(ValueError, match="attention='spatial'"):
        CPU.replace(attention="spatial")


def test_a_baseline_trains_through_the_training_loop(tiny, r18, tmp_path):
    from msstlib import train as T

    ann, root = tiny
    r = T.run(annotations=ann, root=root, fold=1, frames=4, depths=(0, 0, 0), variant="resnet18-gru", preset="cpu",
              epochs=1, seed=0, work_dir=str(tmp_path / "w"), overrides={"backbone_weights": r18, "batch_size": 16},
              progress=False)
    assert r["variant"] == "resnet18-gru" and r["test_clips"] == 14 and r["gflops"] > 0
