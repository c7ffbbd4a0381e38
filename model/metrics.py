"""Classification metrics shared by training, the report and the tests (numpy only)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from model.data import LABELS


def confusion(y: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, k: int = len(LABELS)) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(np.asarray(y), np.asarray(pred), strict=True):
        m[int(t), int(p)] += 1
    return m


def macro_f1(cm: np.ndarray) -> tuple[float, list[float]]:
    f1s = []
    for i in range(cm.shape[0]):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1s.append(float(2 * prec * rec / (prec + rec)) if prec + rec else 0.0)
    return float(np.mean(f1s)), f1s


def ece(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            e += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(e)


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    y = np.asarray(y)
    pred = probs.argmax(1)
    cm = confusion(y, pred, probs.shape[1])
    mf1, _ = macro_f1(cm)
    nll = float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12)))
    return {"accuracy": float((pred == y).mean()), "macro_f1": mf1, "ece": ece(y, probs), "nll": nll,
            "n": len(y)}
