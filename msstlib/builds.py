"""Builds: a SynDFER draw and its own pre-trained backbone, as a named value (DESIGN.md §9).

A **build** is everything the study builds rather than configures: one SynDFER draw in a regime
(its own seed), prepared like DFEW, its frame cache, a ResNet-18 pre-trained on *its own separate*
draw (its own seed again), and that backbone's feature cache. Two builds share nothing random, so
the claims use them as **independent replicates**: every claim row runs once on each build, and
the unit of a claim is one build (:mod:`msstlib.claims`). Cross-validation folds are not such
units: their training sets overlap and they share one backbone (Nadeau & Bengio 2003).

* ``Build(k, regime)`` with ``k >= 1`` is claim build ``b0k``; each gives one unit, measured on one
  fixed split: the DFEW layout's fold :data:`msstlib.grid.UNIT_FOLD` as test set (600 of 3,000 clips), the other
  four folds as training set.
* ``Build(0, regime)`` is the **validation draw** (``val``): every protocol choice made for the
  build study (the LSTM's budget, the DFEW-calibrated regime) is made on it, and no claim reads it.
* The committed five-fold study (``results/synthetic/runs``: SynDFER seed 0 and the backbone of
  pre-training seed 1,000,003) is no build either: the choices tuned on it earlier (the cpu preset's
  recipe, no random crop, pre-training length, the DFEW-like regime) were tuned on data no claim
  build reads. Its tables remain the paper-style Table 1 / Table 3.

Where a build lives: ``build/builds/<name>/`` holds its data (``syndfer<regime suffix>/``), its
backbone (``resnet18_64px.pt``, shared by the build's regimes) and its rows' checkpoints
(``work<regime suffix>/``); its rows' results go to ``results/<dataset><regime suffix>/builds/runs/``
(validation: ``.../validation/runs/``). Once a build's rows have landed, its feature cache (9.6 GB
per regime) may go: :func:`drop_feature_cache` (``python -m msstlib.study ... --builds K
--drop-caches``) removes the cache its rows read and keeps the frames and checkpoints (Grad-CAM
reads those) and other settings' caches.

This module also holds the preparation steps the five-fold study uses (:func:`prepare_synthetic`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from data_prep.synthetic import REGIMES as SYNDFER_REGIMES

from . import config, files, paths

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = ROOT / "build" / "backbones" / "resnet18_syndfer_64px.pt"  # the five-fold study's backbone
REGIMES = tuple(SYNDFER_REGIMES)  # SynDFER's regimes (DESIGN.md §9)
REGIME_SUFFIX = {r: "" if r == "default" else "-" + r.replace("-", "") for r in REGIMES}  # data and results folders

CLAIM_BUILDS = tuple(range(1, 9))  # K = 8 builds per claim: the smallest exact sign-flip p is 2/256
VALIDATION = 0  # the index of the validation draw
# Seeds: SynDFER draw = DATA_SEED[regime] + index, pre-training draw = PRETRAIN_SEED + index. None
# of them is the five-fold study's (data 0, pre-training 1,000,003): no build repeats its draws.
DATA_SEED = {"default": 100, "dfew-like": 200, "dfew-calibrated": 300}
PRETRAIN_SEED = 2_000_000
CLIPS = 3000  # clips per draw, as the five-fold study


@dataclass(frozen=True)
class Build:
    """One build of one regime (see the module docstring); ``index`` 0 is the validation draw."""

    index: int
    regime: str = "default"
    clips: int = CLIPS
    lengths: tuple[int, int] | None = None  # (shortest, longest) clip in frames; None: SynDFER's (8..47)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise config.ConfigError(f"build {self.index}: builds are numbered 1, 2, ... (0 is the validation draw)")
        if self.regime not in DATA_SEED:
            raise config.ConfigError(f"--regime {self.regime!r}: builds exist for {', '.join(DATA_SEED)}")
        if self.lengths is not None and not 2 <= self.lengths[0] <= self.lengths[1]:
            raise config.ConfigError(f"--clip-lengths {self.lengths[0]} {self.lengths[1]}: expected SHORTEST LONGEST "
                                     f"with 2 <= SHORTEST <= LONGEST (frames), e.g. 11 143 for DFEW's mean of 77")

    @property
    def _variant(self) -> str:
        """The folder suffix of the build's data and checkpoints: its regime and, when not SynDFER's
        own, its clip lengths (a draw with other lengths is other data, never the build's own)."""
        return REGIME_SUFFIX[self.regime] + (f"-len{self.lengths[0]}-{self.lengths[1]}" if self.lengths else "")

    @property
    def name(self) -> str:
        return "val" if self.index == VALIDATION else f"b{self.index:02d}"

    @property
    def data_seed(self) -> int:
        return DATA_SEED[self.regime] + self.index

    @property
    def pretrain_seed(self) -> int:
        return PRETRAIN_SEED + self.index

    def folder(self, work: Path | str = ROOT / "build") -> Path:
        return Path(work) / "builds" / self.name

    def data(self, work: Path | str = ROOT / "build") -> Path:
        return self.folder(work) / ("syndfer" + self._variant)

    def backbone(self, work: Path | str = ROOT / "build") -> Path:
        return self.folder(work) / "resnet18_64px.pt"

    def scratch(self, work: Path | str = ROOT / "build") -> Path:
        """Where the build's rows keep their checkpoints and job logs."""
        return self.folder(work) / ("work" + self._variant)

    def results(self, dataset: str = "synthetic", results_root: Path | str = ROOT / "results") -> Path:
        """The folder whose ``runs/`` holds this build's rows (all claim builds of a regime share it)."""
        where = "validation" if self.index == VALIDATION else "builds"
        return Path(results_root) / (dataset + REGIME_SUFFIX[self.regime]) / where

    def prepare(self, work: Path | str = ROOT / "build", candidate_frames: int = 0,
                features: bool = True, feature_precision: str = "float16") -> tuple[str, str]:
        """Every step of the build not yet done: data, frame cache, backbone, feature cache (of the
        candidate frames the rows sample, ``DataConfig.candidate_frames``, stored as
        ``DataConfig.feature_precision`` says; not with ``features=False``, for a build whose rows
        have all landed)."""
        return prepare_synthetic(self.data(work), self.clips, quick=False, regime=self.regime, seed=self.data_seed,
                                 backbone=self.backbone(work), pretrain_seed=self.pretrain_seed,
                                 label=f"build {self.name}", candidate_frames=candidate_frames, features=features,
                                 feature_precision=feature_precision, lengths=self.lengths)


def drop_feature_cache(annotations: str | Path, candidate_frames: int = 0, feature_precision: str = "float16") -> int:
    """Remove a prepared dataset's feature caches of one kind (the candidate count and precision a
    study's rows read, ``DataConfig.candidate_frames`` / ``feature_precision``); returns the bytes
    freed. Caches of another kind (another study on the same build) stay, and so do the frame
    cache, the JPEGs, any checkpoint and a build's ``.partial`` (its builder may be running)."""
    from .features import kind  # torch: not needed to list or plan builds

    freed = 0
    for f in sorted((Path(annotations).parent / "cache").glob("features_*")):
        if kind(f.name) == (candidate_frames, feature_precision):
            freed += f.stat().st_size
            f.unlink()
    return freed


def backbone_path(quick: bool) -> Path:
    """The cached pre-trained ResNet-18 of the five-fold study (a smaller one for ``--quick``)."""
    return BACKBONE.with_stem(BACKBONE.stem + "_quick") if quick else BACKBONE


@contextmanager
def step(what: str):
    """Say what a long step does before it starts and how long it took after (the study talks)."""
    print(f"==> {what}", flush=True)
    t0 = time.time()
    yield
    print(f"    done in {time.time() - t0:.0f} s", flush=True)


def prepare_synthetic(data: Path, clips: int, quick: bool, pretrain: bool = True, regime: str = "default",
                      seed: int = 0, backbone: Path | None = None, pretrain_seed: int | None = None,
                      label: str = "", candidate_frames: int = 0, features: bool = True,
                      feature_precision: str = "float16", lengths: tuple[int, int] | None = None) -> tuple[str, str]:
    """Generate SynDFER (in the given regime, from ``seed``), prepare it like DFEW, cache its frames
    and pre-train the backbone on a separate draw (``pretrain_seed``; default: PretrainConfig's) into
    ``backbone`` (default: :func:`backbone_path`), then cache its features; each step is skipped when
    already done (the feature cache also with ``features=False``). ``lengths``: the clips' shortest
    and longest frame counts (default: the generator's). Returns (annotations, root). The regimes of one build share its backbone,
    pre-trained on a draw of the default regime (as the paper's backbone is pre-trained on other
    data than its benchmark)."""
    py = sys.executable
    data = Path(data)
    if backbone is not None and pretrain and pretrain_seed is None:
        # pretrain() re-trains a backbone whose recorded parameters differ: a build's backbone given
        # without its seed would be overwritten with the default seed's (another build's) weights
        raise ValueError(f"prepare_synthetic: backbone {backbone} given without its pretrain_seed")
    backbone = Path(backbone) if backbone else backbone_path(quick)
    who = f"{label}: " if label else ""
    if not (data / "syndfer_params.json").exists():
        span = ["--min-frames", str(lengths[0]), "--max-frames", str(lengths[1])] if lengths else []
        with step(f"{who}SynDFER ({regime} regime, seed {seed}): rendering {clips} clips into {paths.relative(data)}"
                  + (f" ({lengths[0]}..{lengths[1]} frames a clip)" if lengths else "")):
            subprocess.run([py, "-m", "data_prep.synthetic", "--out", str(data), "--clips", str(clips), "--seed",
                            str(seed), "--regime", regime, *span], check=True, cwd=ROOT)
    ann = data / "prepared" / "annotations.csv"
    if not ann.exists():
        with step(f"{who}SynDFER: annotations in DFEW's layout (data_prep.dfew)"):
            subprocess.run([py, "-m", "data_prep.dfew", "--root", str(data), "--out", str(ann.parent)], check=True,
                           cwd=ROOT)
    if not (ann.parent / "cache" / "index_64px.json").exists():
        with step(f"{who}frame cache: decoding every frame once at 64 px"):
            subprocess.run([py, "-m", "msstlib.data", "cache", "--annotations", str(ann), "--root", str(data),
                            "--size", "64"], check=True, cwd=ROOT)
    if pretrain:
        pre = ["--clips", "400", "--epochs", "1"] if quick else []  # full: PretrainConfig's defaults
        if pretrain_seed is not None:
            pre += ["--seed", str(pretrain_seed)]
        with step(f"{who}backbone: pre-training the ResNet-18 on single frames"
                  + (" (quick: 1 epoch, 400 clips)" if quick else "")
                  + (f" of its own draw (seed {pretrain_seed})" if pretrain_seed is not None else "")):
            subprocess.run([py, "-m", "msstlib.pretrain", "--out", str(backbone), *pre], check=True, cwd=ROOT)
        if not quick and features:  # the frozen backbone's outputs, computed once for every row (msstlib.features)
            with step(f"{who}feature cache: the frozen backbone's outputs for every frame and its flip"):
                subprocess.run([py, "-m", "msstlib.features", "--annotations", str(ann), "--root", str(data),
                                "--backbone-weights", str(backbone), "--size", "64",
                                "--candidate-frames", str(candidate_frames), "--precision", feature_precision],
                               check=True, cwd=ROOT)
    return str(ann), str(data)


def check_regime(data: Path, regime: str) -> None:
    """Refuses a SynDFER whose recorded generator settings are not the regime's (results would be
    filed under the wrong regime). Only the fields a regime sets are compared."""
    from data_prep.synthetic import recorded_regime

    params = Path(data) / "syndfer_params.json"
    if not params.is_file():
        return
    found = recorded_regime(files.read_json(params, "SynDFER's generator settings",
                                            fix="remove the data folder and generate it again").get("config", {}))
    if found != regime:
        raise config.ConfigError(f"{paths.relative(params)}: these data are not SynDFER's {regime} regime"
                            + (f" but its {found} regime: pass --regime {found}" if found else "")
                            + f"; or give --root a SynDFER made with --regime {regime}")
