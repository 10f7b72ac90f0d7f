"""Figures and tables that describe a prepared dataset (used by ``notebooks/data_overview.ipynb``).

Everything reads the ``annotations.csv`` contract of DESIGN.md §5, so the same calls describe
SynDFER, DFEW and FERV39k.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from data_prep.common import count_table

from .data import decode_frame, sample_indices
from .frames import list_frames
from .labels import EMOTIONS


def group_column(table: pd.DataFrame) -> str:
    """``fold`` for DFEW-layout data, ``split`` for FERV39k."""
    return "fold" if "fold" in table.columns else "split"


def class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Clips per class (rows, canonical order) and per fold/split (columns), with totals: the
    preparation commands' count table, turned to read down the classes."""
    counts = count_table(table, group_column(table)).T.rename(columns={"all": "total"})
    return counts.loc[[e for e in EMOTIONS if counts.loc[e].sum() > 0] + ["total"]]


def plot_class_distribution(table: pd.DataFrame, ax=None):
    by = group_column(table)
    ax = ax or plt.gca()
    sns.countplot(data=table, x="emotion", hue=by, order=[e for e in EMOTIONS if e in set(table["emotion"])], ax=ax)
    ax.set(title=f"clips per class and {by}", xlabel="", ylabel="clips")
    return ax


def plot_frame_counts(table: pd.DataFrame, frames: int = 16, ax=None):
    ax = ax or plt.gca()
    sns.histplot(table["num_frames"], bins=30, ax=ax)
    short = int((table["num_frames"] < frames).sum())
    ax.axvline(frames, color="crimson", ls="--", label=f"T={frames}: {short} shorter clips (kept, frames repeated)")
    ax.set(title="frames per clip", xlabel="frames", ylabel="clips")
    ax.legend()
    return ax


def montage(table: pd.DataFrame, root: str | Path, frames: int = 8, size: int = 64, seed: int = 0):
    """One clip per class (rows) across time (columns, segment centres as the test sampler takes them)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    present = [e for e in EMOTIONS if e in set(table["emotion"])]
    fig, axes = plt.subplots(len(present), frames, figsize=(frames * 1.1, len(present) * 1.2), squeeze=False)
    for r, emotion in enumerate(present):
        row = table[table["emotion"] == emotion].iloc[int(rng.integers((table["emotion"] == emotion).sum()))]
        files = list_frames(root / row["clip"])
        for c, j in enumerate(sample_indices(len(files), frames, train=False)):
            img = decode_frame(files[j], size, row["clip"]).permute(1, 2, 0).numpy()
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(emotion, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(f"frame {j + 1}", fontsize=8)
    fig.suptitle("one clip per class, left to right in time")
    fig.tight_layout()
    return fig
