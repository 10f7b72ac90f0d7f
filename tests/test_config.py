"""Configuration in one place, and a run's identity (DESIGN.md §7)."""

import shutil

import pytest

from msstlib import config as C
from msstlib import identity


def _ident(tiny, **kw):
    ann, root = tiny
    preset = kw.pop("preset", "paper")
    where = {k: kw.pop(k) for k in ("fold", "seed") if k in kw}
    ann, root = kw.pop("data", (ann, root))
    model, train, data = C.resolve(preset, frames=4, depths=(1, 1, 1), overrides=kw)
    return C.identity(model, train, data, dataset="synthetic", fold=where.get("fold", 1), split=None,
                      seed=where.get("seed", 0), annotations=ann, root=root)


def test_run_id_ignores_how_and_where_a_run_goes(tiny, r18, tmp_path):
    base = C.run_id(_ident(tiny))
    assert C.run_id(_ident(tiny, threads=7, num_workers=3, channels_last=False)) == base
    ann, root = tiny
    moved = tmp_path / "mnt" / "data"
    shutil.copytree(root, moved)
    assert C.run_id(_ident(tiny, data=(str(moved / "prepared" / "annotations.csv"), str(moved)))) == base
    copy = tmp_path / "weights_copy.pt"
    shutil.copy(r18, copy)
    assert C.run_id(_ident(tiny, backbone_weights=r18)) == C.run_id(_ident(tiny, backbone_weights=str(copy)))


@pytest.mark.parametrize("change", [
    {"preset": "cpu", "freeze_backbone": False}, {"epochs": 5}, {"lr": 0.01}, {"embed_dim": 64, "num_heads": 8},
    {"hflip": False}, {"temporal_pos_embed": False}, {"seed": 1}, {"fold": 2}, {"batch_size": 16},
])
def test_run_id_changes_with_what_changes_the_result(tiny, change):
    assert C.run_id(_ident(tiny, **change)) != C.run_id(_ident(tiny))


def test_run_id_follows_the_content_of_weights_and_data(tiny, r18, tmp_path):
    other = tmp_path / "other.pt"
    data = bytearray(open(r18, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one byte of one weight
    other.write_bytes(bytes(data))
    assert C.run_id(_ident(tiny, backbone_weights=r18)) != C.run_id(_ident(tiny, backbone_weights=str(other)))
    ann, root = tiny
    moved = tmp_path / "data"
    shutil.copytree(root, moved)
    edited = moved / "prepared" / "annotations.csv"
    edited.write_text(edited.read_text().replace(",Happy,", ",happy,", 1))
    assert C.run_id(_ident(tiny, data=(str(edited), str(moved)))) != C.run_id(_ident(tiny))


def test_config_id_groups_folds_and_seeds_only(tiny):
    a = C.config_id(_ident(tiny))
    assert C.config_id(_ident(tiny, fold=3, seed=2)) == a
    assert C.config_id(_ident(tiny, epochs=3)) != a


def test_fields_added_later_keep_old_ids(tiny):
    """A field marked ``if-changed`` enters the identity only when set: runs recorded before it
    existed keep their ids. Fields marked ``identity=False`` never enter it."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Later:
        lr: float = 0.1
        attention: str = dataclasses.field(default="temporal", metadata={C.IDENTITY: "if-changed"})

    assert identity._config_identity(Later()) == {"lr": 0.1}
    assert identity._config_identity(Later(attention="joint")) == {"lr": 0.1, "attention": "joint"}
    ident = _ident(tiny)
    cfg = C.PRESETS["paper"].train
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    assert all(f.metadata.get(C.IDENTITY, True) is False for n, f in fields.items()
               if n in ("threads", "num_workers", "channels_last", "feature_cache"))
    assert "threads" not in ident["train"] and "feature_cache" not in ident["train"] and "lr" in ident["train"]


def test_presets_live_in_one_place():
    from msstlib import train

    assert train.PRESETS is C.PRESETS
    cpu = C.PRESETS["cpu"]
    assert cpu.train.freeze_backbone and cpu.model.embed_norm and cpu.data.image_size == cpu.model.image_size == 64
    with pytest.raises(C.ConfigError, match="--backbone-weights"):
        C.resolve("cpu", frames=4)
    with pytest.raises(C.ConfigError, match="unknown config fields"):
        C.resolve("paper", overrides={"learning_rate": 1})


def test_the_same_weights_saved_again_are_the_same_weights(tiny, r18, tmp_path):
    """Found when a new machine re-ran the (deterministic) pre-training: the tensors were
    identical, yet every committed row looked undone, because the identity hashed the file's bytes
    and torch.save writes a random serialization id and the file's name into them."""
    import torch

    weights = torch.load(r18, weights_only=True)
    again = tmp_path / "pretrained_again.pt"
    torch.save(weights, again)
    assert C.file_digest(again) != C.file_digest(r18)  # what made every committed row look undone
    assert C.run_id(_ident(tiny, backbone_weights=r18)) == C.run_id(_ident(tiny, backbone_weights=str(again)))
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = weights[key] + 1e-3
    torch.save(weights, again)
    assert C.run_id(_ident(tiny, backbone_weights=r18)) != C.run_id(_ident(tiny, backbone_weights=str(again)))
