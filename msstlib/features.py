"""A feature cache for frozen backbones (``python -m msstlib.features``; DESIGN.md §8).

With a frozen backbone (the ``cpu`` preset) the ResNet-18's output for a frame never changes, yet it
is ~88 % of the forward multiply-accumulates. This module computes it once: for every frame of a
prepared dataset, and for its horizontal flip (the only augmentation the frozen-backbone recipe
keeps), the stage maps the MELayers read and the pooled ``layer4`` feature the ResNet-18 baselines
read, in 16-bit floats, in one memory-mapped ``.npy`` per (backbone weights, image size, stages):
``<annotations dir>/cache/features_<weights digest>_<size>px_<stages>.npy`` with an index
``.json``. The index holds the frame cache's fingerprint of the dataset (annotations, clip
folders, size) and the digest of the weights' bytes: a stale cache is never used. A killed build
resumes from its last saved batch (:func:`build`).

Training uses it automatically when the backbone is frozen, no random crop is configured and a
matching cache exists (``TrainConfig.feature_cache``, ``--no-feature-cache`` forces the backbone).
:class:`FeatureClipDataset` draws exactly the frames and the flip :class:`~msstlib.data.ClipDataset`
would (same generator, same order of draws), so the two paths differ only by the 16-bit rounding
of the stored features. ``DataConfig.feature_precision = "uint8"`` (``--precision uint8``, a file
``..._u8.npy`` and its ``..._u8.scales.npy``) stores 8-bit codes instead, each frame's section (a
stage map or ``pool4``) scaled to its own range: half the bytes on disk and in memory, at the
cost of a rounding step of 1/255 of that range (:func:`quantize`).

This module needs both the data and the model; neither of those imports it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

from .config import FEATURE_PRECISIONS  # light: the flags below are checked before torch loads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m msstlib.features", description="Build the feature cache of a "
                                "frozen ResNet-18 for a prepared dataset (every frame and its flip, 16-bit or 8-bit).")
    p.add_argument("--annotations", required=True, type=Path)
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--backbone-weights", required=True, type=Path, help="the frozen ResNet-18 state dict")
    p.add_argument("--size", required=True, type=int, help="model input size in pixels (the cpu preset: 64)")
    p.add_argument("--stages", nargs=3, default=["layer1", "layer2", "layer3"], help="the MELayers' stages")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: the annotations' folder / cache")
    p.add_argument("--force", action="store_true", help="rebuild even when a matching cache exists")
    p.add_argument("--candidate-frames", type=int, default=0, metavar="K",
                   help="store only each clip's K candidate frames (DataConfig.candidate_frames; 0: every frame)")
    p.add_argument("--precision", choices=FEATURE_PRECISIONS, default="float16",
                   help="float16 (default), or uint8 codes with each frame's range per stage: half the bytes "
                        "(DataConfig.feature_precision)")
    return p


if __name__ == "__main__":  # flags are checked before torch loads (seconds): a wrong one is reported at once
    build_parser().parse_args()

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from . import files, inputs
from .config import STAGE_CHANNELS, STAGE_STRIDE, ConfigError, file_digest, stage_problems
from .data import ClipDataset, _fingerprint, _frame_files, _read_annotations, cache_paths as frame_cache_paths
from .data import candidate_indices, decode_frame, sample_frames, to_model_input
from .paths import relative

POOLED = "pool4"  # the globally averaged layer4 feature (ResNet-18 baselines)
# DataConfig.feature_precision -> what the cache's array holds. "uint8": 8-bit codes, and beside
# them (``<stem>.scales.npy``, float32 ``(frames, 2, sections, 2)``) each frame's minimum and step
# per section of the layout (a stage map or pool4): value = minimum + code * step.
DTYPES = dict(zip(FEATURE_PRECISIONS, (np.float16, np.uint8)))


def layout(size: int, stages: tuple[str, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """The packed vector of one frame: each stage map ``(C, H, W)`` flattened, then ``pool4`` (512,)."""
    out = [(s, (STAGE_CHANNELS[s], math.ceil(size / STAGE_STRIDE[s]), math.ceil(size / STAGE_STRIDE[s])))
           for s in stages]
    return out + [(POOLED, (STAGE_CHANNELS["layer4"],))]


def frame_width(size: int, stages: tuple[str, ...]) -> int:
    return sum(math.prod(shape) for _, shape in layout(size, stages))


def paths(annotations: str | Path, weights: str | Path, size: int, stages: tuple[str, ...],
          cache_dir: str | Path | None = None, candidates: int = 0, precision: str = "float16") -> tuple[Path, Path]:
    """The cache's ``.npy`` and index for these weights, size and stages (``_k<K>``: only each clip's
    ``K`` candidate frames, ``DataConfig.candidate_frames``; ``_u8``: 8-bit codes,
    ``DataConfig.feature_precision``)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(annotations).parent / "cache"
    stem = (f"features_{file_digest(weights)[:10]}_{size}px_{'-'.join(stages)}" + (f"_k{candidates}" if candidates else "")
            + ("_u8" if precision == "uint8" else ""))
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


# the files of a cache that :func:`paths` names: ``features_<weights>_<size>px_<stages>[_k<K>][_u8]``
# + ``.npy`` / ``.json`` / ``.scales.npy``
_NAME = re.compile(r"features_[0-9a-f]+_\d+px_[a-z0-9-]+(?:_k(\d+))?(_u8)?(?:\.scales)?\.(?:npy|json)")


def kind(name: str) -> tuple[int, str] | None:
    """``(candidates, precision)`` of a cache file named as :func:`paths` names it (None: not one)."""
    m = _NAME.fullmatch(name)
    return (int(m.group(1) or 0), "uint8" if m.group(2) else "float16") if m else None


def scales_path(npy: Path) -> Path:
    return npy.with_suffix(".scales.npy")


def needed_bytes(num_frames: int, size: int, stages: tuple[str, ...], precision: str = "float16") -> int:
    codes = num_frames * 2 * frame_width(size, stages) * np.dtype(DTYPES[precision]).itemsize
    sections = len(layout(size, stages))
    return codes + (num_frames * 2 * sections * 2 * 4 if precision == "uint8" else 0)


def quantize(packed: torch.Tensor, sections: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, width)`` float32 -> (uint8 codes ``(n, width)``, float32 ``(n, sections, 2)``: each row's
    minimum and step per section). A constant section gets step 0 and codes 0."""
    codes, scales = [], []
    for part in torch.split(packed, sections, dim=1):
        lo, hi = part.amin(dim=1, keepdim=True), part.amax(dim=1, keepdim=True)
        step = (hi - lo) / 255
        safe = torch.where(step > 0, step, torch.ones_like(step))
        codes.append(((part - lo) / safe).round_().clamp_(0, 255).to(torch.uint8))
        scales.append(torch.cat([lo, step], dim=1))
    return torch.cat(codes, dim=1), torch.stack(scales, dim=1)


def _frames_source(annotations: Path, root: Path, table, size: int):
    """uint8 frames ``(n, 3, S, S)`` of clip ``i``: from the frame cache when valid, else decoded."""
    frames_path, index_path = frame_cache_paths(annotations.parent / "cache", size)
    store, offsets = None, None
    if frames_path.is_file() and index_path.is_file():
        index = files.read_json(index_path, "frame cache index", fix="remove it and rebuild the cache with "
                                "`python -m msstlib.data cache ...`")
        if index.get("fingerprint") == _fingerprint(annotations, table, root, size):
            store, offsets = np.load(frames_path, mmap_mode="r"), np.asarray(index["offsets"], np.int64)

    def get(i: int, clip: str, n: int) -> torch.Tensor:
        if store is not None:
            return torch.from_numpy(np.array(store[offsets[i]:offsets[i] + n])).permute(0, 3, 1, 2)  # a writable copy
        return torch.stack([decode_frame(f, size, clip) for f in _frame_files(root, clip, n)])

    return get


CHECKPOINT_S = 30.0  # how often a build saves its progress: a killed build recomputes at most this much


def _in_progress(npy: Path) -> tuple[Path, Path, Path]:
    """An unfinished build's files beside ``npy``: its ``.npy``, its scales (uint8) and its progress."""
    return (npy.with_name(f".{npy.name}.partial"), npy.with_name(f".{scales_path(npy).name}.partial"),
            npy.with_name(f".{npy.name}.progress.json"))


@torch.no_grad()
def build(annotations: str | Path, root: str | Path, weights: str | Path, size: int,
          stages: tuple[str, ...] = ("layer1", "layer2", "layer3"), cache_dir: str | Path | None = None,
          batch: int = 256, progress: bool = True, candidates: int = 0, precision: str = "float16") -> Path:
    """Compute and store the features of every frame and its flip (``candidates`` > 0: of each
    clip's candidate frames only, :func:`msstlib.data.candidate_indices`; ``precision``: float16, or
    uint8 codes with their per-frame ranges, :func:`quantize`); returns the index path.

    Refuses (:class:`ConfigError`) when the disk cannot hold the cache, saying how much it needs, and
    when another live process is building the same cache (a lock ``.<cache>.lock`` beside it).
    Written as ``.<cache>.partial`` and renamed at the end, so an interrupted build leaves nothing
    that looks valid; every :data:`CHECKPOINT_S` seconds it records in ``.<cache>.progress.json``
    how far it got, and the next build of the same cache (same dataset, weights, layout and batch)
    goes on from there instead of starting again. The result is the one an uninterrupted build
    writes: the batches after the resume point are the ones it would have formed.
    """
    from .model import Backbone

    annotations, root = Path(annotations), Path(root)
    stages = tuple(stages)
    table = _read_annotations(annotations)
    keep = [candidate_indices(int(n), candidates) for n in table["num_frames"]]
    counts = np.array([len(k) for k in keep], np.int64)  # the frames stored per clip
    offsets = np.concatenate([[0], np.cumsum(counts)])
    if precision not in DTYPES:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(DTYPES)}")
    npy, index_path = paths(annotations, weights, size, stages, cache_dir, candidates, precision)
    npy.parent.mkdir(parents=True, exist_ok=True)
    index = {"fingerprint": _fingerprint(annotations, table, root, size), "weights_digest": file_digest(weights),
             "size": size, "stages": list(stages), "layout": [[n, list(s)] for n, s in layout(size, stages)],
             "dtype": np.dtype(DTYPES[precision]).name, "candidates": candidates, "offsets": offsets.tolist()}
    with files.FolderLock(npy.parent, f"the feature cache {npy.name} is being built: its folder",
                          name=f".{npy.name}.lock"):
        _remove_strays(npy)
        parts = _Partial(npy, {**index, "batch": batch}, int(offsets[-1]), frame_width(size, stages), precision)
        need, free = needed_bytes(int(offsets[-1]), size, stages, precision), shutil.disk_usage(npy.parent).free
        if need - parts.allocated() > free:
            raise ConfigError(f"the feature cache for {annotations} at {size} px needs {need / 1e9:.1f} GB but "
                              f"{npy.parent} has {free / 1e9:.1f} GB free; free space there, pass --cache-dir on a "
                              f"larger disk, or train without it (--no-feature-cache)")
        parts.open()
        backbone = Backbone(stages, str(weights), full=True).eval().to(memory_format=torch.channels_last)
        every_frame = _frames_source(annotations, root, table, size)

        def frames_of(i: int, clip: str) -> torch.Tensor:
            return every_frame(i, clip, int(table["num_frames"].iloc[i]))[torch.from_numpy(keep[i])]

        _fill(parts, table, offsets, frames_of, backbone, stages, size, batch, progress)
        parts.finish()
        files.write_json(index_path, index)
    return index_path


def _remove_strays(npy: Path) -> None:
    """Remove the temporary files of this cache that builds before resumable ones left when killed
    (``.<cache>.*.tmp``, as large as the cache itself); the caller holds the cache's lock."""
    strays = [p for name in (npy.name, scales_path(npy).name) for p in npy.parent.glob(f".{name}.*.tmp")]
    if strays:
        gb = sum(p.stat().st_blocks * 512 for p in strays if not p.is_symlink()) / 1e9
        for p in strays:
            p.unlink(missing_ok=True)
        print(f"note: removed {len(strays)} temporary file(s) of an interrupted feature cache build "
              f"({gb:.1f} GB) from {relative(npy.parent)}", file=sys.stderr)


class _Partial:
    """An unfinished build's arrays (:func:`_in_progress`): opened where a saved progress matches
    ``identity`` and the arrays have the expected shapes, else created afresh (through fresh names,
    so nothing planted at the partial names is followed)."""

    def __init__(self, npy: Path, identity: dict, n_frames: int, width: int, precision: str):
        self.npy, self.identity = npy, json.loads(json.dumps(identity))
        self.paths = _in_progress(npy)
        codes_shape, dtype = (n_frames, 2, width), np.dtype(DTYPES[precision])
        sections = len(self.identity["layout"])
        self.shapes = [(codes_shape, dtype)] + ([((n_frames, 2, sections, 2), np.dtype(np.float32))]
                                                if precision == "uint8" else [])
        self.clips = self.frames = 0
        self.store = self.ranges = None
        self._take(self._reopen())

    def _take(self, arrays: list | None) -> None:
        if arrays is not None:
            self.store, self.ranges = arrays[0], (arrays[1] if len(arrays) > 1 else None)

    def open(self) -> None:
        """Keep the reopened arrays, or create new ones (the caller has checked the disk first)."""
        if self.store is None:
            for p in self.paths:
                p.unlink(missing_ok=True)
            created = []
            for path, (shape, dt) in zip(self.paths, self.shapes):
                with files.atomic_path(path) as tmp:
                    created.append(np.lib.format.open_memmap(tmp, mode="w+", dtype=dt, shape=shape))
            self._take(created)
            self.save()

    def _reopen(self) -> list | None:
        try:
            saved = json.loads(self.paths[2].read_text())  # damaged or absent: start afresh, no error
            if not isinstance(saved, dict) or saved.get("identity") != self.identity:
                return None
            clips, frames = int(saved["clips"]), int(saved["frames"])
            arrays = []
            for path, (shape, dt) in zip(self.paths, self.shapes):
                if path.is_symlink() or not path.is_file():
                    return None
                arrays.append(np.lib.format.open_memmap(path, mode="r+"))
                if arrays[-1].shape != shape or arrays[-1].dtype != dt:
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.clips, self.frames = clips, frames
        return arrays

    def allocated(self) -> int:
        """Bytes the reopened arrays already take on disk (a resumed build needs only the rest)."""
        return 0 if self.store is None else sum(p.stat().st_blocks * 512 for p in self.paths[:len(self.shapes)])

    def _flush(self) -> None:
        for array in (self.store, self.ranges):
            if array is not None:
                array.flush()

    def save(self, clips: int = 0, frames: int = 0) -> None:
        """Record that clips ``[0, clips)``, frames ``[0, frames)``, are stored (after flushing them)."""
        self._flush()
        self.clips, self.frames = clips, frames
        files.write_json(self.paths[2], {"identity": self.identity, "clips": clips, "frames": frames})

    def finish(self) -> None:
        """Flush and rename the arrays onto the cache's names; forget the progress."""
        self._flush()
        self.store = self.ranges = None
        if len(self.shapes) > 1:
            os.replace(self.paths[1], scales_path(self.npy))
        os.replace(self.paths[0], self.npy)
        self.paths[2].unlink(missing_ok=True)


def _fill(parts: _Partial, table, offsets, frames_of, backbone, stages, size: int, batch: int, progress: bool) -> None:
    """Compute every stored frame's packed features (and its flip's) into ``parts`` (float16; with
    its ``ranges``, uint8 codes and their ranges), from where a saved progress left off;
    ``frames_of(i, clip)``: clip ``i``'s stored frames. Batches gather whole clips up to ``batch``
    frames, from the first clip or the resume point: the same batches either way."""
    from tqdm.auto import tqdm

    store, ranges = parts.store, parts.ranges
    sections = [math.prod(shape) for _, shape in layout(size, stages)]
    pending, start, saved_at = [], parts.frames, time.monotonic()

    def flush(chunk: list[torch.Tensor], at: int) -> None:
        x = torch.cat(chunk)
        for flip in (0, 1):
            maps = backbone(to_model_input(x.flip(-1) if flip else x))
            packed = torch.cat([maps[s].flatten(1) for s in stages] + [maps["layer4"].mean(dim=(2, 3))], dim=1)
            if ranges is None:
                store[at:at + len(x), flip] = packed.to(torch.float16).numpy()
            else:
                codes, scales = quantize(packed.float(), sections)
                store[at:at + len(x), flip], ranges[at:at + len(x), flip] = codes.numpy(), scales.numpy()

    bar = tqdm(total=int(offsets[-1]), initial=start, desc=f"backbone features at {size}px", unit="frame",
               disable=not progress, mininterval=5)
    for i, clip in enumerate(table["clip"]):
        if i < parts.clips:
            continue
        pending.append(frames_of(i, clip))
        if sum(len(p) for p in pending) >= batch or i == len(table) - 1:
            n = sum(len(p) for p in pending)
            flush(pending, start)
            start, pending = start + n, []
            bar.update(n)
            if time.monotonic() - saved_at >= CHECKPOINT_S:
                parts.save(i + 1, start)
                saved_at = time.monotonic()
    bar.close()


class FeatureStore:
    """An opened, validated feature cache: ``array[frame, flip]`` is the packed vector of a frame."""

    def __init__(self, npy: Path, index: dict):
        self.path = npy
        self.array = np.load(npy, mmap_mode="r").view(np.ndarray)  # plain indexing, no np.memmap overhead
        self.offsets = np.asarray(index["offsets"], np.int64)
        self.layout = [(n, tuple(s)) for n, s in index["layout"]]
        self.candidates = int(index.get("candidates", 0))  # 0: every frame of every clip
        self.precision = "uint8" if index.get("dtype") == "uint8" else "float16"
        self.scales = None
        if self.precision == "uint8":  # value = minimum + code * step, per frame, flip and section
            self.scales = np.load(scales_path(npy), mmap_mode="r").view(np.ndarray)
            sizes = [math.prod(shape) for _, shape in self.layout]
            self.section_of = np.repeat(np.arange(len(sizes)), sizes)  # each column's section

    def rows(self, rows: np.ndarray, flip: int) -> torch.Tensor:
        """The packed vectors of these frames (one flip): float16 as stored, or uint8 decoded to float32."""
        if self.scales is None:
            return torch.from_numpy(np.ascontiguousarray(self.array[rows, flip]))
        codes, scales = self.array[rows, flip].astype(np.float32), self.scales[rows, flip]  # (T, W), (T, S, 2)
        return torch.from_numpy(scales[:, self.section_of, 0] + codes * scales[:, self.section_of, 1])


def open_store(annotations: str | Path, root: str | Path, weights: str | Path, size: int,
               stages: tuple[str, ...], cache_dir: str | Path | None = None,
               candidates: int = 0, precision: str = "float16") -> FeatureStore | None:
    """The matching cache, or None (absent; or stale, with a warning saying how to rebuild it)."""
    annotations, root = Path(annotations), Path(root)
    npy, index_path = paths(annotations, weights, size, tuple(stages), cache_dir, candidates, precision)
    if not (npy.is_file() and index_path.is_file()) or (precision == "uint8" and not scales_path(npy).is_file()):
        return None
    index = files.read_json(index_path, "feature cache index", fix="remove it and rebuild the cache with "
                            "`python -m msstlib.features ...`")
    table = _read_annotations(annotations)
    if index.get("fingerprint") != _fingerprint(annotations, table, root, size) or \
            index.get("weights_digest") != file_digest(weights):
        warnings.warn(f"{index_path}: feature cache is stale (dataset or weights changed); running the backbone "
                      f"instead. Rebuild it with `python -m msstlib.features ...`", stacklevel=2)
        return None
    return FeatureStore(npy, index)


def unusable(model_cfg, train_cfg, data_cfg) -> str | None:
    """Why the feature cache cannot stand in for the backbone of this run (None: it can)."""
    if not train_cfg.freeze_backbone or not model_cfg.backbone_weights:
        return "the backbone is trained"
    if data_cfg.crop_scale != (1.0, 1.0) or data_cfg.crop_ratio != (1.0, 1.0):
        return "random crops change the backbone's input"
    return None


class FeatureClipDataset(Dataset):
    """The clips of ``clips`` (a :class:`ClipDataset`: its split, sampling, seed and labels) as
    packed features ``(T, width)`` from ``store`` (float16, or uint8 decoded to float32) instead of
    frames. The frames and the flip are drawn exactly as ``clips`` draws them."""

    def __init__(self, store: FeatureStore, clips: ClipDataset):
        if store.candidates != clips.cfg.candidate_frames:
            raise ValueError(f"{store.path.name} stores {store.candidates or 'all'} candidate frames per clip; these "
                             f"clips sample among {clips.cfg.candidate_frames or 'all'}")
        if store.precision != clips.cfg.feature_precision:
            raise ValueError(f"{store.path.name} stores {store.precision} features; these clips' configuration says "
                             f"feature_precision={clips.cfg.feature_precision}")
        self.store, self.clips = store, clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        c = self.clips
        i, epoch = key if isinstance(key, tuple) else (key, c.epoch)
        rng = np.random.default_rng([c.seed, epoch, i]) if c.train else None
        _, pos = sample_frames(int(c.num_frames[i]), c.cfg.frames, c.train, rng, c.cfg.candidate_frames)
        flip = 0
        if c.train:  # ClipDataset seeds its transforms from the same generator, then flips if rand < 0.5
            seed = int(rng.integers(2**31))
            if c.cfg.hflip:
                flip = int(torch.rand(1, generator=torch.Generator().manual_seed(seed)).item() < 0.5)
        rows = self.store.offsets[c._rows[i]] + pos  # the store holds the clip's candidates only
        return self.store.rows(rows, flip), int(c.labels[i])


class FeatureInput(nn.Module):
    """Runs ``model`` (MSSTNet or a ResNet-18 baseline) from packed features ``(B, T, width)``; its output
    equals ``model(frames)`` up to the features' 16-bit rounding (or 8-bit codes)."""

    def __init__(self, model: nn.Module, layout: list[tuple[str, tuple[int, ...]]]):
        super().__init__()
        self.model, self.layout = model, layout
        self.needed = set(model.feature_stages)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        b, t, _ = packed.shape
        flat = packed.reshape(b * t, -1).float()
        maps, at = {}, 0
        for name, shape in self.layout:
            n = math.prod(shape)
            if name in self.needed:
                maps[name] = flat[:, at:at + n].reshape(b * t, *shape)
            at += n
        return self.model.forward_maps(maps, b, t)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        problems = inputs.Problems()
        inputs.check_size(args.size, problems=problems)
        if args.candidate_frames < 0:
            problems.add(f"--candidate-frames {args.candidate_frames}: give K >= 1 candidate frames per clip, or 0 "
                         f"for every frame")
        for problem in stage_problems(args.stages):
            problems.add(f"--stages {' '.join(args.stages)}: {problem}")
        if not args.backbone_weights.is_file():
            problems.add(f"--backbone-weights {args.backbone_weights}: no such file; give the frozen ResNet-18's "
                         f"state dict")
        inputs.check_annotations(str(args.annotations), str(args.root), labels=False, problems=problems)
        inputs.check_out(args.cache_dir or args.annotations.parent / "cache", "--cache-dir", problems)
        problems.raise_if_any()
        if not args.force:
            store = open_store(args.annotations, args.root, args.backbone_weights, args.size, tuple(args.stages),
                               args.cache_dir, args.candidate_frames, args.precision)
            if store is not None:
                print(f"feature cache up to date: {relative(store.path)}")
                return 0
        index = build(args.annotations, args.root, args.backbone_weights, args.size, tuple(args.stages),
                      args.cache_dir, candidates=args.candidate_frames, precision=args.precision)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    npy = index.with_suffix(".npy")
    print(f"wrote {relative(npy)} ({npy.stat().st_size / 1e9:.2f} GB) and {relative(index)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
