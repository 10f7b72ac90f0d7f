"""MSSTNet (Wang et al., ICASSP 2024, arXiv 2404.08433): the model of the paper's Fig. 2.

Tensor layout, stated once and kept everywhere in the project: a clip batch is
``(B, T, 3, H, W)`` -- batch, frames, RGB, height, width -- as in the DFER literature
(torchvision's video models use ``(B, C, T, H, W)``; we do not).

Boxes of Fig. 2 and where they live here:

* CNN backbone (ResNet-18 from torchvision, run on every frame) -> :class:`Backbone`
* MELayer, eq. (1), one per scale                                -> :class:`MELayer`
* T-Former, eqs. (2)-(11), ``L`` pre-norm blocks, one per scale   -> :class:`TFormer`
* progressive fusion by element-wise addition (the ⊕ of Fig. 2)  -> :meth:`MSSTNet.forward`
* T-Mean + spatial mean + FC, eq. (12)                           -> :meth:`MSSTNet.forward`

The plain "ResNet-18 + temporal mean + FC" baseline is :class:`ResNet18Mean`.
:func:`build_model` builds either from one :class:`MSSTConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from .labels import NUM_CLASSES

# ResNet-18's stages: output stride and channel count of each.
STAGE_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
VARIANTS = ("msstnet", "resnet18-mean")


@dataclass(frozen=True)
class MSSTConfig:
    """Everything that defines a model. Defaults are the paper's values (§3) where it gives them.

    Args:
        num_classes: number of expression classes (7 for DFEW and FERV39k).
        embed_dim: ``D``, the token width of every MELayer and T-Former (paper: 768).
        num_patches: ``N``, patches per feature map; they must tile each map exactly (paper: 16).
        num_heads: attention heads ``A``; ``D_h = D / A`` (paper: 8).
        depths: blocks ``L`` of T-Former 1, 2, 3 (paper main results: 2, 2, 2). A depth of 0
            removes that T-Former (Table 1 ablations); see :class:`MSSTNet` for how its scale
            then takes part in the fusion.
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
        variant: ``"msstnet"`` or ``"resnet18-mean"`` (ResNet-18 + temporal mean + FC baseline).
        backbone_weights: optional path of a local torchvision ResNet-18 state dict. Nothing is
            ever downloaded; ``None`` means random initialisation (as Former-DFER trains it).
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
    backbone_weights: str | None = None

    def __post_init__(self) -> None:
        # Coerce lists (from JSON / CLI) to tuples so configs stay hashable and comparable.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "stages", tuple(self.stages))
        problems = []
        if self.variant not in VARIANTS:
            problems.append(f"variant={self.variant!r}: expected one of {VARIANTS}")
        if len(self.depths) != 3 or any(d < 0 for d in self.depths):
            problems.append(f"depths={self.depths}: expected three integers >= 0")
        if len(self.stages) != 3 or any(s not in STAGE_STRIDE for s in self.stages):
            problems.append(f"stages={self.stages}: expected three of {tuple(STAGE_STRIDE)}")
        elif [STAGE_STRIDE[s] for s in self.stages] != sorted({STAGE_STRIDE[s] for s in self.stages}):
            problems.append(f"stages={self.stages}: expected three distinct stages, finest first")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.max_frames < 1:
            problems.append(f"max_frames={self.max_frames}: expected >= 1")
        if problems:
            raise ValueError("invalid MSSTConfig: " + "; ".join(problems))
        if self.variant == "msstnet":
            for stage in self.stages:
                side = math.ceil(self.image_size / STAGE_STRIDE[stage])
                patch_size(side, side, self.num_patches, where=f"{stage} at image_size={self.image_size}")

    def replace(self, **changes) -> "MSSTConfig":
        return replace(self, **changes)


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


# Named presets are instances, not copies of code (STYLE.md).
PRESETS: dict[str, MSSTConfig] = {
    # The paper's configuration (D=768, N=16, 8 heads, L=2) at our documented 128-px choice.
    "paper": MSSTConfig(),
    # Same architecture for two CPU cores: 64-px frames (maps 16/8/4, still 4x4 patches), D=128,
    # 4 heads, MLP 2D. Deviations from the paper's recipe are switched on in the training preset.
    "cpu": MSSTConfig(image_size=64, embed_dim=128, num_heads=4, mlp_ratio=2.0),
}


class Backbone(nn.Module):
    """torchvision ResNet-18 applied to every frame, returning the maps of the chosen stages.

    Only the stages up to the deepest one used are built, so no compute is spent (or counted)
    on unused layers.
    """

    def __init__(self, stages: tuple[str, ...], weights: str | None = None, full: bool = False):
        super().__init__()
        net = resnet18(weights=None)  # never a download; local weights below
        if weights is not None:
            # The classifier (fc) is never used here, so a state dict without it is fine.
            missing, unexpected = net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True),
                                                      strict=False)
            if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
                raise ValueError(f"{weights}: not a torchvision ResNet-18 state dict (missing {missing}, "
                                 f"unexpected {unexpected})")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        order = ["layer1", "layer2", "layer3", "layer4"]
        last = 3 if full else max(order.index(s) for s in stages)
        self.layers = nn.ModuleDict({name: getattr(net, name) for name in order[: last + 1]})
        self.stages = tuple(stages)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.stem[0].weight.is_contiguous(memory_format=torch.channels_last):
            frames = frames.contiguous(memory_format=torch.channels_last)  # match the weights' layout
        x = self.stem(frames)  # (B*T, 64, H/4, W/4)
        maps = {}
        for name, layer in self.layers.items():
            x = layer(x)
            maps[name] = x
        return maps


class MELayer(nn.Module):
    """Multi-scale Embedding Layer, eq. (1): ``z_(p,t) = E x_(p,t) + e_t^pos``.

    Cuts a ``(d, H', W')`` map into ``N`` non-overlapping ``P x P`` patches that tile it exactly,
    flattens each to ``P^2 d`` values, maps it linearly to ``D`` with the learnable ``E`` and adds a
    learnable *temporal* position embedding ``e_t`` (no spatial one: the T-Former never mixes
    patch locations, so it needs none).
    """

    def __init__(self, channels: int, side: int, cfg: MSSTConfig):
        super().__init__()
        self.p = patch_size(side, side, cfg.num_patches, where=f"{side}x{side} map")
        self.num_patches = cfg.num_patches
        in_dim = self.p * self.p * channels
        self.norm = nn.LayerNorm(in_dim) if cfg.embed_norm else nn.Identity()
        self.proj = nn.Linear(in_dim, cfg.embed_dim)  # E in eq. (1)
        self.pos = nn.Parameter(torch.zeros(cfg.max_frames, cfg.embed_dim)) if cfg.temporal_pos_embed else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, fmap: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        bt, d, h, w = fmap.shape
        p = self.p
        if h % p or w % p or (h // p) * (w // p) != self.num_patches:
            raise ValueError(
                f"MELayer built for {self.num_patches} patches of {p}x{p} got a {h}x{w} map; "
                f"feed frames of the configured image_size"
            )
        x = fmap.reshape(bt, d, h // p, p, w // p, p)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(batch, frames, -1, d * p * p)  # (B, T, N, P²d)
        z = self.proj(self.norm(x))  # (B, T, N, D)
        if self.pos is not None:
            z = z + self.pos[:frames, None, :]  # e_t broadcast over the N patches
        return z


class TemporalAttention(nn.Module):
    """Multi-head self-attention over time only, eqs. (2)-(6) and the ``W_O`` of eq. (10).

    Input is ``(B*N, T, D)``: each row is one patch location's sequence of frames, so the token at
    ``(p, t)`` attends to ``(p, t')`` for every ``t'`` and never to another location.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # W_Q, W_K, W_V of all heads at once
        self.out = nn.Linear(dim, dim)  # W_O
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, t, dim = x.shape
        q, k, v = self.qkv(x).reshape(s, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        # (S, A, T, D_h) each; softmax(q k^T / sqrt(D_h)) v, eqs. (5)-(6)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(s, t, dim))


class Block(nn.Module):
    """One pre-norm T-Former block: eq. (10) ``z' = W_O[s] + z``; eq. (11) ``z = MLP(LN(z')) + z'``."""

    def __init__(self, cfg: MSSTConfig):
        super().__init__()
        dim = cfg.embed_dim
        hidden = int(round(dim * cfg.mlp_ratio))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim, cfg.num_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, dim), nn.Dropout(cfg.dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TFormer(nn.Module):
    """Temporal Transformer: ``L`` blocks applied independently at each of the ``N`` patch locations."""

    def __init__(self, cfg: MSSTConfig, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(depth)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, n, d = z.shape
        x = z.permute(0, 2, 1, 3).reshape(b * n, t, d)  # (B*N, T, D): one sequence per location
        x = self.blocks(x)
        return x.reshape(b, n, t, d).permute(0, 2, 1, 3)  # back to (B, T, N, D)


def _check_clip(x: torch.Tensor, cfg: MSSTConfig) -> tuple[int, int]:
    if x.ndim != 5 or x.shape[2] != 3:
        raise ValueError(f"expected a clip batch of shape (B, T, 3, H, W), got {tuple(x.shape)}")
    b, t = x.shape[:2]
    if t < 1:
        raise ValueError("a clip needs at least one frame")
    if t > cfg.max_frames:
        raise ValueError(
            f"clip has T={t} frames but the temporal position embedding covers max_frames="
            f"{cfg.max_frames}; sample at most {cfg.max_frames} frames or raise max_frames"
        )
    return b, t


class MSSTNet(nn.Module):
    """MSSTNet, Fig. 2. Input ``(B, T, 3, H, W)`` with ``1 <= T <= max_frames``; output ``(B, C)`` logits.

    Forward pass: ResNet-18 on each frame -> three stage maps -> MELayer_i -> embeddings ``z_i``
    ``(B, T, N, D)``; then progressive fusion::

        y_1 = TFormer_1(z_1)
        y_2 = TFormer_2(z_2 + y_1)
        y_3 = TFormer_3(z_3 + y_2)
        logits = FC(mean over t and p of y_3)          # eq. (12)

    Table 1 ablations: a T-Former with depth 0 is absent and acts as the identity, so its scale
    still takes part in the fusion through its MELayer embedding: e.g. with depths (0, 1, 1),
    ``y_1 = z_1`` and ``y_2 = TFormer_2(z_2 + z_1)``. With all depths 0 the model is the three
    MELayer embeddings summed, averaged and classified: no temporal modelling at all.
    """

    def __init__(self, cfg: MSSTConfig = MSSTConfig()):
        super().__init__()
        if cfg.variant != "msstnet":
            raise ValueError(f"MSSTNet needs variant='msstnet', got {cfg.variant!r}; use build_model()")
        self.cfg = cfg
        self.backbone = Backbone(cfg.stages, cfg.backbone_weights)
        self.melayers = nn.ModuleList(
            MELayer(STAGE_CHANNELS[s], math.ceil(cfg.image_size / STAGE_STRIDE[s]), cfg) for s in cfg.stages
        )
        self.tformers = nn.ModuleList(TFormer(cfg, depth) for depth in cfg.depths)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.apply(_init_transformer_weights)

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three MELayer outputs ``z_i`` of shape ``(B, T, N, D)``."""
        b, t = _check_clip(x, self.cfg)
        maps = self.backbone(x.flatten(0, 1))  # frames of all clips as one batch
        return [mel(maps[s], b, t) for mel, s in zip(self.melayers, self.cfg.stages)]

    def fuse(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Progressive multi-scale fusion (the ⊕ of Fig. 2); returns the last T-Former's ``(B, T, N, D)``."""
        y = None
        for z, tformer in zip(embeddings, self.tformers):
            y = tformer(z if y is None else z + y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(self.embed(x))
        return self.head(y.mean(dim=(1, 2)))  # eq. (12): mean over time and patches, then FC


class ResNet18Mean(nn.Module):
    """Baseline: ResNet-18 (global average pooled, 512-d) per frame, mean over time, one FC."""

    def __init__(self, cfg: MSSTConfig = MSSTConfig(variant="resnet18-mean")):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(("layer4",), cfg.backbone_weights, full=True)
        self.head = nn.Linear(STAGE_CHANNELS["layer4"], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = _check_clip(x, self.cfg)
        feats = self.backbone(x.flatten(0, 1))["layer4"].mean(dim=(2, 3))  # (B*T, 512)
        return self.head(feats.reshape(b, t, -1).mean(dim=1))


def _init_transformer_weights(m: nn.Module) -> None:
    # ViT-style init for the new layers; the ResNet-18 keeps torchvision's own initialisation.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def build_model(cfg: MSSTConfig) -> nn.Module:
    """The model a config describes: :class:`MSSTNet` or the :class:`ResNet18Mean` baseline."""
    return MSSTNet(cfg) if cfg.variant == "msstnet" else ResNet18Mean(cfg)


def table1_variants(frames: tuple[int, ...] = (4, 8, 12, 16)) -> list[dict]:
    """The Table 1 grid as plain data: every T-Former subset at T=4 (depth 1), frames x depth 1..3,
    and the ResNet-18 + temporal-mean baseline. Each row: ``{"frames", "depths", "variant"}``."""
    rows = [{"frames": 4, "depths": (0, 0, 0), "variant": "resnet18-mean"}]
    for mask in range(8):
        depths = tuple((mask >> i) & 1 for i in range(3))
        rows.append({"frames": 4, "depths": depths, "variant": "msstnet"})
    for t in frames:
        for d in (1, 2, 3):
            row = {"frames": t, "depths": (d, d, d), "variant": "msstnet"}
            if row not in rows:
                rows.append(row)
    return rows
