"""Grad-CAM maps like the paper's Fig. 3, and a measurement of its claim (``gradcam.ipynb``).

The paper shows feature maps without and after the T-Former and says the T-Former makes the network
focus on where facial muscles change. We compute per-frame Grad-CAM maps with the ``grad-cam``
package (pytorch-grad-cam) at the three CNN scales and at the T-Former outputs, for MSSTNet and for
a trained control of comparable accuracy (the ResNet-18 + GRU on the same frozen backbone, reading
its pooled layer-4 feature; never a model at chance), score them against SynDFER's per-frame motion
masks, and compare like with like as paired per-clip differences (:func:`like_with_like`): within
MSSTNet, each T-Former's output against the CNN map it reads at the same resolution (what Fig. 3
shows), and MSSTNet against the control at the same CNN layer.

pytorch-grad-cam reads a 5-D input as a 3-D volume ``(B, C, D, H, W)``, not as our clip layout
``(B, T, C, H, W)``. :class:`ClipAsBatch` is the thin wrapper that solves it: it takes one clip's
``T`` frames as a batch of ``T`` images, routes them through the model as **one** clip, and returns
the clip's logits for every frame, so the package computes one map per frame, each from the
gradient of the clip's class score.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from . import export
from .checkpoint import CheckpointError
from .checkpoint import load as load_plain
from .data import ClipDataset, DataConfig, sample_frames
from .labels import EMOTIONS
from .model import MSSTConfig, MSSTNet, build_model

METHODS = {"GradCAM": GradCAM, "GradCAMPlusPlus": GradCAMPlusPlus, "HiResCAM": HiResCAM, "LayerCAM": LayerCAM,
           "XGradCAM": XGradCAM, "EigenCAM": EigenCAM}


class ClipAsBatch(torch.nn.Module):
    """One clip's frames ``(T, 3, H, W)`` in, the clip's logits repeated per frame ``(T, C)`` out."""

    def __init__(self, model: MSSTNet):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = self.model(frames.unsqueeze(0))  # the T frames are one clip
        return logits.expand(frames.shape[0], -1)


def load_checkpoint(path: str | Path) -> tuple[MSSTNet, dict]:
    """An MSSTNet from a ``checkpoint.pt`` written by ``msstlib.train``, or from a folder that
    ``msstlib.export`` wrote (weights included either way, so the pre-trained backbone file it
    started from is not needed). Read without running code (:mod:`msstlib.checkpoint`, safetensors):
    anything else is refused with :class:`~msstlib.checkpoint.CheckpointError`."""
    if Path(path).is_dir():
        model, config = export.load(path)
        return model, {"model": config["model"], "data": config["data"]}
    fix = "give a checkpoint.pt that python -m msstlib.train wrote"
    ckpt = load_plain(path, "checkpoint", fix=fix)
    try:
        model_cfg = MSSTConfig(**{**ckpt["config"]["model"], "backbone_weights": None})
        model = build_model(model_cfg)  # MSSTNet, or a ResNet-18 baseline (the matched control)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or not a plain checkpoint of msstlib.train "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}): "
                              f"{fix}") from None
    return model.eval(), ckpt["config"]


def layers_of(model: MSSTNet) -> dict[str, tuple[torch.nn.Module, object]]:
    """Target layers by name: the three CNN scales, and the T-Former outputs on the patch grid."""
    grid = grid_of(model)

    def tokens_to_grid(t: torch.Tensor) -> torch.Tensor:  # (1, T, N, D) -> (T, D, g, g), row-major patches
        return t[0].permute(0, 2, 1).reshape(t.shape[1], t.shape[3], grid, grid)

    out = {f"CNN {s}": (model.backbone.layers[s], None) for s in model.cfg.stages}
    for i, tformer in enumerate(getattr(model, "tformers", ())):  # a baseline has CNN maps only
        if model.cfg.depths[i]:  # a stage without blocks has no T-Former output (its tokens pass unchanged)
            out[f"T-Former{i + 1} out"] = (tformer, tokens_to_grid)
    return out


def predict(model: MSSTNet, frames: torch.Tensor) -> int:
    """The class the model predicts for one clip ``(T, 3, H, W)``."""
    with torch.no_grad():
        return int(model(frames.unsqueeze(0)).argmax(1).item())


def clip_cams(model: MSSTNet, frames: torch.Tensor, label: int, method: str = "GradCAM",
              layers: list[str] | None = None) -> dict[str, np.ndarray]:
    """Per-frame maps ``(T, H, W)`` in [0, 1] for each target layer, for class ``label``."""
    wrapped = ClipAsBatch(model)
    targets = [ClassifierOutputTarget(int(label))] * frames.shape[0]
    result = {}
    for name, (layer, reshape) in layers_of(model).items():
        if layers is not None and name not in layers:
            continue
        with METHODS[method](model=wrapped, target_layers=[layer], reshape_transform=reshape) as cam:
            result[name] = cam(input_tensor=frames, targets=targets)
    return result


def motion_masks(root: str | Path, clip: str, indices: np.ndarray, size: int) -> np.ndarray:
    """SynDFER's expression masks (bit 1) of the sampled frames, ``(T, size, size)`` bool."""
    path = Path(root) / "Masks" / f"{Path(clip).name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no motion mask (only SynDFER has them; DFEW gives the figure only)")
    mask = (np.load(path)["mask"][indices] & 1).astype(bool)
    if mask.shape[-1] != size:
        mask = torch.nn.functional.interpolate(torch.from_numpy(mask[:, None]).float(), size=(size, size),
                                               mode="nearest")[:, 0].numpy().astype(bool)
    return mask


def score(cams: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Energy share inside the moving regions and pointing-game hit rate, over frames with motion."""
    keep = masks.reshape(len(masks), -1).any(1)
    if not keep.any():
        return {}
    c, m = cams[keep].reshape(keep.sum(), -1), masks[keep].reshape(keep.sum(), -1)
    energy = (c * m).sum(1) / np.maximum(c.sum(1), 1e-12)
    hit = m[np.arange(len(c)), c.argmax(1)]
    return {"energy_in_mask": float(energy.mean()), "pointing_hit": float(hit.mean()),
            "mask_area": float(m.mean()), "frames": int(keep.sum())}


@dataclass
class ClipSource:
    """The test clips of one fold, with model inputs, displayable frames and masks, sampled as the
    models' test set samples them (``candidate_frames``: a model trained with
    ``DataConfig.candidate_frames`` picks its test frames among those candidates)."""

    annotations: str
    root: str
    fold: int
    frames: int
    image_size: int = 64
    candidate_frames: int = 0

    def __post_init__(self):
        self.ds = ClipDataset(self.annotations, self.root, fold=self.fold, train=False,
                              cfg=DataConfig(frames=self.frames, image_size=self.image_size,
                                             candidate_frames=self.candidate_frames))
        self.has_masks = (Path(self.root) / "Masks").is_dir()  # SynDFER has them; DFEW: figure only

    def __len__(self) -> int:
        return len(self.ds)

    def get(self, i: int, with_masks: bool = True):
        idx, _ = sample_frames(int(self.ds.num_frames[i]), self.frames, False, candidates=self.candidate_frames)
        raw = self.ds.frames_uint8(i, idx)  # loaded once: model input and display both come from it
        x, y = self.ds.to_input(raw), int(self.ds.labels[i])
        rgb = raw.permute(0, 2, 3, 1).numpy()
        masks = (motion_masks(self.root, self.ds.clips[i], idx, self.image_size)
                 if with_masks and self.has_masks else None)
        return x, y, rgb, masks, idx


def on_grid(cams: np.ndarray, grid: int) -> np.ndarray:
    """Per-frame maps ``(T, H, W)`` brought to a ``grid x grid`` resolution (mean over each cell)
    and back to ``H x W`` as the T-Former maps are (bilinear, pytorch-grad-cam's resize), then
    scaled to [0, 1] per frame: a CNN map seen at the resolution of the T-Former's patch grid."""
    t, h, w = cams.shape
    x = torch.from_numpy(np.ascontiguousarray(cams, dtype=np.float32))[:, None]
    x = torch.nn.functional.adaptive_avg_pool2d(x, grid)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-7)).numpy()


def same_scale_pairs(model) -> list[tuple[str, str]]:
    """(CNN map, T-Former output) for every stage with a T-Former: the within-model comparison the
    paper's Fig. 3 makes; the CNN map is scored at the T-Former's resolution (:func:`at_grid`)."""
    if not hasattr(model, "tformers"):  # a baseline has CNN maps only
        return []
    return [(f"CNN {model.cfg.stages[i]}", f"T-Former{i + 1} out") for i, d in enumerate(model.cfg.depths) if d]


def grid_of(model) -> int:
    """Side of the T-Formers' square patch grid."""
    return math.isqrt(model.cfg.num_patches)


def at_grid(layer: str, model) -> str:
    """The name of a CNN map scored at the T-Former's patch-grid resolution, e.g. "CNN layer1 at 4x4"."""
    return f"{layer} at {grid_of(model)}x{grid_of(model)}"


def measure(models: dict[str, MSSTNet], source: ClipSource, method: str = "GradCAM", max_clips: int = 0,
            progress: bool = True) -> pd.DataFrame:
    """Score every test clip's maps: one row per (model, layer, clip), for the clip's true class.
    For a model with T-Formers, each CNN map under one is also scored at the T-Former's patch-grid
    resolution (:func:`on_grid`, layer ``"CNN <stage> at 4x4"``), for :func:`paired`.

    ``progress``: a live bar (in JupyterLab, a widget). A batch run (papermill) passes False: a
    saved widget reads as a stall in an untrusted notebook, so it gets only the summary line that
    every run prints at the end ("Grad-CAM: scored 600/600 test clips in 6:15")."""
    from tqdm.auto import tqdm

    rows, t0 = [], time.time()
    n = len(source) if not max_clips else min(max_clips, len(source))
    for i in tqdm(range(n), desc="Grad-CAM scoring", disable=not progress, mininterval=10):
        x, y, _, masks, _ = source.get(i)
        for mname, model in models.items():
            cams = clip_cams(model, x, y, method)
            for cnn, _ in same_scale_pairs(model):
                cams[at_grid(cnn, model)] = on_grid(cams[cnn], grid_of(model))
            pred = predict(model, x)
            for layer, maps in cams.items():
                s = score(maps, masks)
                if s:
                    rows.append({"model": mname, "layer": layer, "clip": source.ds.clips[i], "class": EMOTIONS[y],
                                 "correct": pred == y, **s})
    minutes, seconds = divmod(round(time.time() - t0), 60)
    print(f"Grad-CAM: scored {n}/{len(source)} test clips in {minutes}:{seconds:02d}", flush=True)
    return pd.DataFrame(rows)


def paired(scores: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], metric: str = "energy_in_mask") -> dict:
    """``a`` minus ``b`` (each a (model, layer)) on the same clips: mean of each, the mean paired
    difference with a Student-t 95 % interval over clips, and a verdict (supported: ``a`` puts more
    of its map on the moving regions). Clips are the units: the interval is about these two trained
    maps on this fold's test clips, not about retraining (seeds and folds are not in it)."""
    from .claims import interval, verdict

    def pick(model, layer):
        sel = scores[(scores["model"] == model) & (scores["layer"] == layer)]
        return sel.set_index("clip")[metric]

    sa, sb = pick(*a), pick(*b)
    common = sa.index.intersection(sb.index)
    diff = (sa[common] - sb[common]).to_numpy()
    mean, low, high, mde = interval(diff)
    return {"a": " / ".join(a), "b": " / ".join(b), "clips": len(common), f"{metric}_a": float(sa[common].mean()),
            f"{metric}_b": float(sb[common].mean()), "diff": mean, "ci_low": low, "ci_high": high, "mde": mde,
            "verdict": verdict(low, high)}


def like_with_like(scores: pd.DataFrame, msst: str, control: str, model) -> pd.DataFrame:
    """The two Grad-CAM comparisons that compare like with like, paired per clip:
    ``within``: in MSSTNet, each T-Former's output vs the CNN map it reads, at the same resolution;
    ``vs control``: MSSTNet's CNN maps vs the matched control's (same frozen backbone, same layer)."""
    rows = [{"comparison": "within " + msst, **paired(scores, (msst, tf), (msst, at_grid(cnn, model)))}
            for cnn, tf in same_scale_pairs(model)]
    rows += [{"comparison": f"{msst} vs {control}", **paired(scores, (msst, f"CNN {s}"), (control, f"CNN {s}"))}
             for s in model.cfg.stages]
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame, by: tuple[str, ...] = ("model", "layer")) -> pd.DataFrame:
    """Mean and 95 % confidence interval (normal approximation over clips) of both scores."""
    g = scores.groupby(list(by), sort=False)
    out = g.agg(clips=("clip", "nunique"), energy_in_mask=("energy_in_mask", "mean"),
                energy_sd=("energy_in_mask", "std"), pointing_hit=("pointing_hit", "mean"),
                pointing_sd=("pointing_hit", "std"), mask_area=("mask_area", "mean"))
    for col, sd in (("energy_in_mask", "energy_sd"), ("pointing_hit", "pointing_sd")):
        half = 1.96 * out[sd] / np.sqrt(out["clips"])
        out[f"{col}_ci_low"], out[f"{col}_ci_high"] = out[col] - half, out[col] + half
    return out.drop(columns=["energy_sd", "pointing_sd"]).reset_index()


def figure(rgb: np.ndarray, cams: dict[str, dict[str, np.ndarray]], marked: str, title: str = "",
           predicted: dict[str, str] | None = None):
    """Rows = frames; columns = each model's maps (with the class it predicts, when ``predicted``
    is given). The columns of the model ``marked`` (the one with T-Formers) get red frames, as the
    paper boxes them. A colour bar gives the scale: each map is normalised to [0, 1] per frame."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cols = [(m, layer) for m, per in cams.items() for layer in per]
    t = rgb.shape[0]
    fig, axes = plt.subplots(t, len(cols) + 1, figsize=(1.6 * (len(cols) + 1) + 0.8, 1.6 * t + 0.5), squeeze=False)
    for r in range(t):
        axes[r, 0].imshow(rgb[r])
        axes[r, 0].set_ylabel(f"frame {r + 1}", fontsize=8)
        for c, (m, layer) in enumerate(cols, start=1):
            axes[r, c].imshow(show_cam_on_image(rgb[r].astype(np.float32) / 255, cams[m][layer][r], use_rgb=True))
            if r == 0:
                said = f"\npredicts {predicted[m]}" if predicted and m in predicted else ""
                axes[r, c].set_title(f"{m}{said}\n{layer}", fontsize=7)
            if m == marked:
                for spine in axes[r, c].spines.values():
                    spine.set(color="red", linewidth=2.5)
    axes[0, 0].set_title(f"input\n{rgb.shape[1]}x{rgb.shape[2]} px", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    bar = fig.add_axes((0.935, 0.2, 0.015, 0.6))
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), cax=bar).set_label("Grad-CAM (per frame, 0-1)",
                                                                                  fontsize=7)
    bar.tick_params(labelsize=6)
    return fig


def verdict(table: pd.DataFrame) -> str:
    """A plain sentence per row of :func:`like_with_like`: what the paired difference supports."""
    lines = []
    for r in table.itertuples(index=False):
        word = {"supported": f"{r.a} puts more of its map on the moving muscles",
                "contradicted": f"{r.a} puts less of its map on the moving muscles",
                "unresolved": "no clear difference at this size"}[r.verdict]
        lines.append(f"{r.comparison}: {r.a} {r.energy_in_mask_a:.3f} vs {r.b} {r.energy_in_mask_b:.3f} of the CAM "
                     f"energy on the moving regions; paired difference {r.diff:+.3f} [{r.ci_low:+.3f}, "
                     f"{r.ci_high:+.3f}] over {r.clips} clips -> {word}.")
    return "\n".join(lines)

SHORT_NAMES = {"resnet18-gru": "R18+GRU", "resnet18-lstm": "R18+LSTM", "resnet18-tcn": "R18+TCN",
               "resnet18-mean": "R18+mean"}


def short_name(model) -> str:
    """How the figures and tables name a model: ``MSSTNet 111`` (its depths) or ``R18+GRU`` ..."""
    if model.cfg.variant == "msstnet":
        return "MSSTNet " + "".join(map(str, model.cfg.depths))
    return SHORT_NAMES.get(model.cfg.variant, model.cfg.variant)


# The columns of the score tables that are shares of a map's energy or of frames (shown in percent).
SHARES = ("energy_in_mask", "pointing_hit", "mask_area", "energy_in_mask_ci_low", "energy_in_mask_ci_high",
          "pointing_hit_ci_low", "pointing_hit_ci_high", "energy_in_mask_a", "energy_in_mask_b", "diff", "ci_low",
          "ci_high", "mde")


def write_tables(tables_dir: str | Path, scores: pd.DataFrame, by_class: pd.DataFrame, summary: pd.DataFrame,
                 like: pd.DataFrame, verdict_text: str, heading: str) -> None:
    """``gradcam.ipynb``'s outputs: the per-clip scores, their summaries (overall and per class), the
    like-with-like comparisons (CSV at full precision) and ``gradcam_scores.md`` (``heading``, the
    two summaries and the verdicts)."""
    out = Path(tables_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "gradcam_scores_per_clip.csv", index=False)
    by_class.to_csv(out / "gradcam_scores_by_class.csv", index=False)
    summary.to_csv(out / "gradcam_scores.csv", index=False)
    like.to_csv(out / "gradcam_like_with_like.csv", index=False)
    (out / "gradcam_scores.md").write_text(
        heading + "\n\n" + summary.to_markdown(index=False, floatfmt=".3f") + "\n\nPaired per clip, like with like:\n\n"
        + like.to_markdown(index=False, floatfmt=".3f") + "\n\n" + verdict_text + "\n")
