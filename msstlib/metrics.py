"""WAR, UAR, per-class accuracy and the confusion matrix (DESIGN.md §3).

WAR (weighted average recall) is plain accuracy over all test clips; UAR (unweighted average
recall) is the mean of the per-class recalls. A class with no test clip has no recall: it is
reported in ``absent`` with ``None`` as its accuracy and left out of UAR, never counted as 0 or a
silent NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import EMOTIONS


@dataclass(frozen=True)
class Metrics:
    war: float  # fraction in [0, 1]
    uar: float  # mean recall over the classes present in the test set
    per_class: dict[str, float | None]  # emotion -> recall, None when the class has no test clip
    confusion: np.ndarray  # (C, C) counts, rows = true class, columns = predicted class
    support: dict[str, int]  # emotion -> number of test clips
    absent: tuple[str, ...]  # classes with no test clip

    def to_dict(self) -> dict:
        return {
            "war": self.war,
            "uar": self.uar,
            "per_class": dict(self.per_class),
            "confusion": self.confusion.tolist(),
            "support": dict(self.support),
            "absent": list(self.absent),
        }


def confusion_matrix(y_true, y_pred, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate(y_true, y_pred, class_names: tuple[str, ...] = EMOTIONS) -> Metrics:
    """All metrics from integer labels and predictions (0-based, canonical order)."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    total = int(cm.sum())
    if total == 0:
        raise ValueError("no test clips: WAR and UAR are undefined")
    support = cm.sum(axis=1)
    per_class = {
        name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)
    }
    present = [v for v in per_class.values() if v is not None]
    return Metrics(
        war=float(np.trace(cm) / total),
        uar=float(np.mean(present)),
        per_class=per_class,
        confusion=cm,
        support={name: int(s) for name, s in zip(class_names, support)},
        absent=tuple(name for name, v in per_class.items() if v is None),
    )


def uar_from_per_class(per_class: dict[str, float | None]) -> float:
    """UAR as the mean of the given per-class accuracies, skipping absent (None) classes."""
    present = [v for v in per_class.values() if v is not None]
    if not present:
        raise ValueError("no class has an accuracy")
    return float(np.mean(present))
