"""Clip loading: frame sampling, augmentation, and a memory-mapped frame cache (DESIGN.md §3).

:class:`ClipDataset` reads the ``annotations.csv`` that ``data_prep.dfew`` / ``data_prep.ferv39k``
write, selects DFEW fold ``k`` (test = the clips of fold k, train = the other folds) or a FERV39k
split, and returns ``(frames, label)`` with ``frames`` a float32 tensor ``(T, 3, H, W)``.

* **Sampling** (TSN-style, as Former-DFER): the clip is cut into ``T`` equal segments; training
  takes a random frame per segment, testing the segment centre (deterministic). A clip shorter
  than ``T`` repeats frames in order (``[0, 1, 1, 2]`` for 3 frames and T=4): never dropped, never
  padded with zeros.
* **Augmentation** (training only): one random-resized-crop and one horizontal flip per clip,
  applied identically to every frame. Testing: resize only.
* **Values**: RGB in [0, 1], then normalised with the ImageNet mean/std (so a local ImageNet
  ResNet-18 state dict can be used unchanged; for a random-init backbone it is just a
  standardisation).
* **Cache**: decoding 224-px JPEGs every epoch is the slow path. ``python -m msstlib.data cache``
  (or :func:`build_cache`) decodes every frame once, resizes it to the model's resolution and packs
  all frames into one ``.npy`` that memory-maps (uint8, ``(frames, H, W, 3)``), with an index of
  each clip's offset. The dataset uses it when present and valid; it is keyed on the resolution and
  on a fingerprint of the annotations and of every clip folder (path, frame count, folder mtime),
  so editing the dataset or changing the resolution makes it stale and it is ignored (with a
  warning) until rebuilt. Cached and uncached paths return the same frames (tested).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m msstlib.data",
                                     description="Build the memory-mapped frame cache of a prepared dataset.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="decode every frame once at --size px into DIR/cache/")
    c.add_argument("--annotations", required=True, type=Path)
    c.add_argument("--root", required=True, type=Path)
    c.add_argument("--size", required=True, type=int, help="model input size in pixels (e.g. 64 for the cpu preset)")
    c.add_argument("--cache-dir", type=Path, default=None)
    return parser


if __name__ == "__main__":  # flags are checked before torch loads (seconds): a wrong one is reported at once
    build_parser().parse_args()

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from . import inputs
from .frames import list_frames
from . import paths
from .files import atomic_path, read_json, write_json
from .config import ConfigError
from .config import DataConfig  # noqa: F401 (re-exported: configs live in msstlib.config)

# torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; the project decodes
# with torchvision by policy (README), so the notice is silenced here rather than printed per frame.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClipError(ConfigError):
    """A clip cannot be loaded; the message names the clip, the file and the fix (a bad input:
    exit status 2 at the command line)."""


def sample_indices(num_frames: int, frames: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the ``frames`` frames taken from a clip of ``num_frames`` (TSN segments).

    Segment ``i`` spans ``[i n / T, (i + 1) n / T)``; test takes its centre, training a uniform
    random frame inside it. Clips with fewer than ``T`` frames get each frame repeated in order.
    """
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    edges = np.arange(frames + 1) * num_frames / frames
    if not train:
        return np.minimum(((edges[:-1] + edges[1:]) / 2).astype(np.int64), num_frames - 1)
    rng = rng if rng is not None else np.random.default_rng()
    start = np.floor(edges[:-1]).astype(np.int64)
    stop = np.maximum(start + 1, np.floor(edges[1:]).astype(np.int64))
    return np.minimum(rng.integers(start, stop), num_frames - 1)


def candidate_indices(num_frames: int, candidates: int) -> np.ndarray:
    """The frames of a clip the sampler may pick (``DataConfig.candidate_frames``): every frame when
    ``candidates`` is 0 or the clip is no longer, else the centres of ``candidates`` equal segments
    (as test sampling takes them). A feature cache stores only these (:mod:`msstlib.features`)."""
    if candidates <= 0 or num_frames <= candidates:
        return np.arange(num_frames)
    return sample_indices(num_frames, candidates, train=False)


def sample_frames(num_frames: int, frames: int, train: bool, rng: np.random.Generator | None = None,
                  candidates: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(frame indices, their positions among the candidates)``: :func:`sample_indices` over the
    clip's :func:`candidate_indices` (with ``candidates`` 0 the two are the same)."""
    cand = candidate_indices(num_frames, candidates)
    pos = sample_indices(len(cand), frames, train, rng)
    return cand[pos], pos


def decode_frame(path: Path, size: int, clip: str) -> torch.Tensor:
    """One frame as uint8 ``(3, size, size)``, resized with antialiasing; a clear error if unreadable."""
    try:
        img = decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as exc:  # torchvision raises RuntimeError/ValueError depending on the codec
        raise ClipError(f"clip {clip}: cannot decode frame {path} ({exc}); re-extract or replace this frame") from None
    return TF.resize(img, [size, size], antialias=True)


def _read_annotations(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no annotations file; run `python -m data_prep.dfew --root ROOT --out DIR` first")
    table = pd.read_csv(path, dtype={"clip": str})
    missing = {"clip", "num_frames", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; re-run data_prep to rewrite it")
    return table


def _fingerprint(annotations: Path, table: pd.DataFrame, root: Path, size: int) -> str:
    h = hashlib.sha256()
    h.update(annotations.read_bytes())
    h.update(f"{root.resolve()}|{size}".encode())
    for clip in table["clip"]:
        try:
            h.update(f"{clip}:{os.stat(root / clip).st_mtime_ns}".encode())
        except FileNotFoundError:
            h.update(f"{clip}:missing".encode())
    return h.hexdigest()


def keep_resident(array: np.ndarray, max_share: float = 0.5) -> str:
    """Keeps the pages of a memory-mapped cache in RAM for as long as ``array``'s mapping lives.

    Training reads a few frames of every clip per epoch, scattered over the whole cache, so a page
    is touched about once per epoch. A machine that reclaims page cache idle for a minute (this
    project's VMs page out after 60 s; so do laptops under memory pressure) then serves nearly
    every read from the disk: measured on the 2-core machine, a T=4 row took 118-298 s with the
    cache evicted against 85 s with it in memory (benchmarks/README.md). ``mlock`` pins the
    file's pages once; processes mapping the same file share them, so two jobs cost one copy, and
    the pin ends with the process. Returns ``"locked"``; ``"advised"`` when locking is not
    allowed (``ulimit -l``; pages are then read ahead, not pinned); ``"mapped"`` when the cache is
    larger than ``max_share`` of the available memory (a DFEW-sized cache) and is left alone.
    """
    import ctypes
    import mmap

    import psutil

    if array.nbytes == 0 or array.nbytes > max_share * psutil.virtual_memory().available:
        return "mapped"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock(ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes)) == 0:
        return "locked"
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    if base is not None and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_WILLNEED)
    return "advised"


def cache_paths(cache_dir: Path, size: int) -> tuple[Path, Path]:
    return cache_dir / f"frames_{size}px.npy", cache_dir / f"index_{size}px.json"


def build_cache(annotations: str | Path, root: str | Path, size: int, cache_dir: str | Path | None = None,
                progress: bool = True) -> Path:
    """Decode every frame of every clip once at ``size`` px into one memory-mappable ``.npy``.

    Written to a temporary name and renamed at the end, so an interrupted build leaves no cache
    that looks valid. Returns the index path.
    """
    from tqdm.auto import tqdm

    annotations, root = Path(annotations), Path(root)
    cache_dir = Path(cache_dir) if cache_dir is not None else annotations.parent / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    table = _read_annotations(annotations)
    counts = table["num_frames"].to_numpy(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    frames_path, index_path = cache_paths(cache_dir, size)
    with atomic_path(frames_path) as tmp:  # a fresh name: nothing planted there is followed
        store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(offsets[-1]), size, size, 3))
        for i, clip in enumerate(tqdm(table["clip"], desc=f"caching frames at {size}px", disable=not progress)):
            for j, f in enumerate(_frame_files(root, clip, int(counts[i]))):
                store[offsets[i] + j] = decode_frame(f, size, clip).permute(1, 2, 0).numpy()
        store.flush()
        del store
    index = {"size": size, "fingerprint": _fingerprint(annotations, table, root, size),
             "clips": table["clip"].tolist(), "offsets": offsets.tolist()}
    write_json(index_path, index)
    return index_path


def _frame_files(root: Path, clip: str, expected: int) -> list[Path]:
    folder = root / clip
    if not folder.is_dir():
        raise ClipError(f"clip {clip}: folder {folder} is missing; re-run data_prep or fix --root")
    files = list_frames(folder)
    if len(files) < expected:
        raise ClipError(
            f"clip {clip}: {folder} holds {len(files)} frames but annotations list {expected}; the folder "
            f"shrank since preparation: restore the frames or re-run data_prep"
        )
    return files[:expected]


class ClipDataset(Dataset):
    """Clips of one split as ``(frames (T, 3, H, W) float32, label int)``.

    Args:
        annotations: the ``annotations.csv`` written by ``data_prep``.
        root: the dataset root the ``clip`` column is relative to.
        fold: DFEW fold ``k`` (1-5): ``train=True`` gives the other folds, ``train=False`` fold k.
        split: FERV39k split name (``"train"`` / ``"test"``), instead of ``fold``.
        train: training sampling + augmentation, or deterministic test sampling + resize.
        cfg: :class:`DataConfig`.
        cache_dir: where :func:`build_cache` wrote the cache (default: ``annotations``' folder /
            ``cache``); ``use_cache=False`` forces decoding.
        seed: base seed of the training sampler (each item mixes in its index and the epoch, so runs
            are reproducible whichever worker or process loads the item).
        raw: return the frames as uint8 ``(T, 3, H, W)`` (augmented, not normalised): the training
            loop moves uint8 to the device and normalises there with :func:`to_model_input`.

    Items are addressed by ``i`` (the epoch set with :meth:`set_epoch`) or by ``(i, epoch)``, which
    is what :class:`EpochBatches` yields: with persistent DataLoader workers, which hold their own
    copy of the dataset, the epoch must travel with the index.
    """

    def __init__(self, annotations: str | Path, root: str | Path, *, fold: int | None = None,
                 split: str | None = None, train: bool, cfg: DataConfig = DataConfig(),
                 cache_dir: str | Path | None = None, use_cache: bool = True, seed: int = 0, raw: bool = False):
        self.annotations, self.root = Path(annotations), Path(root)
        self.cfg, self.train, self.seed, self.epoch, self.raw = cfg, train, seed, 0, raw
        table = _read_annotations(self.annotations)
        if (fold is None) == (split is None):
            raise ValueError("give exactly one of fold (DFEW) or split (FERV39k)")
        if fold is not None:
            if "fold" not in table.columns:
                raise ValueError(f"{self.annotations}: no 'fold' column (is this FERV39k? use split=)")
            if fold not in set(table["fold"]):
                raise ValueError(f"{self.annotations}: no clip in fold {fold}; folds are {sorted(set(table['fold']))}")
            mask = (table["fold"] != fold) if train else (table["fold"] == fold)
        else:
            if "split" not in table.columns:
                raise ValueError(f"{self.annotations}: no 'split' column (is this DFEW? use fold=)")
            mask = table["split"] == split
            if not mask.any():
                raise ValueError(f"{self.annotations}: no clip in split {split!r}; splits are {sorted(set(table['split']))}")
        self.full_table = table
        self.table = table[mask].reset_index(drop=True)
        self.clips = self.table["clip"].tolist()
        self.labels = self.table["label"].to_numpy(np.int64)
        self.num_frames = self.table["num_frames"].to_numpy(np.int64)
        self._rows = np.flatnonzero(mask.to_numpy())  # row of each selected clip in the full table
        self._cache_dir = Path(cache_dir) if cache_dir is not None else self.annotations.parent / "cache"
        self._store, self._offsets = (self._open_cache() if use_cache else (None, None))
        crop = cfg.crop_scale != (1.0, 1.0) or cfg.crop_ratio != (1.0, 1.0)  # (1, 1), (1, 1): no crop
        self._augment = v2.Compose([
            *([v2.RandomResizedCrop(cfg.image_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True)]
              if crop else []),
            *([v2.RandomHorizontalFlip()] if cfg.hflip else []),
        ])

    @property
    def cached(self) -> bool:
        return self._store is not None

    def _open_cache(self):
        frames_path, index_path = cache_paths(self._cache_dir, self.cfg.image_size)
        if not (frames_path.is_file() and index_path.is_file()):
            return None, None
        index = read_json(index_path, "frame cache index", fix="remove it and rebuild the cache with "
                          "`python -m msstlib.data cache ...`")
        current = _fingerprint(self.annotations, self.full_table, self.root, self.cfg.image_size)
        if index.get("fingerprint") != current or index.get("size") != self.cfg.image_size:
            warnings.warn(f"{index_path}: frame cache is stale (dataset or resolution changed); decoding "
                          f"JPEGs instead. Rebuild it with `python -m msstlib.data cache ...`", stacklevel=3)
            return None, None
        # A plain ndarray view of the mapping: np.memmap's own indexing adds ~0.1 ms per clip.
        return np.load(frames_path, mmap_mode="r").view(np.ndarray), np.asarray(index["offsets"], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Changes the training draws from one epoch to the next, reproducibly."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def frames_uint8(self, i: int, indices: np.ndarray) -> torch.Tensor:
        """The selected frames of clip ``i`` as uint8 ``(T, 3, S, S)`` at the configured size."""
        clip, n = self.clips[i], int(self.num_frames[i])
        if self._store is not None:
            start = self._offsets[self._rows[i]]
            return torch.from_numpy(np.ascontiguousarray(self._store[start + indices])).permute(0, 3, 1, 2)
        files = _frame_files(self.root, clip, n)
        return torch.stack([decode_frame(files[j], self.cfg.image_size, clip) for j in indices])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        idx, _ = sample_frames(int(self.num_frames[i]), self.cfg.frames, self.train, rng, self.cfg.candidate_frames)
        x = self.frames_uint8(i, idx)  # (T, 3, S, S) uint8
        if self.train:
            # v2 transforms draw their parameters once per call, so every frame gets the same crop/flip.
            # Seeded from this item's generator, inside fork_rng so the global torch RNG is untouched.
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only: torch.manual_seed would also queue a CUDA seeding call
                # that records a stack trace, which cost more than the rest of loading a clip.
                torch.default_generator.manual_seed(int(rng.integers(2**31)))
                x = self._augment(x)
        return (x if self.raw else self.to_input(x)), int(self.labels[i])

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(T, 3, S, S)`` -> the float model input: [0, 1], then ImageNet mean/std."""
        return to_model_input(frames, self.cfg.normalize)


def to_model_input(frames: torch.Tensor, normalize: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames ``(..., 3, H, W)`` -> float model input on ``device``: [0, 1], then ImageNet
    mean/std. The same operations in the same order as per clip, so it is bit-identical whether it
    runs per item on the CPU or per batch on the device the model is on."""
    x = frames.to(device, non_blocking=True) if device is not None else frames
    x = x.float().div_(255)
    if not normalize:
        return x
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


class EpochBatches(torch.utils.data.Sampler):
    """Batches of ``(clip, epoch)`` keys for one process of ``world`` (a DataLoader ``batch_sampler``).

    One instance serves the whole run: :meth:`set_epoch` re-seeds it (the order of epoch ``e`` is
    a permutation drawn from ``seed * 100003 + e``, as in the runs recorded before this sampler).
    Every process draws the same global order and takes its share of each global batch of
    ``batch_size`` clips (``np.array_split``: sizes differ by at most one), so K processes together
    see exactly the batches one process sees. In training (``shuffle``) a last global batch too
    small to give every process a clip is dropped (at most ``world - 1`` clips an epoch). Without ``shuffle`` (testing) the clips are dealt out in order, each exactly
    once over all processes: no padded duplicates.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        # The order the runs recorded before this sampler existed used: their per-epoch DataLoader
        # drew a worker base seed from this generator for each iterator it made, and tqdm.auto made
        # two (one in its constructor), before the permutation. Kept so they stay reproducible.
        for _ in range(2):
            torch.empty((), dtype=torch.int64).random_(generator=g)
        return torch.randperm(self.n, generator=g).tolist()

    def _batches(self) -> tuple[list[list[tuple[int, int]]], list[int]]:
        """This process's batches of the current epoch, and the size of the global batch of each."""
        order, batches, sizes = self._order(), [], []
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            size = len(batch)
            if self.world > 1:
                parts = np.array_split(np.asarray(batch), self.world)
                if self.shuffle and min(len(p) for p in parts) == 0:
                    continue
                batch = parts[self.rank].tolist()
                if not batch:  # testing: this process has no clip of this small last batch
                    continue
            batches.append([(int(i), self.epoch) for i in batch])
            sizes.append(size)
        return batches, sizes

    def __iter__(self):
        batches, self._sizes = self._batches()
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches()[1])

    def global_size(self, step: int) -> int:
        """Clips in the global batch of ``step`` of the epoch being iterated (all processes)."""
        return self._sizes[step]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        problems = inputs.Problems()
        inputs.check_size(args.size, problems=problems)
        inputs.check_annotations(str(args.annotations), str(args.root), labels=False, problems=problems)
        inputs.check_out(args.cache_dir or args.annotations.parent / "cache", "--cache-dir", problems)
        problems.raise_if_any()
        index = build_cache(args.annotations, args.root, args.size, args.cache_dir)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {paths.relative(index)} and {paths.relative(cache_paths(index.parent, args.size)[0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
