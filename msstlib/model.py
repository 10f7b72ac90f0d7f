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

The matched baselines ``me-lstm`` / ``me-gru`` / ``me-tcn`` / ``me-mean`` are :class:`MSSTNet` with
each T-Former swapped for :class:`MatchedTemporal` (the same MELayer embeddings, fusion and head).
The plain "ResNet-18 + temporal mean + FC" baseline is :class:`ResNet18Mean`; the order-aware
same-backbone baselines of Table 3 (LSTM, GRU, TCN over the pooled frame features) are
:class:`ResNet18Temporal`.
:func:`build_model` builds either from one :class:`MSSTConfig` (``msstlib/config.py``, with the presets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from .config import (ME_VARIANTS, STAGE_CHANNELS, STAGE_STRIDE, VARIANTS, MSSTConfig,  # noqa: F401 (re-exported)
                     patch_size)
from .resnet_weights import load_resnet18


class Backbone(nn.Module):
    """torchvision ResNet-18 applied to every frame, returning the maps of the chosen stages.

    Only the stages up to the deepest one used are built, so no compute is spent (or counted)
    on unused layers.
    """

    def __init__(self, stages: tuple[str, ...], weights: str | None = None, full: bool = False):
        super().__init__()
        net = resnet18(weights=None)  # never a download; local weights below
        if weights is not None:
            # torchvision's layout or a face-pretrained one (msstlib.resnet_weights: mapped, checked,
            # read without running code); the classifier (fc) is never used here.
            net.load_state_dict(load_resnet18(weights), strict=False)
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
        # Joint space-time attention (not the paper's) mixes patch locations, so it needs to know them.
        self.spatial_pos = nn.Parameter(torch.zeros(cfg.num_patches, cfg.embed_dim)) if cfg.attention == "joint" else None
        if self.spatial_pos is not None:
            nn.init.trunc_normal_(self.spatial_pos, std=0.02)

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
        if self.spatial_pos is not None:
            z = z + self.spatial_pos  # e_p broadcast over the T frames (joint attention only)
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
    """Temporal Transformer: ``L`` blocks applied independently at each of the ``N`` patch locations.

    With ``cfg.attention == "joint"`` (not the paper's design; the comparison of §2.2) the blocks run
    on one sequence of all ``T*N`` tokens of a clip instead: every token attends to every patch of
    every frame, at ``(TN)^2`` instead of ``N T^2`` attention cost."""

    def __init__(self, cfg: MSSTConfig, depth: int):
        super().__init__()
        self.joint = cfg.attention == "joint"
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(depth)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, n, d = z.shape
        if self.joint:
            return self.blocks(z.reshape(b, t * n, d)).reshape(b, t, n, d)  # one sequence per clip
        x = z.permute(0, 2, 1, 3).reshape(b * n, t, d)  # (B*N, T, D): one sequence per location
        x = self.blocks(x)
        return x.reshape(b, n, t, d).permute(0, 2, 1, 3)  # back to (B, T, N, D)


class MatchedTemporal(nn.Module):
    """The temporal model of a matched baseline (``cfg.variant`` in :data:`ME_VARIANTS`), in a
    T-Former's place: same input and output ``(B, T, N, D)``, each patch location's frames a
    sequence of its own (as the T-Former's temporal-only attention), ``depth`` layers of the
    T-Former's pre-norm residual form ``x = x + mixer(LN(x))`` with the attention + MLP swapped for:

    * ``me-lstm`` / ``me-gru``: one LSTM / GRU layer of width ``D`` (its output at every frame);
    * ``me-tcn``: two kernel-3 temporal convolutions of width ``D`` (dilation 1, then 2; ReLU
      between; same-length padding);
    * ``me-mean``: nothing at all -- the identity, whatever ``depth``, so the model is the MELayer
      embeddings summed, averaged over time and patches, and classified (the computation of MSSTNet
      with depths 0-0-0, as a named row).
    """

    def __init__(self, cfg: MSSTConfig, depth: int):
        super().__init__()
        self.kind = cfg.variant.split("-", 1)[1]
        dim = cfg.embed_dim
        layers = depth if self.kind != "mean" else 0
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        if self.kind in ("lstm", "gru"):
            rnn = nn.LSTM if self.kind == "lstm" else nn.GRU
            self.mixers = nn.ModuleList(rnn(dim, dim, num_layers=1, batch_first=True) for _ in range(layers))
        else:
            self.mixers = nn.ModuleList(
                nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv1d(dim, dim, 3, padding=2, dilation=2))
                for _ in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not len(self.mixers):
            return z
        b, t, n, d = z.shape
        x = z.permute(0, 2, 1, 3).reshape(b * n, t, d)  # (B*N, T, D): one sequence per location
        for norm, mixer in zip(self.norms, self.mixers):
            h = norm(x)
            h = mixer(h)[0] if self.kind in ("lstm", "gru") else mixer(h.transpose(1, 2)).transpose(1, 2)
            x = x + h
        return x.reshape(b, n, t, d).permute(0, 2, 1, 3)


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
        if cfg.variant != "msstnet" and cfg.variant not in ME_VARIANTS:
            raise ValueError(f"MSSTNet needs variant='msstnet' or one of {ME_VARIANTS}, got {cfg.variant!r}; "
                             f"use build_model()")
        self.cfg = cfg
        self.backbone = Backbone(cfg.stages, cfg.backbone_weights)
        self.melayers = nn.ModuleList(
            MELayer(STAGE_CHANNELS[s], math.ceil(cfg.image_size / STAGE_STRIDE[s]), cfg) for s in cfg.stages
        )
        temporal = TFormer if cfg.variant == "msstnet" else MatchedTemporal  # a matched baseline swaps only these
        self.tformers = nn.ModuleList(temporal(cfg, depth) for depth in cfg.depths)
        # Eq. (12) classifies the pooled y_3 as it is; head_norm (not in the paper) normalises it first.
        self.head_norm = nn.LayerNorm(cfg.embed_dim) if cfg.head_norm else nn.Identity()
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.apply(_init_transformer_weights)

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three MELayer outputs ``z_i`` of shape ``(B, T, N, D)``."""
        b, t = _check_clip(x, self.cfg)
        maps = self.backbone(x.flatten(0, 1))  # frames of all clips as one batch
        return self.embed_maps(maps, b, t)

    def embed_maps(self, maps: dict[str, torch.Tensor], batch: int, frames: int) -> list[torch.Tensor]:
        """MELayers on the backbone's stage maps ``(B*T, C, H', W')`` (computed now or read from the
        feature cache of a frozen backbone, ``msstlib.features``)."""
        return [mel(maps[s], batch, frames) for mel, s in zip(self.melayers, self.cfg.stages)]

    def fuse(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Progressive multi-scale fusion (the ⊕ of Fig. 2); returns the last T-Former's ``(B, T, N, D)``."""
        y = None
        for z, tformer in zip(embeddings, self.tformers):
            y = tformer(z if y is None else z + y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(self.embed(x))
        return self.head(self.head_norm(y.mean(dim=(1, 2))))  # eq. (12): mean over time and patches, then FC

    def forward_maps(self, maps: dict[str, torch.Tensor], batch: int, frames: int) -> torch.Tensor:
        """Everything after the backbone: ``forward(x) == forward_maps(backbone(x), B, T)``."""
        y = self.fuse(self.embed_maps(maps, batch, frames))
        return self.head(self.head_norm(y.mean(dim=(1, 2))))

    @property
    def feature_stages(self) -> tuple[str, ...]:
        """The backbone outputs the layers after it read (what a feature cache must hold)."""
        return tuple(self.cfg.stages)


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
        return self.forward_maps({"pool4": feats}, b, t)

    def forward_maps(self, maps: dict[str, torch.Tensor], batch: int, frames: int) -> torch.Tensor:
        """Everything after the backbone, from the pooled ``layer4`` feature ``maps["pool4"]`` ``(B*T, 512)``."""
        return self.head(maps["pool4"].reshape(batch, frames, -1).mean(dim=1))

    @property
    def feature_stages(self) -> tuple[str, ...]:
        return ("pool4",)


class ResNet18Temporal(nn.Module):
    """Table 3's same-backbone temporal baselines on the pooled per-frame ResNet-18 feature (512-d),
    order-aware unlike :class:`ResNet18Mean`:

    * ``resnet18-lstm`` / ``resnet18-gru``: one LSTM / GRU layer (``cfg.baseline_hidden`` units, 512
      as in the field's R18+LSTM/GRU), the state after the last frame classified by one FC;
    * ``resnet18-tcn``: a kernel-3 temporal convolution to ``baseline_hidden`` channels, then two
      residual blocks of two kernel-3 convolutions (dilation 1, then 2; ReLU; same-length padding),
      mean over time, one FC.

    Trained under the same recipe and frozen features as MSSTNet (our protocol); the paper copies
    these rows' numbers from other papers.
    """

    def __init__(self, cfg: MSSTConfig):
        super().__init__()
        if cfg.variant not in ("resnet18-lstm", "resnet18-gru", "resnet18-tcn"):
            raise ValueError(f"ResNet18Temporal needs an lstm/gru/tcn variant, got {cfg.variant!r}")
        self.cfg = cfg
        self.kind = cfg.variant.split("-")[1]
        width, hidden = STAGE_CHANNELS["layer4"], cfg.baseline_hidden
        self.backbone = Backbone(("layer4",), cfg.backbone_weights, full=True)
        if self.kind in ("lstm", "gru"):
            self.temporal = (nn.LSTM if self.kind == "lstm" else nn.GRU)(width, hidden, num_layers=1, batch_first=True)
        else:  # an input convolution, then residual blocks of two convolutions at dilation 1 and 2

            def conv(c_in: int, dilation: int) -> nn.Conv1d:
                return nn.Conv1d(c_in, hidden, 3, padding=dilation, dilation=dilation)

            self.temporal = nn.ModuleList([conv(width, 1)] + [nn.Sequential(conv(hidden, d), nn.ReLU(), conv(hidden, d))
                                                               for d in (1, 2)])
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = _check_clip(x, self.cfg)
        feats = self.backbone(x.flatten(0, 1))["layer4"].mean(dim=(2, 3))  # (B*T, 512)
        return self.forward_maps({"pool4": feats}, b, t)

    def forward_maps(self, maps: dict[str, torch.Tensor], batch: int, frames: int) -> torch.Tensor:
        """Everything after the backbone, from the pooled ``layer4`` feature ``maps["pool4"]`` ``(B*T, 512)``."""
        seq = maps["pool4"].reshape(batch, frames, -1)  # (B, T, 512)
        if self.kind in ("lstm", "gru"):
            out, _ = self.temporal(seq)
            return self.head(self.drop(out[:, -1]))  # the state after the last frame
        h = F.relu(self.temporal[0](seq.transpose(1, 2)))  # (B, hidden, T)
        for block in self.temporal[1:]:
            h = h + F.relu(block(h))  # a residual block; the length T is kept
        return self.head(self.drop(h.mean(dim=2)))

    @property
    def feature_stages(self) -> tuple[str, ...]:
        return ("pool4",)


def _init_transformer_weights(m: nn.Module) -> None:
    # ViT-style init for the new layers; the ResNet-18 keeps torchvision's own initialisation.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def build_model(cfg: MSSTConfig) -> nn.Module:
    """The model a config describes: :class:`MSSTNet` (or a matched baseline on its MELayers), the
    :class:`ResNet18Mean` baseline or a :class:`ResNet18Temporal` one."""
    if cfg.variant == "msstnet" or cfg.variant in ME_VARIANTS:
        return MSSTNet(cfg)
    return ResNet18Mean(cfg) if cfg.variant == "resnet18-mean" else ResNet18Temporal(cfg)
