"""Grad-CAM: the clip-as-batch wrapper computes true per-frame Grad-CAM; scoring is right."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msstlib import cam, fixtures
from msstlib.model import MSSTConfig, MSSTNet

CFG = MSSTConfig(image_size=64, embed_dim=32, num_heads=4, mlp_ratio=2.0, depths=(1, 1, 1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MSSTNet(CFG).eval()


def test_wrapper_routes_the_frames_as_one_clip(model):
    frames = torch.randn(5, 3, 64, 64)
    seen = []
    h = model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    out = cam.ClipAsBatch(model)(frames)
    h.remove()
    assert seen == [(1, 5, 3, 64, 64)]
    assert out.shape == (5, 7)
    torch.testing.assert_close(out[3], model(frames[None])[0])
    assert torch.equal(out[0], out[4])


def test_per_frame_maps_equal_a_hand_computed_grad_cam(model):
    torch.manual_seed(1)
    frames = torch.randn(4, 3, 64, 64)
    maps = cam.clip_cams(model, frames, label=3, layers=["CNN layer2", "T-Former2 out"])
    assert set(maps) == {"CNN layer2", "T-Former2 out"}
    for m in maps.values():
        assert m.shape == (4, 64, 64) and m.min() >= 0 and m.max() <= 1 + 1e-6
    # Reference: Grad-CAM of the clip's class-3 score w.r.t. the layer2 map of each frame.
    acts = {}
    h = model.backbone.layers["layer2"].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    logit = model(frames[None])[0, 3]
    h.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(logit, a)
    ref = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach().numpy()  # (T, 8, 8)
    for t in range(4):
        r = ref[t] - ref[t].min()
        r = r / (r.max() + 1e-7)
        r = F.interpolate(torch.tensor(r)[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
        assert np.corrcoef(r.ravel(), maps["CNN layer2"][t].ravel())[0, 1] > 0.98
    # Frames differ, so their maps differ: the package did not treat the clip as one image.
    assert not np.allclose(maps["CNN layer2"][0], maps["CNN layer2"][1])


def test_score_energy_and_pointing():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2, :2] = True
    masks[1, 4:, 4:] = True  # frame 2 has no motion: ignored
    cams = np.zeros((3, 8, 8))
    cams[0, 0, 0] = 1.0  # all energy inside, peak inside
    cams[1, 0, 0] = 1.0  # all energy outside
    s = cam.score(cams, masks)
    assert s["frames"] == 2
    assert s["energy_in_mask"] == pytest.approx(0.5) and s["pointing_hit"] == pytest.approx(0.5)
    assert cam.score(cams, np.zeros_like(masks)) == {}


def test_measure_summary_and_like_with_like_on_a_tiny_synthetic(tmp_path, capsys):
    """The Grad-CAM comparison was MSSTNet against a model at chance, with paired per-clip scores
    compared as if independent (issue 10): now a trained control and paired differences."""
    from msstlib.claims import interval
    from msstlib.fixtures import tiny_synthetic

    ann, root = tiny_synthetic(tmp_path / "d")
    control, msst = fixtures.demo_checkpoints(tmp_path / "w", ann, root)
    models = {"msst": cam.load_checkpoint(msst)[0], "gru": cam.load_checkpoint(control)[0]}
    assert models["gru"].cfg.variant == "resnet18-gru"
    src = cam.ClipSource(ann, root, 1, 4, 64)
    scores = cam.measure(models, src, max_clips=6, progress=False)
    # a batch run's progress: one plain summary line, no bar (issue 28)
    assert re.search(r"^Grad-CAM: scored 6/\d+ test clips in \d+:\d\d$", capsys.readouterr().out, re.M)
    msst_layers = set(scores[scores["model"] == "msst"]["layer"])
    assert msst_layers == {"CNN layer1", "CNN layer2", "CNN layer3", "T-Former1 out", "T-Former2 out",
                           "T-Former3 out", "CNN layer1 at 4x4", "CNN layer2 at 4x4", "CNN layer3 at 4x4"}
    assert set(scores[scores["model"] == "gru"]["layer"]) == {"CNN layer1", "CNN layer2", "CNN layer3"}
    s = cam.summarize(scores)
    # The interval is mean +- 1.96 sd / sqrt(clips) of the per-clip scores, recomputed here by hand.
    for (model, layer), group in scores.groupby(["model", "layer"]):
        row = s[(s["model"] == model) & (s["layer"] == layer)].iloc[0]
        values = group["energy_in_mask"].to_numpy()
        half = 1.96 * values.std(ddof=1) / np.sqrt(group["clip"].nunique())
        assert row["energy_in_mask"] == pytest.approx(values.mean())
        assert (row["energy_in_mask_ci_low"], row["energy_in_mask_ci_high"]) == pytest.approx(
            (values.mean() - half, values.mean() + half))
    assert s["energy_in_mask"].between(0, 1).all() and s["mask_area"].between(0, 1).all()
    like = cam.like_with_like(scores, "msst", "gru", models["msst"])
    assert list(like["comparison"]) == ["within msst"] * 3 + ["msst vs gru"] * 3
    # Paired by clip: the difference of the per-clip scores, not of two independent means.
    first = like.iloc[0]
    a = scores[(scores["model"] == "msst") & (scores["layer"] == "T-Former1 out")].set_index("clip")["energy_in_mask"]
    b = scores[(scores["model"] == "msst") & (scores["layer"] == "CNN layer1 at 4x4")].set_index("clip")[
        "energy_in_mask"]
    mean, low, high, _ = interval((a - b[a.index]).to_numpy())
    assert (first["diff"], first["ci_low"], first["ci_high"]) == pytest.approx((mean, low, high))
    assert cam.verdict(like).count("\n") == 5


def test_a_cnn_map_on_the_patch_grid_is_constant_within_each_cell():
    cams = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    g = cam.on_grid(cams, 4)
    assert g.shape == cams.shape and g.min() >= 0 and g.max() <= 1 + 1e-6
    same = cam.on_grid(np.kron(np.arange(16, dtype=np.float32).reshape(4, 4), np.ones((16, 16)))[None], 4)[0]
    assert same[8, 8] < same[8, 24] < same[8, 40]  # the cells' order survives the resampling


def test_without_masks_the_source_gives_the_figure_only(tmp_path):
    import shutil

    from msstlib.fixtures import tiny_synthetic

    ann, root = tiny_synthetic(tmp_path / "d")
    shutil.rmtree(Path(root) / "Masks")  # what a real DFEW root looks like to this module
    src = cam.ClipSource(ann, root, 1, 4, 64)
    assert not src.has_masks
    x, y, rgb, masks, idx = src.get(0)
    assert masks is None and rgb.shape == (4, 64, 64, 3) and x.shape == (4, 3, 64, 64)


def test_a_stage_without_t_former_blocks_has_no_t_former_map():
    """The figure showed a "T-Former3 out" column for the model that has no T-Former (issue 11)."""
    plain = MSSTNet(CFG.replace(depths=(0, 0, 0))).eval()
    partial = MSSTNet(CFG.replace(depths=(1, 0, 1))).eval()
    assert not any(name.startswith("T-Former") for name in cam.layers_of(plain))
    assert [n for n in cam.layers_of(partial) if n.startswith("T-Former")] == ["T-Former1 out", "T-Former3 out"]


def test_the_figure_has_a_colour_bar_and_says_what_each_model_predicts(model):
    """No colour bar, no predicted label, and 64-px frames titled clip_224x224 (issue 11)."""
    import matplotlib.pyplot as plt

    frames = torch.randn(2, 3, 64, 64)
    maps = {"MSSTNet 111": cam.clip_cams(model, frames, 1, layers=["CNN layer1", "T-Former1 out"])}
    rgb = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    pred = cam.predict(model, frames)
    assert pred == int(model(frames[None]).argmax())
    fig = cam.figure(rgb, maps, marked="MSSTNet 111", predicted={"MSSTNet 111": "Happy"}, title="t")
    assert len(fig.axes) == 2 * 3 + 1  # frames x (input + 2 maps), and the colour bar
    assert "Grad-CAM" in fig.axes[-1].get_ylabel()
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert "64x64 px" in titles[0] and all("predicts Happy" in t for t in titles[1:])
    plt.close(fig)


def test_grad_cam_samples_a_clip_as_the_models_test_set_does_candidate_frames_too(tmp_path):
    """A model trained with DataConfig.candidate_frames is tested on frames picked among its K
    candidates; Grad-CAM must score it on those same frames (it sampled among every frame)."""
    from msstlib.data import ClipDataset, DataConfig
    from msstlib.fixtures import tiny_synthetic

    ann, root = tiny_synthetic(tmp_path / "d")
    picked = {}
    for k in (0, 8):
        src = cam.ClipSource(ann, root, 1, 4, 64, candidate_frames=k)
        ds = ClipDataset(ann, root, fold=1, train=False, cfg=DataConfig(frames=4, image_size=64, candidate_frames=k))
        for i in range(len(src)):
            x, y, _, _, idx = src.get(i, with_masks=False)
            x2, y2 = ds[i]
            assert torch.equal(x, x2) and y == y2, (k, i)
            picked[k, i] = tuple(idx)
    assert any(picked[0, i] != picked[8, i] for i in range(len(src)))  # K = 8 picks other frames of a long clip
