"""Weights one can share: a trained run as ``model.safetensors`` + ``config.json`` (issue 27).

    python -m msstlib.export RUN_DIR --out MODEL_DIR

A training checkpoint is a pickle (made safe to read here, :mod:`msstlib.checkpoint`, but still a
training artefact: optimiser state, RNG states, the log). What one shares is the model alone:

* ``MODEL_DIR/model.safetensors``: every tensor of the model's state dict (the ResNet-18
  included, so the backbone file it started from is not needed), in the safetensors format, which
  holds tensors and nothing else: loading it cannot run code.
* ``MODEL_DIR/config.json``: everything needed to rebuild the model (``MSSTConfig``), how clips are
  fed to it (``DataConfig``: frames, size, normalisation), the label order, its run id, its build,
  the data it was trained on and its test result.

:func:`load` rebuilds the model from that folder; ``msstlib.predict`` and Grad-CAM
(:func:`msstlib.cam.load_checkpoint`) read it. Nothing pickled is ever loaded from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from . import files, inputs
from . import paths
from .checkpoint import CheckpointError
from .checkpoint import load as load_plain
from .config import ConfigError, DataConfig, MSSTConfig
from .labels import EMOTIONS

FORMAT = "msstlib-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def export(run_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write the model of a finished run (``RUN_DIR`` with ``checkpoint.pt`` and ``result.json``)
    into ``out``; returns ``out``. The folder appears complete or not at all."""
    from safetensors.torch import save_file

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "checkpoint.pt").is_file():
        raise ConfigError(f"{run_dir}: no checkpoint.pt; give the --out folder of a finished msstlib.train run "
                          f"(a study row's is build/.../runs/<row>)")
    if not (run_dir / "result.json").is_file():
        raise ConfigError(f"{run_dir}: no result.json: the run has not finished; finish it (--resume) first")
    if out.exists() and not force and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not empty; choose another folder or pass --force")
    inputs.check_out(out)
    ckpt = load_plain(run_dir / "checkpoint.pt", "checkpoint", fix="remove it, or export a run that finished")
    result = files.read_json(run_dir / "result.json", "the run's result")
    if result.get("run_id") != ckpt.get("run_id"):
        raise ConfigError(f"{run_dir}: checkpoint.pt (run {ckpt.get('run_id')}) and result.json (run "
                          f"{result.get('run_id')}) are of different runs; export a folder that one run wrote")
    model_cfg = {**ckpt["config"]["model"], "backbone_weights": None}
    MSSTConfig(**model_cfg)  # it rebuilds (a ValueError names the field otherwise)
    config = {
        "format": FORMAT, "labels": list(EMOTIONS), "model": model_cfg, "data": ckpt["config"]["data"],
        "run_id": ckpt["run_id"], "build": result.get("build"), "identity": ckpt.get("identity"),
        "trained_on": {"dataset": result.get("dataset"), "fold": result.get("fold"), "split": result.get("split"),
                       "preset": result.get("preset"), "epochs": result.get("epochs"), "seed": result.get("seed")},
        "result": {"war": result.get("war"), "uar": result.get("uar"), "test_clips": result.get("test_clips")},
        "exported_from": paths.relative(run_dir), "versions": result.get("versions", {}),
    }
    tensors = {k: v.detach().contiguous() for k, v in ckpt["model"].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT, "run_id": str(ckpt["run_id"])})
        files.write_json(tmp / CONFIG, config, indent=1)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load(model_dir: str | Path):
    """``(model, config)`` from an exported folder: the model in eval mode on the CPU. Reads
    ``config.json`` and ``model.safetensors`` only; :class:`CheckpointError` when either is missing,
    damaged, or does not fit the other."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import build_model

    model_dir = Path(model_dir)
    fix = "give a folder that python -m msstlib.export wrote"
    for name in (CONFIG, WEIGHTS):
        if not (model_dir / name).is_file():
            raise CheckpointError(f"--model {model_dir}: no {name}; {fix} (a training run's folder: export it first, "
                                  f"python -m msstlib.export RUN_DIR --out MODEL_DIR)")
    config = files.read_json(model_dir / CONFIG, "the exported model's config", fix=fix)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{model_dir / CONFIG}: format {config.get('format')!r}, expected {FORMAT!r}; {fix}")
    try:
        model = build_model(MSSTConfig(**{**config["model"], "backbone_weights": None}))
        DataConfig(**config["data"])
        state = load_file(str(model_dir / WEIGHTS))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, OSError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"--model {model_dir}: its weights and config do not rebuild the model ({first}); "
                              f"{fix}") from None
    return model.eval(), config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstlib.export", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (checkpoint.pt, result.json)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.add_argument("--force", action="store_true", help="replace MODEL_DIR if it holds something")
    args = p.parse_args(argv)
    try:
        out = export(args.run_dir, args.out, force=args.force)
    except inputs.USAGE_ERRORS as exc:
        print(f"error: {inputs.describe(exc)}", file=sys.stderr)
        return 2
    config = files.read_json(out / CONFIG)
    print(f"run {config['run_id']} -> {out / WEIGHTS} and {out / CONFIG} (trained on "
          f"{config['trained_on']['dataset']}, test WAR {100 * config['result']['war']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
