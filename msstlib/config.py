"""Configuration in one place: the three config dataclasses, the named presets, and how each field
enters a run's identity.

* :class:`MSSTConfig` (the model), :class:`DataConfig` (how clips become tensors) and
  :class:`TrainConfig` (the recipe) are frozen dataclasses whose defaults are the paper's values.
  CLI flags (``python -m msstlib.train --lr ...``) and notebook ``overrides`` map one-to-one onto
  their fields.
* :data:`PRESETS` names model + train + data configs that belong together (``paper``, ``cpu``);
  :func:`resolve` turns a preset plus a row's settings and overrides into the three configs.
* A **run** is one configuration trained and evaluated once (DESIGN.md §7). Each field is marked
  with how it enters the run's identity (:data:`IDENTITY`: by value, never, by a file's content,
  or only when changed). The identity itself -- :func:`identity`, :func:`run_id`,
  :func:`config_id`, :func:`build_of`, :func:`identity_diff` and the digests -- is
  :mod:`msstlib.identity`, which imports no config; this module re-exports it, so
  ``config.run_id`` is what it always was.

This module imports no torch, so command-line tools can check their flags before paying for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# A run's identity lives in its own module; offered here too, as it always was (config.run_id, ...).
from .identity import (BUILD_FIELDS, IDENTITY, build_of, config_id, data_fingerprint,  # noqa: F401 (re-exported)
                       file_digest, identity, identity_diff, run_id, weights_digest)
from .labels import NUM_CLASSES

# ResNet-18's stages: output stride and channel count of each.
STAGE_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
# MSSTNet and Table 3's same-backbone baselines (pooled per-frame ResNet-18 features, then a
# temporal model): the order-blind mean, one LSTM / GRU layer, a temporal convolution network.
# The matched baselines (issue 25) keep everything MSSTNet reads -- its three MELayer embeddings
# with their patch LayerNorm, the progressive fusion and the head -- and swap only the temporal model
# of each scale: an LSTM / GRU / TCN over each patch's frames, or none (``me-mean``).
ME_VARIANTS = ("me-lstm", "me-gru", "me-tcn", "me-mean")
VARIANTS = ("msstnet", "resnet18-mean", "resnet18-lstm", "resnet18-gru", "resnet18-tcn", *ME_VARIANTS)
# The variants built on MSSTNet's MELayers (their stage maps must tile into N patches).
MELAYER_VARIANTS = ("msstnet", *ME_VARIANTS)
ATTENTIONS = ("temporal", "joint")
FEATURE_PRECISIONS = ("float16", "uint8")  # DataConfig.feature_precision: how a feature cache stores values


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the flag and the fix."""

    def _render_traceback_(self) -> list[str]:
        # IPython (and so papermill and JupyterLab) show this instead of a traceback into our code:
        # the message already says what is wrong and what to do.
        return [f"{type(self).__name__}: {self}"]


def flag(name: str) -> str:
    """The command-line flag of a config field (``freeze_backbone`` -> ``--freeze-backbone``)."""
    return "--" + name.replace("_", "-")


def patch_size(height: int, width: int, num_patches: int, where: str = "feature map") -> int:
    """Side ``P`` of the square patches that tile an ``height x width`` map into ``num_patches``.

    Eq. (1) needs ``P^2 = H'W'/N`` with the ``N`` patches spanning the map exactly; anything else
    is a configuration error, reported with the numbers and the fix.
    """
    area = height * width
    p = math.isqrt(area // num_patches) if area % num_patches == 0 else 0
    if p == 0 or p * p * num_patches != area or height % p or width % p:
        raise ValueError(
            f"{where}: a {height}x{width} map cannot be tiled exactly into N={num_patches} "
            f"square patches (need P*P*N = H'*W' with P dividing both sides). Choose an "
            f"image_size whose stage maps are multiples of sqrt(N) (e.g. 128 or 64 for N=16) "
            f"or other stages/num_patches."
        )
    return p


@dataclass(frozen=True)
class MSSTConfig:
    """Everything that defines a model. Defaults are the paper's values (§3) where it gives them.

    Args:
        num_classes: number of expression classes (7 for DFEW and FERV39k).
        embed_dim: ``D``, the token width of every MELayer and T-Former (paper: 768).
        num_patches: ``N``, patches per feature map; they must tile each map exactly (paper: 16).
        num_heads: attention heads ``A``; ``D_h = D / A`` (paper: 8).
        depths: blocks ``L`` of T-Former 1, 2, 3 (paper main results: 2, 2, 2). A depth of 0
            removes that T-Former (Table 1 ablations); see :class:`~msstlib.model.MSSTNet` for how
            its scale then takes part in the fusion.
        image_size: input side in pixels. *Not stated by the paper.* 128 is our choice: every
            ResNet-18 stage map (32/16/8/4 px) tiles into 4x4 patches, and the FLOPs match
            Table 3 (see ``python -m msstlib.flops``). 112, the DFER convention, gives 14 and 7
            pixel maps that cannot be tiled into 16 patches.
        stages: the three ResNet-18 stages whose maps feed MELayer 1, 2, 3 (finest first).
            *Not stated by the paper*; our choice is layer1-3 (see README "Configuration choices").
        mlp_ratio: MLP hidden width as a multiple of ``D``. *Not stated*; 4 as in ViT/TimeSformer.
        max_frames: length of the learnable temporal position embedding; clips longer than this
            are an error, never silently cropped.
        dropout: dropout on attention weights and MLP/projection outputs. *Not stated*; 0.
        temporal_pos_embed: add ``e_t^pos`` in the MELayer (eq. 1). False is an ablation only.
        embed_norm: LayerNorm on each flattened patch before the projection ``E``. **Not in the
            paper**; an optional deviation for short CPU training (issue 4), off by default.
        variant: ``"msstnet"``, or a same-backbone baseline on the pooled per-frame ResNet-18
            feature (Table 3): ``"resnet18-mean"`` (temporal mean + FC), ``"resnet18-lstm"`` /
            ``"resnet18-gru"`` (one recurrent layer, the last step's state classified),
            ``"resnet18-tcn"`` (residual temporal convolutions, mean over time); or a *matched*
            baseline on MSSTNet's own MELayer embeddings, with only the T-Formers swapped
            (:data:`ME_VARIANTS`, :class:`~msstlib.model.MSSTNet`): ``"me-lstm"``, ``"me-gru"``,
            ``"me-tcn"`` (``depths`` such layers per scale), ``"me-mean"`` (no temporal model at
            all: the same computation as MSSTNet with depths 0-0-0, under its own name).
        attention: what a T-Former token attends to. ``"temporal"`` (the paper, §2.2): the same
            patch location in every frame. ``"joint"``: every patch of every frame (the costlier
            space-time attention the paper argues against); it then needs to know where a patch
            is, so the MELayer adds a learnable spatial position embedding as well. Enters run
            identities only when not the default.
        baseline_hidden: width of the LSTM / GRU state and of the TCN's channels (the field's
            R18+LSTM/GRU use 512). Enters run identities only when not the default.
        head_norm: a LayerNorm on the pooled vector before the classifier (MSSTNet and the
            ``me-*`` baselines). **Not in the paper**: eq. (12) classifies the mean of ``y_3`` as it
            is. A deviation studied for the ``paper`` preset's divergence at lr 0.1
            (``benchmarks/paper_stability.py``, ``docs/speed.md``); off by default, and in run
            identities only when on.
        backbone_weights: optional path of a local torchvision ResNet-18 state dict. Nothing is
            ever downloaded; ``None`` means random initialisation (as Former-DFER trains it).
            Enters a run's identity by the file's content, never its path.
    """

    num_classes: int = NUM_CLASSES
    embed_dim: int = 768
    num_patches: int = 16
    num_heads: int = 8
    depths: tuple[int, int, int] = (2, 2, 2)
    image_size: int = 128
    stages: tuple[str, str, str] = ("layer1", "layer2", "layer3")
    mlp_ratio: float = 4.0
    max_frames: int = 16
    dropout: float = 0.0
    temporal_pos_embed: bool = True
    embed_norm: bool = False
    variant: str = "msstnet"
    backbone_weights: str | None = field(default=None, metadata={IDENTITY: "content"})
    attention: str = field(default="temporal", metadata={IDENTITY: "if-changed"})
    baseline_hidden: int = field(default=512, metadata={IDENTITY: "if-changed"})
    head_norm: bool = field(default=False, metadata={IDENTITY: "if-changed"})

    def __post_init__(self) -> None:
        # Coerce lists (from JSON / CLI) to tuples so configs stay hashable and comparable.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "stages", tuple(self.stages))
        problems = []
        if self.variant not in VARIANTS:
            problems.append(f"variant={self.variant!r}: expected one of {VARIANTS}")
        if self.attention not in ATTENTIONS:
            problems.append(f"attention={self.attention!r}: expected one of {ATTENTIONS}")
        if self.baseline_hidden < 1:
            problems.append(f"baseline_hidden={self.baseline_hidden}: expected >= 1")
        if len(self.depths) != 3 or any(d < 0 for d in self.depths):
            problems.append(f"depths={self.depths}: expected three integers >= 0")
        problems += stage_problems(self.stages)
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.max_frames < 1:
            problems.append(f"max_frames={self.max_frames}: expected >= 1")
        if problems:
            raise ValueError("invalid MSSTConfig: " + "; ".join(problems))
        if self.variant in MELAYER_VARIANTS:
            for stage in self.stages:
                side = math.ceil(self.image_size / STAGE_STRIDE[stage])
                patch_size(side, side, self.num_patches, where=f"{stage} at image_size={self.image_size}")

    def replace(self, **changes) -> "MSSTConfig":
        return dataclasses.replace(self, **changes)


def stage_problems(stages) -> list[str]:
    """What is wrong with a choice of the MELayers' three ResNet-18 stages (empty when nothing)."""
    stages = tuple(stages)
    if len(stages) != 3 or any(s not in STAGE_STRIDE for s in stages):
        return [f"stages={stages}: expected three of {tuple(STAGE_STRIDE)}"]
    if [STAGE_STRIDE[s] for s in stages] != sorted({STAGE_STRIDE[s] for s in stages}):
        return [f"stages={stages}: expected three distinct stages, finest first"]
    return []


@dataclass(frozen=True)
class DataConfig:
    """How clips become tensors. Former-DFER's recipe where the paper is silent.

    Args:
        frames: ``T``, frames sampled per clip.
        image_size: side of the frames fed to the model (must match the model's ``image_size``).
        crop_scale: area range of the training random-resized-crop. *Not stated by the paper*;
            aligned faces lose their features under tiny crops, so we keep at least 60 %.
            ``(1, 1)`` with ``crop_ratio=(1, 1)`` switches the crop off.
        crop_ratio: aspect-ratio range of that crop (torchvision's default).
        hflip: random horizontal flip in training.
        normalize: ImageNet mean/std normalisation after scaling to [0, 1].
        candidate_frames: ``K`` > 0 picks a clip's ``T`` frames among ``K`` evenly spaced candidates
            (the centres of ``K`` equal segments; :func:`msstlib.data.candidate_indices`) instead of
            among all its frames; a frozen-backbone feature cache then stores only those ``K`` per
            clip, which is what keeps DFEW's cache on a laptop disk (``docs/speed.md``). *Not the
            paper's*: 0 (default) samples among every frame. Its effect on WAR is measured in
            ``results/feature-cache/``. In the run identity only when set.
        feature_precision: how a frozen-backbone feature cache stores the features: ``"float16"``
            (default) or ``"uint8"``, 8-bit codes with each frame's own range per stage (the
            minimum and the step, :mod:`msstlib.features`), half the bytes on disk and in memory.
            It describes the cache, so a run that sets ``"uint8"`` must read one (training without
            the cache is refused). Its effect on WAR is measured in ``results/feature-cache/``. In
            the run identity only when set.
    """

    frames: int = 16
    image_size: int = 128
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    normalize: bool = True
    candidate_frames: int = field(default=0, metadata={IDENTITY: "if-changed"})
    feature_precision: str = field(default="float16", metadata={IDENTITY: "if-changed"})

    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio"):  # lists from JSON / CLI become tuples
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.frames < 1:
            raise ValueError(f"frames={self.frames}: expected >= 1")
        if self.candidate_frames and self.candidate_frames < self.frames:
            raise ValueError(f"candidate_frames={self.candidate_frames}: a clip's {self.frames} frames are picked among "
                             f"its candidates, so give at least {self.frames} (or 0: every frame)")
        if self.feature_precision not in FEATURE_PRECISIONS:
            raise ValueError(f"feature_precision={self.feature_precision!r}: expected one of "
                             f"{', '.join(FEATURE_PRECISIONS)}")


WEIGHT_DECAY_ON = ("all", "matrices")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe. Defaults are the paper's (§3) and Former-DFER's where it is silent.

    Args:
        epochs: training epochs (paper: 40).
        batch_size: clips per optimiser step, over all processes (the *global* batch: under
            ``torchrun`` each of K processes takes its share). *Not stated*; 32 as Former-DFER.
        optimizer: ``"sgd"`` (paper) or ``"adamw"`` (a deviation for short CPU budgets, see README).
        lr: initial learning rate of the new layers (and of the backbone unless ``backbone_lr`` is set).
        momentum: SGD momentum (Former-DFER: 0.9).
        weight_decay: (Former-DFER: 1e-4).
        schedule: ``"step"`` (x ``gamma`` at ``milestones``, paper) or ``"cosine"``.
        milestones: step-schedule milestones as fractions of ``epochs`` (paper: 20/40 and 35/40), so a
            shortened schedule keeps the paper's shape.
        gamma: step factor (paper: 0.1).
        warmup_epochs: linear warm-up length (0: none, as the paper).
        freeze_backbone: keep the ResNet-18 fixed (weights and BatchNorm statistics). A deviation:
            the paper trains end to end. Needs pre-trained ``backbone_weights`` (a frozen random
            ResNet-18 would learn nothing): asking for it without weights is an error.
        backbone_lr: learning rate of the backbone when it is trained; ``None`` = ``lr``.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        label_smoothing: cross-entropy label smoothing (0, as the paper).
        channels_last: run the model in channels-last memory format. On by default on every device:
            on the two-core CPU it made a frozen-backbone step 1.2-1.3x faster (``benchmarks/``).
            Not part of a run's identity (a memory layout, not a different computation).
        num_workers: DataLoader worker processes. ``None`` (default): 0 on the CPU (loading from
            the frame cache is cheaper than a worker hand-off), on CUDA up to 8, split between
            the processes of the node. Not part of a run's identity: each item's random draws depend
            only on (seed, epoch, clip), never on which worker loads it.
        threads: torch CPU threads (0 = torch's default). Not part of a run's identity.
        feature_cache: with a frozen backbone and no random crop, read the backbone's outputs from
            the feature cache (``python -m msstlib.features``) when a matching one exists, instead of
            running the backbone. Not part of a run's identity: the two paths differ only by the
            cache's 16-bit rounding (measured in README "Speed"); ``result.json`` records which ran.
        cache_in_memory: pin the memory-mapped cache the run reads (features, or frames) in RAM
            when it takes at most half the available memory (:func:`msstlib.data.keep_resident`):
            scattered reads of an evicted cache go to the disk. Not part of a run's identity.
        weight_decay_on: which parameters ``weight_decay`` applies to. ``"all"`` (default; every
            committed run): every parameter, as torch's optimisers do. ``"matrices"``: only the weights
            of linear and convolution layers, not norms, biases or the temporal position embeddings
            (nanoGPT's ``configure_optimizers``, timm's ``param_groups_weight_decay``). Part of a
            run's identity only when changed, so the committed runs keep theirs.
        test_every: evaluate the test split after every ``k``-th epoch (for the per-epoch curves
            and the labelled best-epoch reference) and always after the last one, which is the
            result; 0: after the last epoch only. Not part of a run's identity: evaluating draws
            nothing from the training's random streams (the test loader has its own generator).
    """

    epochs: int = 40
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.875)
    gamma: float = 0.1
    warmup_epochs: int = 0
    freeze_backbone: bool = False
    backbone_lr: float | None = None
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    channels_last: bool = field(default=True, metadata={IDENTITY: False})
    num_workers: int | None = field(default=None, metadata={IDENTITY: False})
    threads: int = field(default=0, metadata={IDENTITY: False})
    feature_cache: bool = field(default=True, metadata={IDENTITY: False})
    cache_in_memory: bool = field(default=True, metadata={IDENTITY: False})
    test_every: int = field(default=1, metadata={IDENTITY: False})
    weight_decay_on: str = field(default="all", metadata={IDENTITY: "if-changed"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.weight_decay_on not in WEIGHT_DECAY_ON:
            raise ConfigError(f"--weight-decay-on {self.weight_decay_on!r}: expected one of {', '.join(WEIGHT_DECAY_ON)}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: expected 'sgd' or 'adamw'")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: expected 'step' or 'cosine'")
        if self.epochs < 1:
            raise ConfigError(f"--epochs {self.epochs}: train at least 1 epoch")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: expected an integer >= 1")

    def milestone_epochs(self) -> list[int]:
        return [int(round(m * self.epochs)) for m in self.milestones]


@dataclass(frozen=True)
class Preset:
    """A named starting point: model, data and training configs that belong together."""

    model: MSSTConfig
    train: TrainConfig
    data: DataConfig


_CPU_MODEL = MSSTConfig(image_size=64, embed_dim=128, num_heads=4, mlp_ratio=2.0, embed_norm=True)

# Named presets are instances, not copies of code (STYLE.md).
PRESETS: dict[str, Preset] = {
    # The paper's configuration (D=768, N=16, 8 heads, L=2) at our documented 128-px choice, and
    # its recipe: SGD 0.1, 40 epochs, end to end.
    "paper": Preset(MSSTConfig(), TrainConfig(), DataConfig(image_size=128)),
    # The CPU study (README "The cpu preset"): the same architecture for two CPU cores (64-px
    # frames, maps 16/8/4 still tile into 4x4 patches; D=128, 4 heads, MLP 2D), a LayerNorm before
    # each MELayer projection, a frozen pre-trained ResNet-18 (weights must be given), AdamW for
    # the new layers. No random-resized-crop: with a frozen backbone it cost WAR in calibration.
    "cpu": Preset(
        _CPU_MODEL,
        TrainConfig(epochs=5, batch_size=16, optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine",
                    freeze_backbone=True, test_every=0),
        DataConfig(image_size=_CPU_MODEL.image_size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
    ),
}

CONFIG_CLASSES = (MSSTConfig, TrainConfig, DataConfig)


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def resolve(preset: str, *, frames: int | None = None, depths=None, variant: str | None = None,
            epochs: int | None = None, overrides: dict | None = None) -> tuple[MSSTConfig, TrainConfig, DataConfig]:
    """The three configs of a run: ``preset``, then the row's settings, then ``overrides``.

    ``overrides`` maps field names of any of the three dataclasses to values (``{"lr": 0.01}``);
    an unknown name is an error. The data's ``image_size`` always follows the model's.
    """
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    over = dict(overrides or {})
    unknown = sorted(set(over) - set().union(*(field_names(c) for c in CONFIG_CLASSES)))
    if unknown:
        raise ConfigError(f"unknown config fields: {unknown}; known fields are those of MSSTConfig, TrainConfig "
                          f"and DataConfig (python -m msstlib.train --help lists them as flags)")
    pick = lambda cls: {k: v for k, v in over.items() if k in field_names(cls)}  # noqa: E731
    model_over = pick(MSSTConfig)
    if depths is not None:
        model_over["depths"] = tuple(depths)
    if variant is not None:
        model_over["variant"] = variant
    train_over = pick(TrainConfig)
    if epochs is not None:  # 0 is a value (refused by TrainConfig), not "the preset's"
        train_over["epochs"] = epochs
    model = p.model.replace(**model_over)
    data_over = {**pick(DataConfig), "image_size": model.image_size}
    if frames is not None:
        data_over["frames"] = frames
    train, data = dataclasses.replace(p.train, **train_over), dataclasses.replace(p.data, **data_over)
    check(model, train, data)
    return model, train, data


def check(model: MSSTConfig, train: TrainConfig, data: DataConfig) -> None:
    """Checks across the three configs; a :class:`ConfigError` names the flag and the fix."""
    if data.image_size != model.image_size:
        raise ConfigError(f"data image_size {data.image_size} != model image_size {model.image_size}; "
                          f"set {flag('image_size')} only (the data follow the model)")
    if data.frames > model.max_frames:
        raise ConfigError(f"--frames {data.frames} exceeds the model's max_frames={model.max_frames}; sample at "
                          f"most {model.max_frames} frames or raise {flag('max_frames')}")
    if train.freeze_backbone and not model.backbone_weights:
        raise ConfigError(
            f"{flag('freeze_backbone')} is on (the cpu preset freezes the ResNet-18) but no "
            f"{flag('backbone_weights')} FILE was given: a frozen, randomly initialised backbone learns nothing. "
            f"Pass {flag('backbone_weights')} with a local torchvision ResNet-18 state dict, or train it with "
            f"{flag('freeze_backbone')} false")
    if model.backbone_weights and not Path(model.backbone_weights).is_file():
        raise ConfigError(f"{flag('backbone_weights')} {model.backbone_weights}: no such file; give the path of a "
                          f"local torchvision ResNet-18 state dict (nothing is ever downloaded)")


def to_dict(cfg) -> dict:
    """A config as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
