"""FLOPs of MSSTNet against the paper's Table 3 (``python -m msstlib.flops [--json]``).

Counts multiply-accumulates (MACs), the unit thop/fvcore report as "FLOPs" and the paper's
Table 3 uses, with :class:`torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per
MAC; we halve). Only matrix products and convolutions are counted, as those tools do.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import PRESETS, MSSTConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m msstlib.flops", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="model preset (default: paper)")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 8, 12, 16])
    parser.add_argument("--stages", nargs=3, metavar="STAGE", help="override the three ResNet-18 stages "
                        "(e.g. layer2 layer3 layer4, the other reading of the paper)")
    return parser


if __name__ == "__main__":  # flags are checked before torch loads (seconds): a wrong one is reported at once
    build_parser().parse_args()

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

from .model import build_model

# Table 3 of the paper, FLOPs (G) of MSSTNet at each T (depth 2).
PAPER_GFLOPS = {4: 5.05, 8: 10.10, 12: 15.15, 16: 20.20}
# The parts counted separately (attribute names; "temporal": the baselines' LSTM / GRU / TCN).
COMPONENTS = ("backbone", "melayers", "tformers", "temporal", "head")
_GATES = {torch.nn.LSTM: 4, torch.nn.GRU: 3, torch.nn.RNN: 1}


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The attention kernel torch runs on the CPU, counted as its flash-attention kernel is (the
    shapes of query, key and value): torch 2.14's counter has no formula for it and counted joint
    and temporal-only attention alike, while 2.15's counts it."""
    return sdpa_flop_count(query, key, value)


_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_MISSING = {_CPU_SDPA: _cpu_attention_flops} if _CPU_SDPA is not None and _CPU_SDPA not in flop_registry else {}


def _rnn_gmacs(mod: torch.nn.Module, frames: int, sequences: int = 1) -> float:
    """MACs of a recurrent layer over one clip of ``sequences`` sequences (1 for a pooled
    baseline, N patch locations for a matched ``me-*`` one): per step and gate, ``W_i x + W_h h``."""
    gates, h = _GATES[type(mod)], mod.hidden_size
    ins = [mod.input_size] + [h * (2 if mod.bidirectional else 1)] * (mod.num_layers - 1)
    return sum(gates * (i + h) * h for i in ins) * frames * sequences * (2 if mod.bidirectional else 1) / 1e9


def count_gmacs(cfg: MSSTConfig, frames: int, model: torch.nn.Module | None = None) -> dict[str, float]:
    """GMACs of one clip of ``frames`` frames: ``{"total", "backbone", "melayers", "tformers", "head"}``."""
    model = model if model is not None else build_model(cfg)
    model.eval()
    x = torch.zeros(1, frames, 3, cfg.image_size, cfg.image_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False, custom_mapping=_MISSING)
    sequences: dict[torch.nn.Module, int] = {}  # how many sequences each recurrent layer ran over the clip
    hooks = [mod.register_forward_hook(lambda m, args, _: sequences.__setitem__(m, args[0].shape[0]))
             for mod in model.modules() if type(mod) in _GATES]
    with torch.no_grad(), counter:
        model(x)
    for hook in hooks:
        hook.remove()
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    out = {"total": counter.get_total_flops() / 2e9}
    # On the CPU, torch runs nn.LSTM as one oneDNN kernel the counter cannot see into (it sees
    # nn.GRU's matrix products): count a recurrent layer the counter reported as zero from its sizes.
    for name, mod in model.named_modules():
        if type(mod) in _GATES and not sum(per_module.get(f"{root}.{name}", {}).values()):
            extra = _rnn_gmacs(mod, frames, sequences.get(mod, 1))
            out["total"] += extra
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the layer and every module holding it (tformers.0, ...)
                entry = per_module.setdefault(".".join([root, *parts[:i]]), {})
                entry["rnn"] = entry.get("rnn", 0) + extra * 2e9
    for name in COMPONENTS:
        key = f"{root}.{name}"
        # A ModuleList has no entry of its own: add up its direct children (melayers.0, .1, ...).
        keys = [key] if key in per_module else [
            k for k in per_module if k.startswith(key + ".") and k.count(".") == key.count(".") + 1
        ]
        out[name] = sum(sum(per_module[k].values()) for k in keys) / 2e9
    return out


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_table(cfg: MSSTConfig = PRESETS["paper"].model, frames=(4, 8, 12, 16), compare: bool = True) -> list[dict]:
    """One row per T: our GMACs, the paper's, their ratio, parameters, and the per-component split.

    ``compare=False`` leaves the paper's column empty (for presets that are not the paper's model).
    """
    model = build_model(cfg)
    params = param_count(model)
    rows = []
    for t in frames:
        g = count_gmacs(cfg, t, model)
        paper = PAPER_GFLOPS.get(t) if compare else None
        rows.append(
            {
                "frames": t,
                "gflops": round(g["total"], 4),
                "paper_gflops": paper,
                "ratio": round(g["total"] / paper, 4) if paper else None,
                "params": params,
                **{f"{k}_gflops": v for k, v in g.items() if k != "total"},
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'T':>3} {'GFLOPs':>8} {'paper':>7} {'ratio':>6} {'params':>11} | {'backbone':>8} {'MELayers':>8} {'T-Formers':>9} {'head (M)':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['frames']:>3} {r['gflops']:>8.3f} {_fmt(r['paper_gflops'], 7, 2)} {_fmt(r['ratio'], 6, 3)} {r['params']:>11,} | "
            f"{r['backbone_gflops']:>8.3f} {r['melayers_gflops']:>8.3f} {r['tformers_gflops']:>9.3f} {r['head_gflops'] * 1e3:>8.3f}"
        )
    return "\n".join(lines)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = PRESETS[args.preset].model
    if args.stages:
        cfg = cfg.replace(stages=tuple(args.stages))
    rows = flops_table(cfg, tuple(args.frames), compare=args.preset == "paper")
    if args.json:
        keys = ("frames", "gflops", "paper_gflops", "ratio", "params")
        json.dump([{k: r[k] for k in keys} for r in rows], sys.stdout, indent=1)
        print()
    else:
        print(f"MSSTNet FLOPs (multiply-accumulates, G), preset {args.preset!r}: {cfg}")
        print(format_table(rows))
        if args.preset == "paper" and len(rows) > 1:
            linear = [r["gflops"] / rows[0]["gflops"] / (r["frames"] / rows[0]["frames"]) for r in rows]
            print(f"GFLOPs(T)/GFLOPs({rows[0]['frames']}) relative to T/{rows[0]['frames']}: "
                  + ", ".join(f"{v:.4f}" for v in linear))
    return 0


if __name__ == "__main__":
    sys.exit(main())
