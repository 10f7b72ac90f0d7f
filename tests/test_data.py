"""Clip loading: TSN sampling, identical per-clip augmentation, the frame cache, load-time errors."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from msstlib.data import ClipDataset, ClipError, DataConfig, build_cache, main, sample_indices

SIZE = 16
RAW = DataConfig(frames=4, image_size=SIZE, normalize=False)


def make_dataset(root, lengths=(3, 8, 16, 5, 11, 20), folds=(1, 1, 2, 2, 3, 3), pattern=False):
    """PNG frames (lossless) whose grey level encodes the frame index: 10 * (index + 1)."""
    rows = []
    for i, (n, fold) in enumerate(zip(lengths, folds)):
        clip = f"Clip/clip_224x224/{i + 1:05d}"
        (root / clip).mkdir(parents=True)
        for j in range(n):
            if pattern:  # the same horizontal gradient in every frame
                arr = np.tile(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None], (24, 1, 3))
            else:
                arr = np.full((24, 24, 3), 10 * (j + 1), np.uint8)
            Image.fromarray(arr).save(root / clip / f"{j + 1}.png")  # 1.png .. 20.png: natural order matters
        rows.append({"clip": clip, "num_frames": n, "label": i % 7, "emotion": "x", "fold": fold})
    ann = root / "prepared" / "annotations.csv"
    ann.parent.mkdir()
    pd.DataFrame(rows).to_csv(ann, index=False)
    return ann


def frame_ids(x):
    """Recover frame indices from grey levels (uint8-scaled float frames, normalize=False)."""
    return [int(round(float(v) * 255 / 10)) - 1 for v in x[:, 0, SIZE // 2, SIZE // 2]]


@pytest.mark.parametrize("n,t,expected", [(16, 4, [2, 6, 10, 14]), (3, 4, [0, 1, 1, 2]), (1, 4, [0, 0, 0, 0]),
                                          (8, 8, list(range(8))), (47, 16, None)])
def test_test_sampling_takes_segment_centres(n, t, expected):
    idx = sample_indices(n, t, train=False)
    if expected is not None:
        assert idx.tolist() == expected
    assert len(idx) == t and (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() < n
    np.testing.assert_array_equal(idx, sample_indices(n, t, train=False))  # deterministic


@pytest.mark.parametrize("n", [1, 3, 4, 7, 16, 17, 77, 847])
@pytest.mark.parametrize("t", [4, 8, 16])
def test_train_sampling_draws_one_frame_per_segment(n, t):
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(n, t, train=True, rng=rng) for _ in range(200)])
    assert (np.diff(draws, axis=1) >= 0).all() and draws.min() >= 0 and draws.max() < n
    if n >= t:
        seg = np.arange(t + 1) * n / t
        assert (draws >= np.floor(seg[:-1])).all() and (draws < np.ceil(seg[1:])).all()
        if n >= 2 * t:
            assert len(np.unique(draws[:, 0])) > 1  # really random inside the segment
    else:
        assert set(np.unique(draws)) == set(range(n))  # short clips: every frame used, repeated in order


def test_fold_and_split_selection(tmp_path):
    ann = make_dataset(tmp_path)
    train = ClipDataset(ann, tmp_path, fold=2, train=True, cfg=RAW)
    test = ClipDataset(ann, tmp_path, fold=2, train=False, cfg=RAW)
    assert len(train) == 4 and len(test) == 2
    assert set(train.clips).isdisjoint(test.clips)
    with pytest.raises(ValueError, match="no clip in fold 9"):
        ClipDataset(ann, tmp_path, fold=9, train=False, cfg=RAW)
    with pytest.raises(ValueError, match="no 'split' column"):
        ClipDataset(ann, tmp_path, split="test", train=False, cfg=RAW)
    table = pd.read_csv(ann).drop(columns="fold").assign(split=["train"] * 4 + ["test"] * 2)
    table.to_csv(ann, index=False)
    assert len(ClipDataset(ann, tmp_path, split="test", train=False, cfg=RAW)) == 2


def test_test_items_are_the_segment_centres_in_order(tmp_path):
    ann = make_dataset(tmp_path)
    ds = ClipDataset(ann, tmp_path, fold=1, train=False, cfg=RAW, use_cache=False)
    x, label = ds[0]  # the 3-frame clip
    assert x.shape == (4, 3, SIZE, SIZE) and x.dtype == torch.float32 and label == 0
    assert frame_ids(x) == [0, 1, 1, 2]  # repeated in order, no zero padding
    x, _ = ds[1]  # 8 frames
    assert frame_ids(x) == [1, 3, 5, 7]


def test_cached_and_uncached_paths_return_the_same_frames(tmp_path):
    ann = make_dataset(tmp_path)
    assert main(["cache", "--annotations", str(ann), "--root", str(tmp_path), "--size", str(SIZE)]) == 0
    for train in (False, True):
        cfg = DataConfig(frames=4, image_size=SIZE)
        a = ClipDataset(ann, tmp_path, fold=3, train=train, cfg=cfg, seed=5)
        b = ClipDataset(ann, tmp_path, fold=3, train=train, cfg=cfg, seed=5, use_cache=False)
        assert a.cached and not b.cached
        for i in range(len(a)):
            torch.testing.assert_close(a[i][0], b[i][0], rtol=0, atol=0)


def test_cache_is_per_resolution_and_invalidated_by_a_changed_dataset(tmp_path):
    ann = make_dataset(tmp_path)
    build_cache(ann, tmp_path, SIZE, progress=False)
    assert not ClipDataset(ann, tmp_path, fold=1, train=False, cfg=DataConfig(frames=4, image_size=8)).cached
    assert ClipDataset(ann, tmp_path, fold=1, train=False, cfg=RAW).cached
    # A frame removed from a clip folder: the cache is stale, and loading names the shrunk folder.
    (tmp_path / "Clip/clip_224x224/00002/8.png").unlink()
    with pytest.warns(UserWarning, match="stale"):
        ds = ClipDataset(ann, tmp_path, fold=1, train=False, cfg=RAW)
    assert not ds.cached
    with pytest.raises(ClipError, match=r"clip Clip/clip_224x224/00002: .* holds 7 frames but annotations list 8"):
        ds[1]


def test_training_augmentation_is_identical_across_frames_and_reproducible(tmp_path):
    ann = make_dataset(tmp_path, pattern=True)
    ds = ClipDataset(ann, tmp_path, fold=1, train=True, cfg=DataConfig(frames=8, image_size=SIZE), seed=1)
    test = ClipDataset(ann, tmp_path, fold=1, train=False, cfg=DataConfig(frames=8, image_size=SIZE))
    changed = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        x, _ = ds[0]
        for t in range(1, 8):
            torch.testing.assert_close(x[t], x[0], rtol=0, atol=0)  # same crop and flip for every frame
        changed += not torch.allclose(x, test[0][0])
        torch.testing.assert_close(x, ds[0][0])  # same seed, epoch and item: same draw
    assert changed >= 3  # crops/flips really happen
    state = torch.random.get_rng_state()
    ds[0]
    assert torch.equal(state, torch.random.get_rng_state())  # the global torch RNG is left alone


def test_unreadable_frame_names_the_clip_and_file(tmp_path):
    ann = make_dataset(tmp_path)
    bad = tmp_path / "Clip/clip_224x224/00003/3.png"  # index 2: the first segment centre of 16 frames
    bad.write_bytes(b"not an image")
    ds = ClipDataset(ann, tmp_path, fold=2, train=False, cfg=RAW)
    with pytest.raises(ClipError, match=r"clip Clip/clip_224x224/00003: cannot decode frame .*/3\.png"):
        ds[0]
    assert main(["cache", "--annotations", str(ann), "--root", str(tmp_path), "--size", str(SIZE)]) == 2
    assert not (ann.parent / "cache" / f"index_{SIZE}px.json").exists()  # no partial cache


def test_missing_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m data_prep.dfew"):
        ClipDataset(tmp_path / "nope.csv", tmp_path, fold=1, train=False)
