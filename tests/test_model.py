"""MSSTNet: shapes of every variant, temporal-only attention, fusion order, gradients, errors."""

import itertools

import pytest
import torch

from msstlib.config import PRESETS
from msstlib.model import MSSTConfig, MSSTNet, ResNet18Mean, build_model

# The paper's architecture at a small width so the suite stays fast (N=16 and exact tiling kept).
SMALL = MSSTConfig(image_size=64, embed_dim=32, num_heads=4, mlp_ratio=2.0, depths=(1, 1, 1))


def clip(b=2, t=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, size, size, generator=g)


@pytest.mark.parametrize("depths", list(itertools.product(range(4), repeat=3)))
def test_every_depth_combination_gives_logits(depths):
    model = build_model(SMALL.replace(depths=depths)).eval()
    with torch.no_grad():
        out = model(clip(b=2, t=4))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert [len(tf.blocks) for tf in model.tformers] == list(depths)


@pytest.mark.parametrize("frames", [1, 4, 8, 12, 16])
@pytest.mark.parametrize("variant", ["msstnet", "resnet18-mean"])
def test_output_shape_for_any_number_of_frames(frames, variant):
    model = build_model(SMALL.replace(variant=variant)).eval()
    with torch.no_grad():
        assert model(clip(b=1, t=frames)).shape == (1, 7)


def test_embeddings_are_b_t_n_d():
    model = MSSTNet(SMALL).eval()
    zs = model.embed(clip(b=2, t=8))
    assert [tuple(z.shape) for z in zs] == [(2, 8, 16, 32)] * 3
    assert [m.p for m in model.melayers] == [4, 2, 1]  # 16/8/4-pixel maps cut into 4x4 patches


def test_longer_clip_than_position_embedding_is_an_error():
    model = MSSTNet(SMALL).eval()
    with pytest.raises(ValueError, match="max_frames=16"):
        model(clip(b=1, t=17))
    assert MSSTNet(SMALL.replace(max_frames=32)).eval()(clip(b=1, t=17)).shape == (1, 7)


def test_wrong_layout_is_an_error():
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        MSSTNet(SMALL)(torch.zeros(1, 3, 4, 64, 64))  # (B, C, T, H, W) by mistake


@pytest.mark.parametrize("depth", [1, 2])
def test_tformer_attends_over_time_only(depth):
    """Perturb one patch location in one frame: T-Former outputs change at that location only,
    and there at every frame (attention carries the change across time)."""
    torch.manual_seed(0)
    model = MSSTNet(SMALL.replace(depths=(depth, depth, depth))).eval()
    # The ViT init (std 0.02) makes cross-frame effects tiny; larger weights make them plain to see.
    for name, w in model.tformers.named_parameters():
        if w.ndim == 2:
            torch.nn.init.normal_(w, std=0.3)
    z = torch.randn(2, 6, 16, 32)
    p, t = 5, 2
    z2 = z.clone()
    z2[:, t, p] += torch.randn(32)
    with torch.no_grad():
        for tformer in model.tformers:
            diff = (tformer(z2) - tformer(z)).abs().amax(dim=(0, 3))  # (T, N)
            others = torch.ones(16, dtype=torch.bool)
            others[p] = False
            assert diff[:, others].max() == 0  # no other location moved, exactly
            assert (diff[:, p] > 1e-6).all()  # every frame at location p moved
        # The whole fusion keeps locations apart too: perturb scale 1 only.
        zs = [torch.randn(2, 6, 16, 32) for _ in range(3)]
        zs2 = [zs[0].clone(), zs[1], zs[2]]
        zs2[0][:, t, p] += 3.0
        diff = (model.fuse(zs2) - model.fuse(zs)).abs().amax(dim=(0, 3))
        assert diff[:, others].max() == 0 and (diff[:, p] > 1e-6).all()


def test_fusion_is_progressive_addition_in_scale_order():
    torch.manual_seed(0)
    model = MSSTNet(SMALL).eval()
    x = clip(b=2, t=4)
    with torch.no_grad():
        z1, z2, z3 = model.embed(x)
        tf1, tf2, tf3 = model.tformers
        expected = model.head(tf3(z3 + tf2(z2 + tf1(z1))).mean(dim=(1, 2)))
        reversed_order = model.head(tf1(z1 + tf2(z2 + tf3(z3))).mean(dim=(1, 2)))
        out = model(x)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, reversed_order, atol=1e-4)


def test_absent_tformer_is_identity_in_the_fusion():
    torch.manual_seed(0)
    model = MSSTNet(SMALL.replace(depths=(0, 1, 0))).eval()
    x = clip(b=2, t=4)
    with torch.no_grad():
        z1, z2, z3 = model.embed(x)
        expected = model.head((z3 + model.tformers[1](z2 + z1)).mean(dim=(1, 2)))
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("variant", ["msstnet", "resnet18-mean"])
def test_every_parameter_receives_a_gradient(variant):
    torch.manual_seed(0)
    model = build_model(SMALL.replace(variant=variant)).train()
    loss = torch.nn.functional.cross_entropy(model(clip(b=2, t=4)), torch.tensor([0, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_same_seed_same_output_and_different_seed_different_output():
    def run(seed):
        torch.manual_seed(seed)
        return MSSTNet(SMALL).eval()(clip(b=2, t=4)).detach()

    torch.testing.assert_close(run(0), run(0), rtol=0, atol=0)
    assert not torch.allclose(run(0), run(1))


def test_mis_tiled_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layer2 at image_size=112: a 14x14 map cannot be tiled exactly into N=16"):
        MSSTConfig(image_size=112)
    with pytest.raises(ValueError, match="cannot be tiled"):
        MSSTConfig(num_patches=15)
    # A model built for 64 px given 48-px frames: its 12-px layer1 map does not fit 4-px patches.
    with pytest.raises(ValueError, match="MELayer built for 16 patches of 4x4 got a 12x12 map"):
        MSSTNet(SMALL)(torch.zeros(1, 2, 3, 48, 48))


def test_invalid_config_fields_are_reported():
    with pytest.raises(ValueError, match="variant"):
        MSSTConfig(variant="lstm")
    with pytest.raises(ValueError, match="depths"):
        MSSTConfig(depths=(1, 2))
    with pytest.raises(ValueError, match="not divisible"):
        MSSTConfig(embed_dim=100, num_heads=8)


def test_presets_keep_the_paper_values():
    paper = PRESETS["paper"].model
    assert (paper.embed_dim, paper.num_patches, paper.num_heads, paper.depths, paper.num_classes) == (
        768, 16, 8, (2, 2, 2), 7)
    cpu = PRESETS["cpu"].model
    assert cpu.num_patches == paper.num_patches and cpu.stages == paper.stages
    assert MSSTConfig(depths=[1, 2, 3]).depths == (1, 2, 3)  # lists from JSON/CLI become tuples


def test_local_backbone_weights_are_loaded(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(123)
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    torch.manual_seed(0)
    model = MSSTNet(SMALL.replace(backbone_weights=str(path)))
    torch.testing.assert_close(model.backbone.layers["layer1"][0].conv1.weight, ref.layer1[0].conv1.weight)
    base = ResNet18Mean(SMALL.replace(variant="resnet18-mean", backbone_weights=str(path)))
    torch.testing.assert_close(base.backbone.layers["layer4"][1].conv2.weight, ref.layer4[1].conv2.weight)


def test_variants_do_not_build_unused_layers():
    assert "layer4" not in MSSTNet(SMALL).backbone.layers
    assert "layer4" in ResNet18Mean(SMALL.replace(variant="resnet18-mean")).backbone.layers


@pytest.mark.parametrize("variant", ["me-lstm", "me-gru", "me-tcn", "me-mean"])
def test_matched_baselines_read_msstnets_melayers_and_swap_only_the_temporal_model(variant):
    cfg = SMALL.replace(variant=variant, embed_norm=True)
    model = build_model(cfg)
    ref = MSSTNet(SMALL.replace(embed_norm=True))
    assert isinstance(model, MSSTNet)  # the same MELayers (with their patch LayerNorm), fusion and head
    assert {k for k in model.state_dict() if not k.startswith("tformers.")} == \
        {k for k in ref.state_dict() if not k.startswith("tformers.")}
    out = model(clip(b=2, t=4))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_me_mean_is_msstnet_without_t_formers_under_its_own_name():
    none = MSSTNet(SMALL.replace(depths=(0, 0, 0))).eval()
    mean = build_model(SMALL.replace(variant="me-mean")).eval()
    mean.load_state_dict(none.state_dict())  # no temporal parameters at all: the same tensors
    x = clip(b=2, t=4)
    with torch.no_grad():
        torch.testing.assert_close(mean(x), none(x))


def test_matched_recurrent_layers_see_each_patch_location_on_its_own():
    model = build_model(SMALL.replace(variant="me-gru")).eval()
    z = torch.randn(1, 4, 16, SMALL.embed_dim)
    z2 = z.clone()
    z2[:, :, 5] += 1.0  # change one patch location at every frame
    with torch.no_grad():
        y, y2 = model.tformers[0](z), model.tformers[0](z2)
    changed = (y - y2).abs().amax(dim=(0, 1, 3)) > 1e-6
    assert changed.tolist() == [i == 5 for i in range(16)]


def test_head_norm_is_a_layernorm_before_the_classifier_and_absent_by_default(tiny):
    """Eq. (12) classifies the pooled y_3 as it is: by default no parameter is added (checkpoints and
    run ids unchanged); head_norm=True (a deviation) normalises the pooled vector first."""
    from msstlib import config

    ann, root = tiny[0], tiny[1]
    plain, normed = MSSTNet(SMALL), MSSTNet(SMALL.replace(head_norm=True))
    assert set(normed.state_dict()) - set(plain.state_dict()) == {"head_norm.weight", "head_norm.bias"}
    assert not any(k.startswith("head_norm") for k in plain.state_dict())
    seen = {}
    normed.head.register_forward_pre_hook(lambda m, inp: seen.__setitem__("x", inp[0]))
    x = torch.randn(2, 3, 3, 64, 64)
    normed(x)
    assert torch.allclose(seen["x"].mean(-1), torch.zeros(2), atol=1e-5)  # what the classifier reads is normalised
    assert torch.allclose(seen["x"].std(-1, unbiased=False), torch.ones(2), atol=1e-3)
    m, t, d = config.resolve("paper", frames=4, depths=(1, 1, 1))
    data = dict(dataset="synthetic", fold=1, split=None, seed=0, annotations=ann, root=root)
    base, other = config.identity(m, t, d, **data), config.identity(m.replace(head_norm=True), t, d, **data)
    assert "head_norm" not in base["model"] and other["model"]["head_norm"] is True
