"""Collect result JSONs into pandas and render the paper's tables beside ours (``tables.ipynb``).

Our numbers are in percent (like the paper's) in columns prefixed ``ours_``; the paper's,
transcribed in ``results/paper/*.csv``, in columns prefixed ``paper_``. On SynDFER the paper's
columns are there for the *shape* of the comparison (which rows win), never as the same quantity:
the paper measured DFEW / FERV39k.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import paths
from .config import build_of
from .files import read_json
from .grid import REPLICATE_TAG
from .labels import EMOTIONS

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"
# What a table cell is: one configuration (``config_id``: the run identity without fold and seed),
# shown with the fields a reader needs to tell configurations apart. Cells never mix presets,
# epoch counts or any other result-changing field.
CELL = ["preset", "epochs", "config_id"]
BASELINE_LABELS = {"resnet18-mean": "ResNet-18 + temporal mean (baseline)",
                   "resnet18-lstm": "ResNet-18 + LSTM (baseline)", "resnet18-gru": "ResNet-18 + GRU (baseline)",
                   "resnet18-tcn": "ResNet-18 + TCN (baseline)"}
# Tags of rows that repeat a table row with another seed (not a change to it).
REPLICATE_TAGS = ("", REPLICATE_TAG)


def _majority(confusion) -> float:
    """The majority class's share of the test clips (%), from a confusion matrix (rows: true class)."""
    if not confusion:
        return np.nan
    per_class = np.sum(confusion, axis=1)
    return 100 * float(np.max(per_class) / max(np.sum(per_class), 1))


def load_results(runs_dir: str | Path) -> pd.DataFrame:
    """One row per ``result.json`` under ``runs_dir`` (recursively), metrics in percent."""
    rows = []
    for path in sorted(Path(runs_dir).rglob("result.json")):
        r = read_json(path, "a run's result", fix="remove its run folder and run the row again (python -m "
                      "msstlib.study ... --status lists it)")
        model = r.get("config", {}).get("model", {})
        row = {
            "run": path.parent.name, "run_id": r.get("run_id"), "config_id": r.get("config_id"),
            "tag": r["tag"], "dataset": r["dataset"], "fold": r.get("fold"),
            "split": r.get("split"), "frames": r["frames"], "depths": "-".join(map(str, r["depths"])),
            "variant": r["variant"], "pos_embed": model.get("temporal_pos_embed", True), "seed": r["seed"],
            "preset": r["preset"], "epochs": r["epochs"], "war": 100 * r["war"], "uar": 100 * r["uar"],
            "gflops": r["gflops"], "params": r["params"], "wall_s": r["wall_s"],
            "build": build_of(r.get("identity", {})),
            "build_name": (r.get("build") or {}).get("name") or "",
            # the majority class's share of the test clips: the WAR of a model that predicts one class
            "majority": _majority(r.get("confusion")),
            "test_every": r.get("config", {}).get("train", {}).get("test_every", 0),
            "best_war": 100 * (r.get("best_epoch_selected_on_test") or {}).get("war", np.nan),
            "best_uar": 100 * (r.get("best_epoch_selected_on_test") or {}).get("uar", np.nan),
        }
        row.update({e: (100 * v if v is not None else np.nan) for e, v in r["per_class"].items()})
        rows.append(row)
    cols = ["run", "run_id", "config_id", "tag", "dataset", "fold", "split", "frames", "depths", "variant", "pos_embed",
            "seed", "preset", "epochs", "war", "uar", *EMOTIONS, "gflops", "params", "wall_s", "build",
            "build_name", "majority", "test_every", "best_war", "best_uar"]
    df = pd.DataFrame(rows, columns=cols)
    if df["config_id"].isna().any():
        missing = df.loc[df["config_id"].isna(), "run"].tolist()
        raise ValueError(f"{runs_dir}: {len(missing)} result.json without a config_id (written before runs had an "
                         f"identity), e.g. {missing[0]}; re-run those rows with python -m msstlib.study")
    return df


def load_study(runs_dir: str | Path) -> pd.DataFrame:
    """:func:`load_results` for a notebook that needs runs: a relative ``runs_dir`` is found from
    the working directory or else from the repository (:func:`msstlib.paths.resolve`), and finding
    no run at all is an error that says where it looked and what to run, never an empty table."""
    path = Path(paths.resolve(runs_dir))
    df = load_results(path) if path.is_dir() else pd.DataFrame()
    if len(df) == 0:
        raise FileNotFoundError(f"no result.json under {path}: run the study first (`make reproduce`, or "
                                f"`python -m msstlib.study --dataset synthetic`), or pass the folder that holds its runs "
                                f"(papermill ... -p runs_dir PATH)")
    return df


def families(df: pd.DataFrame) -> list[tuple[str, int]]:
    """The (preset, epochs) pairs present, the one with most runs first."""
    counts = df.groupby(["preset", "epochs"]).size().sort_values(ascending=False)
    return [(p, int(e)) for p, e in counts.index]


def _summary(df: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Mean and std over folds of the table rows (seed 0, no tag: other seeds and tagged rows are
    reported separately), one cell per configuration (:data:`CELL`)."""
    base = df[(df["seed"] == 0) & (df["tag"] == "")]
    keys = keys + [c for c in CELL if c not in keys]
    g = base.groupby(keys, sort=False)
    out = g[cols].mean()
    out["n_folds"] = g.size()
    for c in ("war", "uar"):
        if c in cols:
            out[f"{c}_std"] = g[c].std()
    return out.reset_index()


def _label(row) -> str:
    if row["variant"] in BASELINE_LABELS:
        return BASELINE_LABELS[row["variant"]]
    d = row["depths"].split("-")
    if all(x == "0" for x in d):
        return "MELayers only, no T-Former"
    return ", ".join(f"T-Former{i + 1}: {x}" for i, x in enumerate(d) if x != "0")


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Component subsets at T=4 and frames x depth, ours beside the paper's Table 1 WAR."""
    ours = _summary(df, ["frames", "depths", "variant"], ["war", "uar", "gflops"]).rename(columns={"gflops": "ours_gflops"})
    ours["components"] = ours.apply(_label, axis=1)
    paper = pd.read_csv(PAPER / "table1.csv")
    uniform = paper.dropna(subset=["tformer1"]).copy()
    uniform["depths"] = uniform[["tformer1", "tformer2", "tformer3"]].astype(int).astype(str).agg("-".join, axis=1)
    uniform["variant"] = "msstnet"
    none = paper[paper["note"] == "no T-Former"].assign(depths="0-0-0", variant="resnet18-mean")
    paper_rows = pd.concat([uniform, none])[["frames", "depths", "variant", "war_ferv39k", "war_dfew"]]
    t = ours.merge(paper_rows, on=["frames", "depths", "variant"], how="left")
    t = t.rename(columns={"war": "ours_war", "uar": "ours_uar", "war_std": "ours_war_std", "uar_std": "ours_uar_std",
                          "war_ferv39k": "paper_war_ferv39k", "war_dfew": "paper_war_dfew"})
    order = ["preset", "epochs", "frames", "components", "depths", "ours_war", "ours_war_std", "ours_uar",
             "ours_uar_std", "n_folds", "paper_war_dfew", "paper_war_ferv39k", "ours_gflops", "config_id"]
    t = t.sort_values(["preset", "epochs", "frames", "variant", "depths"],
                      ascending=[True, True, True, False, True]).reset_index(drop=True)
    return t[order]


def table1_paper_ablations() -> pd.DataFrame:
    """The paper's four T=4 ablation rows, whose T-Former positions the text lost."""
    paper = pd.read_csv(PAPER / "table1.csv")
    return paper[paper["tformer1"].isna()][["frames", "note", "war_dfew", "war_ferv39k"]]


def table3(df: pd.DataFrame, depths: str = "2-2-2") -> pd.DataFrame:
    """Depth-2 MSSTNet per T: ours (WAR, UAR, per class, GFLOPs) beside Table 3 (DFEW) and Table 2 (FERV39k)."""
    sel = df[(df["depths"] == depths) & (df["variant"] == "msstnet")]
    ours = _summary(sel, ["preset", "epochs", "frames"], ["war", "uar", *EMOTIONS, "gflops"])
    ours = ours.rename(columns={c: f"ours_{c}" for c in ["war", "uar", "war_std", "uar_std", *EMOTIONS, "gflops"]})
    p3 = pd.read_csv(PAPER / "table3_dfew.csv")
    p3 = p3[p3["method"] == "MSSTNet"].astype({"frames": int})
    p3 = p3.rename(columns={c: f"paper_dfew_{c.lower()}" for c in ["war", "uar", *EMOTIONS, "gflops"]}).drop(columns="method")
    p2 = pd.read_csv(PAPER / "table2_ferv39k.csv")
    p2 = p2[p2["method"] == "MSSTNet"].astype({"frames": int})
    p2 = p2.rename(columns={"war": "paper_ferv39k_war", "uar": "paper_ferv39k_uar"}).drop(columns="method")
    return ours.merge(p3, on="frames", how="left").merge(p2, on="frames", how="left")


def baselines(df: pd.DataFrame, frames: int = 4) -> pd.DataFrame:
    """A Table 3 analogue under our protocol: the same-backbone baselines (mean, LSTM, GRU, TCN),
    MSSTNet (depth 1 and 2) and MSSTNet with joint space-time attention, at ``frames``, seed 0,
    all trained on the same frozen backbone with the same recipe (the ResNet-18 baselines read its pooled layer-4 feature, MSSTNet its layer-1-3 maps); mean and std over folds. Baselines
    rerun at another learning rate (tag ``lr-...``, same budget) are rows of their own."""
    keep = (df["frames"] == frames) & (df["seed"] == 0) & (
        (df["variant"].isin(list(BASELINE_LABELS)) & ((df["tag"] == "") | df["tag"].str.startswith("lr-")))
        | ((df["variant"] == "msstnet") & df["depths"].isin(["1-1-1", "2-2-2"]) & df["tag"].isin(["", "joint-attention"])))
    sel = df[keep]
    keys = ["preset", "epochs", "frames", "variant", "depths", "tag", "config_id"]
    g = sel.groupby(keys, sort=False)
    out = g[["war", "uar", *EMOTIONS, "gflops"]].mean()
    out["war_std"], out["uar_std"], out["n_folds"] = g["war"].std(), g["uar"].std(), g.size()
    out = out.reset_index()
    out.insert(0, "model", [BASELINE_LABELS[v] + (f", {t.replace('-', ' ', 1)}" if t else "") if v in BASELINE_LABELS
                            else f"MSSTNet, depths {d}" + (", joint space-time attention" if t == "joint-attention" else "")
                            for v, d, t in zip(out["variant"], out["depths"], out["tag"])])
    order = ["model", "preset", "epochs", "frames", "war", "war_std", "uar", "uar_std", "n_folds", *EMOTIONS, "gflops",
             "config_id"]
    return out.sort_values(["preset", "epochs", "war"]).reset_index(drop=True)[order]


def seed_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Rows run with several seeds: mean, std and range of WAR/UAR over seeds."""
    keys = ["preset", "epochs", "frames", "depths", "variant", "fold", "config_id"]
    g = df[df["tag"].isin(REPLICATE_TAGS)].groupby(keys, dropna=False)
    out = g.agg(seeds=("seed", "nunique"), war_mean=("war", "mean"), war_std=("war", "std"),
                war_min=("war", "min"), war_max=("war", "max"), uar_mean=("uar", "mean"), uar_std=("uar", "std"))
    return out[out["seeds"] > 1].reset_index()


def load_diverged(runs_dir: str | Path) -> pd.DataFrame:
    """Rows that stopped on a NaN loss (``diverged.json``): where, and the last good epoch."""
    rows = []
    for path in sorted(Path(runs_dir).rglob("diverged.json")):
        if (path.parent / "result.json").exists():
            continue  # the run finished later: the divergence record is stale
        d = read_json(path, "a run's divergence record", fix="remove its run folder and run the row again")
        last = d["log"][-1] if d["log"] else {}
        rows.append({"run": path.parent.name, "tag": d["tag"], "preset": d["preset"],
                     "frames": d["frames"], "depths": "-".join(map(str, d["depths"])), "variant": d["variant"],
                     "fold": d["fold"], "outcome": d["message"].split(";")[0], "epochs_done": last.get("epoch", 0)})
    return pd.DataFrame(rows, columns=["run", "tag", "preset", "frames", "depths", "variant", "fold", "outcome",
                                       "epochs_done"])


def tagged_rows(df: pd.DataFrame, diverged: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows beyond Table 1 (no temporal position embedding, the paper's SGD, ...) beside the table
    row they modify (same frames, depths, variant, fold; seed 0). Diverged rows say so."""
    tagged = df[~df["tag"].isin(REPLICATE_TAGS)].assign(outcome="trained")
    keys = ["preset", "frames", "depths", "variant", "fold"]
    parts = [tagged]
    if diverged is not None and len(diverged):
        parts.append(diverged.assign(war=np.nan, uar=np.nan, wall_s=np.nan))
    tagged = pd.concat(parts)
    ref = df[(df["tag"] == "") & (df["seed"] == 0)].merge(tagged[keys].drop_duplicates(), on=keys)
    out = pd.concat([ref.assign(tag="(table row)", outcome="trained"), tagged])
    cols = ["run", "tag", *keys, "outcome", "war", "uar", "wall_s"]
    return out[cols].sort_values(keys + ["tag"]).reset_index(drop=True)


def one_family(df: pd.DataFrame, family: tuple[str, int] | None) -> tuple[pd.DataFrame, str]:
    """The runs of one (preset, epochs) family (default: the one with most runs) and its label."""
    preset, epochs = family or families(df)[0]
    return df[(df["preset"] == preset) & (df["epochs"] == epochs)], f"{preset} preset, {epochs} epochs"


def heatmap(df: pd.DataFrame, ax=None, value: str = "war", family: tuple[str, int] | None = None):
    """``value`` over frames (rows) x depth (columns) for uniform-depth MSSTNet rows of one family."""
    df, label = one_family(df, family)
    sel = df[(df["variant"] == "msstnet") & df["depths"].isin(["1-1-1", "2-2-2", "3-3-3"])]
    summary = _summary(sel, ["frames", "depths"], [value])
    if summary.duplicated(["frames", "depths"]).any():
        raise ValueError(f"several configurations of the {label} family share a cell; filter the runs first")
    piv = summary.pivot(index="frames", columns="depths", values=value)
    ax = ax or plt.gca()
    sns.heatmap(piv, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": f"{value.upper()} (%)"})
    ax.set(xlabel="blocks per T-Former", ylabel="frames T", title=f"{value.upper()} over frames x depth ({label})")
    return ax


def per_class_bars(df: pd.DataFrame, depths: str = "2-2-2", ax=None, family: tuple[str, int] | None = None):
    df, label = one_family(df, family)
    sel = df[(df["variant"] == "msstnet") & (df["depths"] == depths)]
    s = _summary(sel, ["frames"], list(EMOTIONS)).melt(id_vars=["frames", "config_id"], value_vars=list(EMOTIONS),
                                                      var_name="class", value_name="accuracy")
    ax = ax or plt.gca()
    ax.set(ylabel="accuracy (%)", xlabel="", title=f"per-class accuracy, depths {depths} ({label})")
    if len(s) == 0:  # an empty panel would look like a plotting failure
        ax.text(0.5, 0.5, f"no MSSTNet depths {depths} run in this study", ha="center", va="center",
                transform=ax.transAxes)
        return ax
    sns.barplot(data=s, x="class", y="accuracy", hue="frames", ax=ax)
    return ax


def plot_curves(log: pd.DataFrame, axes=None):
    """Training loss and accuracy (train accuracy, test WAR/UAR, in %) per epoch from a ``log.csv``;
    test metrics only at the epochs that evaluated them (``TrainConfig.test_every``). A one-epoch
    run has no curve: its figures are written in the panels instead of drawn as single dots."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    percent = log.assign(**{c: 100 * log[c] for c in ("train_acc", "test_war", "test_uar") if c in log})
    if len(log) == 1:
        r = percent.iloc[0]
        axes[0].text(0.5, 0.5, f"one epoch\ntraining loss {r['loss']:.3f}", ha="center", va="center", fontsize=12)
        axes[1].text(0.5, 0.5, f"one epoch\ntrain accuracy {r['train_acc']:.1f} %\n"
                     f"test WAR {r['test_war']:.1f} %   UAR {r['test_uar']:.1f} %", ha="center", va="center",
                     fontsize=12)
        for ax, title in zip(axes, ("training loss", "accuracy (%)")):
            ax.set(title=title, xticks=[], yticks=[])
        return axes
    percent.plot(x="epoch", y="loss", ax=axes[0], marker="o", title="training loss")
    percent.plot(x="epoch", y="train_acc", ax=axes[1], marker="o", title="accuracy (%)")
    tested = percent.dropna(subset=["test_war"])
    tested.plot(x="epoch", y=["test_war", "test_uar"], ax=axes[1], marker="o")
    axes[1].set_ylim(0, 100)
    return axes


def plot_confusion(result: dict, ax=None, normalize: bool = True):
    cm = np.asarray(result["confusion"], dtype=float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax = ax or plt.gca()
    sns.heatmap(cm, annot=True, fmt=".2f" if normalize else ".0f", xticklabels=EMOTIONS, yticklabels=EMOTIONS,
                cmap="Blues", ax=ax, vmin=0, vmax=1 if normalize else None)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix" + (" (row-normalised)" if normalize else ""))
    return ax


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The view a reader gets (notebook and Markdown): columns with no value at all (a std over a
    single fold) are left out, except a claim's interval, whose absence is the point ("no interval
    from one unit")."""
    keep = {"ci_low", "ci_high", "mde"}
    return table.drop(columns=[c for c in table.columns if table[c].isna().all() and c not in keep])


IDS = ("config_id", "run_id")  # hashes: in the files, not on the page
FAMILY = ("preset", "epochs")  # shown on the page only where they tell rows apart


def _paper_beside_ours(columns: list[str]) -> list[str]:
    """Each ``ours_<metric>`` column followed by the paper's columns of that metric (``paper_war_dfew``,
    ``paper_dfew_war``, ...), the paper's others last."""
    paper = [c for c in columns if c.startswith("paper_")]
    out, placed = [], set()
    for c in columns:
        if c.startswith("paper_"):
            continue
        out.append(c)
        if c.startswith("ours_"):
            metric = c[len("ours_"):].lower()
            mine = [p for p in paper if p not in placed and metric in p.lower().split("_")[1:]]
            out += mine
            placed.update(mine)
    return out + [p for p in paper if p not in placed]


def _three_decimals(column: str) -> bool:
    """p values and ratios: two decimals would print 2/256 = 0.0078 as 0.01 and a ratio whose target
    is 0.935-0.955 as 0.95."""
    return column.startswith(("p_", "ratio")) or column.endswith("_p")


FINE_METRICS = {"gradcam_energy"}  # shares in [0, 1]: their differences live in the third decimal


def page(table: pd.DataFrame, shares: tuple[str, ...] = (), precision: int = 1):
    """A table as a notebook shows it, shaped for the page (the CSV and Markdown files keep every
    column at their precision): no all-empty columns (:func:`readable`), no run hashes, preset and
    epochs only where they differ between rows, each ``ours_*`` mean with its ``± std`` in one cell, the
    paper's columns beside ours, one decimal, and a dash where there is no value (never NaN).
    ``shares``: columns holding shares in [0, 1], shown in percent like every metric."""
    t = readable(table).copy()
    t = t.drop(columns=[c for c in IDS if c in t] + [c for c in FAMILY if c in t and t[c].nunique(dropna=False) <= 1])
    for c in [c for c in shares if c in t]:
        t[c] = 100 * t[c]
    for std in [c for c in t.columns if c.endswith("_std") and c[:-len("_std")] in t]:
        mean = std[:-len("_std")]
        t[mean] = [("–" if pd.isna(m) else f"{m:.{precision}f}") + ("" if pd.isna(v) else f" ± {v:.{precision}f}")
                   for m, v in zip(t[mean], t[std])]
        t = t.drop(columns=std)
    t = t[_paper_beside_ours(list(t.columns))]
    numbers = [c for c in t.columns if pd.api.types.is_float_dtype(t[c])]
    shown = {c: f"{{:.{precision}f}}" for c in numbers}
    shown |= {c: "{:.2f}" for c in numbers if "gflops" in c.lower()}  # a model's cost: two decimals
    shown |= {c: "{:.3f}" for c in numbers if _three_decimals(c)}  # p, ratios
    styler = t.style.format(shown, na_rep="–")
    if "metric" in t and t["metric"].isin(FINE_METRICS).any():  # a share's rows: three decimals (markdown())
        styler = styler.format("{:.3f}", na_rep="–", subset=(t.index[t["metric"].isin(FINE_METRICS)], numbers))
    return styler.hide(axis="index")


def markdown(table: pd.DataFrame) -> str:
    """A table as its ``.md`` file shows it: numbers at two decimals, except p values and ratios
    (:func:`_three_decimals`) and, in a table with a ``metric`` column, every number of a row whose
    metric is a share (:data:`FINE_METRICS`: a Grad-CAM energy difference of +0.037 is not 0.04),
    at three. Numbers right-aligned, a missing value ``nan`` (as tabulate writes it)."""
    fine = table["metric"].isin(FINE_METRICS).to_numpy() if "metric" in table else np.zeros(len(table), bool)
    shown = table.copy()
    numeric = [c for c in table.columns
               if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    for c in numeric:
        if pd.api.types.is_float_dtype(table[c]):
            shown[c] = ["nan" if pd.isna(v) else f"{v:.{3 if (_three_decimals(c) or f) else 2}f}"
                        for v, f in zip(table[c], fine)]
        else:
            shown[c] = table[c].astype(str)
    return shown.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if c in numeric else "left" for c in table.columns])


# Tables that are data other tables are recomputed from (claims.csv from claims_units.csv): written
# at full precision, since 4 significant digits, amplified by a t interval on few degrees of
# freedom (t = 12.7 at df 1), move a recomputed interval by several hundredths of a point.
FULL_PRECISION = {"claims_units"}


def write_table(table: pd.DataFrame, out_dir: str | Path, name: str, note: str) -> None:
    """``name``.csv and ``name``.md (with ``note`` above the table) under ``out_dir``; a table
    without rows says so instead of showing a bare caption."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False, float_format="%.12g" if name in FULL_PRECISION else "%.4g")
    body = (markdown(readable(table)) if len(table) else
            "_No rows: this study's grid has none of the runs this table needs (the quick run's grid is a subset "
            "of the full one)._")
    (out / f"{name}.md").write_text(f"{note}\n\n{body}\n")