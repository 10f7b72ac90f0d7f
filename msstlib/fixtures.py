"""Tiny data and models for notebook defaults and tests: smoke runs, never results.

Each notebook's defaults and the test suite need a dataset, a backbone and trained models that
take seconds to make. They live here, beside nothing that computes a result, so that Grad-CAM and
the notebooks do not reach into the study or the engine for them (docs/layout.md).
"""

from __future__ import annotations

from pathlib import Path

TINY = {"embed_dim": 32, "num_heads": 4, "baseline_hidden": 32}  # a model small enough for seconds


def tiny_synthetic(data: str | Path, clips: int = 70, seed: int = 0) -> tuple[str, str]:
    """A tiny SynDFER prepared like DFEW, for notebook defaults and tests. Returns (annotations, root)."""
    from data_prep import dfew
    from data_prep.synthetic import SynDFERConfig, generate

    data = Path(data)
    ann = data / "prepared" / "annotations.csv"
    if not ann.exists():
        generate(data, SynDFERConfig(), clips=clips, seed=seed, jobs=1, verbose=False)
        # quiet: DFEW's count table (with the real release's published sizes) would read as if about DFEW
        if dfew.main(["--root", str(data), "--out", str(ann.parent), "--quiet"]) != 0:
            raise RuntimeError(f"preparing the tiny SynDFER at {data} failed")
    return str(ann), str(data)


def tiny_backbone(path: str | Path) -> str:
    """A ResNet-18 pre-trained for a moment on a tiny separate SynDFER draw (the cpu preset freezes
    its backbone and needs weights): for notebook defaults and tests, not for results."""
    from .pretrain import PretrainConfig, pretrain

    return str(pretrain(PretrainConfig(clips=35, frames_per_clip=2, epochs=1, batch_size=16), path, progress=False))


def demo_checkpoints(work: str | Path, annotations: str, root: str) -> tuple[str, str]:
    """Two tiny one-epoch models (the ResNet-18 + GRU control; MSSTNet depth 1) for Grad-CAM's
    smoke defaults: (control, MSSTNet) checkpoints."""
    from .train import run

    paths = []
    weights = tiny_backbone(Path(work) / "resnet18_tiny.pt")
    for variant, depths in (("resnet18-gru", (0, 0, 0)), ("msstnet", (1, 1, 1))):
        out = Path(work) / variant
        if not (out / "checkpoint.pt").exists() or not (out / "result.json").exists():
            run(annotations=annotations, root=root, fold=1, frames=4, depths=depths, variant=variant, preset="cpu",
                epochs=1, work_dir=str(out), progress=False, overrides={**TINY, "backbone_weights": weights})
        paths.append(str(out / "checkpoint.pt"))
    return paths[0], paths[1]


def tiny_model(work: str | Path) -> str:
    """A tiny SynDFER MSSTNet (T = 4, one epoch), exported (``msstlib.export``): predict.ipynb's
    smoke default. Returns the model folder."""
    from .export import export
    from .train import run

    work = Path(work)
    annotations, root = tiny_synthetic(work / "data")
    model = work / "model"
    if not (model / "config.json").exists():
        run(annotations=annotations, root=root, fold=1, frames=4, depths=(1, 1, 1), preset="cpu", epochs=1,
            work_dir=str(work / "run"), progress=False,
            overrides={**TINY, "batch_size": 16, "backbone_weights": tiny_backbone(work / "resnet18_tiny.pt")})
        export(work / "run", model)
    return str(model)
