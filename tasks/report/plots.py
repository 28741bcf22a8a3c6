"""The report's figures, each drawn with matplotlib and returned as PNG bytes.

Figures are built with `matplotlib.figure.Figure` rather than pyplot: no global state, no GUI backend, safe in
Prefect's worker threads. PNGs carry no software version or date, so the same numbers give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

WIDTH = 7.0
"""Figure width in inches (100 dpi): the report's column."""


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def fold_scores(metrics: dict[str, Any]) -> bytes:
    """Each fold's score as a point, the mean ± std as a line and band, and the naive forecast's if any."""
    scores = np.asarray(metrics["folds"], dtype=float)
    mean, std = float(metrics["mean"]), float(metrics["std"])
    figure = Figure(figsize=(WIDTH, 2.8))
    ax = figure.subplots()
    positions = np.arange(len(scores))
    ax.axhspan(mean - std, mean + std, color="tab:red", alpha=0.12, label=f"± std {std:.4g}")
    ax.axhline(mean, color="tab:red", label=f"mean {mean:.4g}")
    ax.plot(positions, scores, "o", color="tab:blue", label="fold")
    baseline = metrics.get("baseline")
    if baseline:
        ax.plot(positions, baseline["folds"], "k_", markersize=16, mew=2, label=f"naive {baseline['forecast']}")
    ax.set_xticks(positions)
    ax.set_xlim(-0.5, len(scores) - 0.5)
    ax.set_xlabel("fold")
    ax.set_ylabel(metrics["metric"])
    ax.legend(fontsize="small", ncols=2)
    ax.set_title(f"{metrics['metric']} of each fold's held-out rows", fontsize="small")
    return to_png(figure)


def learning_curves(history: pd.DataFrame, metric: str) -> bytes:
    """Loss and metric per epoch, training dashed and validation solid, one colour per fold."""
    figure = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    axes = figure.subplots(1, 2)
    colours = _fold_colours(history["fold"].unique())
    for ax, name in zip(axes, ("loss", metric)):
        for fold, rows in history.groupby("fold", sort=True):
            if name in rows:
                ax.plot(rows["epoch"], rows[name], ls="--", lw=1, color=colours[fold])
            if f"val_{name}" in rows:
                ax.plot(rows["epoch"], rows[f"val_{name}"], lw=1.3, color=colours[fold], label=f"fold {fold}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} (dashed: training, solid: validation)", fontsize="small")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(handles) <= 10:
        axes[1].legend(handles, labels, fontsize="x-small", ncols=2)
    return to_png(figure)


def _fold_colours(folds: Sequence[int]) -> dict[int, Any]:
    """Up to 10 folds in tab10's distinct colours, more along a colour map."""
    folds = sorted(folds)
    cmap = colormaps["tab10"] if len(folds) <= 10 else colormaps["viridis"].resampled(len(folds))
    return {fold: cmap(i) for i, fold in enumerate(folds)}


def confusion_matrix(predictions: pd.DataFrame, classes: Sequence[str]) -> bytes:
    """Held-out rows of all folds counted by true class (rows) and predicted class (columns)."""
    index = {label: i for i, label in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (predictions["true"].map(index).to_numpy(), predictions["predicted"].map(index).to_numpy()), 1)
    size = min(WIDTH, 1.6 + 0.5 * len(classes))
    figure = Figure(figsize=(size + 1.0, size))
    ax = figure.subplots()
    image = ax.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    slanted = len(classes) > 4
    ax.set_xticks(ticks, labels=classes, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = counts.max() / 2
    for i in ticks:
        for j in ticks:
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize="small",
                    color="white" if counts[i, j] > threshold else "black")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"held-out rows of every fold: {counts.sum()}, {accuracy:.1%} on the diagonal", fontsize="small")
    return to_png(figure)


def residuals(predictions: pd.DataFrame) -> bytes:
    """Held-out predictions of all folds: residual against prediction, and prediction against truth."""
    true = predictions["true"].to_numpy(dtype=float)
    predicted = predictions["predicted"].to_numpy(dtype=float)
    residual = predicted - true
    figure = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    left, right = figure.subplots(1, 2)
    folds = predictions["fold"].to_numpy()
    colours = _fold_colours(np.unique(folds))
    for fold, colour in colours.items():
        mask = folds == fold
        left.scatter(predicted[mask], residual[mask], s=8, alpha=0.7, color=colour, label=f"fold {fold}")
        right.scatter(true[mask], predicted[mask], s=8, alpha=0.7, color=colour)
    left.axhline(0, color="black", lw=0.8)
    left.set_xlabel("predicted")
    left.set_ylabel("predicted − true")
    left.set_title(f"residuals (RMSE {np.sqrt(np.mean(residual ** 2)):.4g})", fontsize="small")
    low, high = min(true.min(), predicted.min()), max(true.max(), predicted.max())
    right.plot([low, high], [low, high], color="black", lw=0.8)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    right.set_title("predicted against true", fontsize="small")
    if len(colours) <= 10:
        left.legend(fontsize="x-small", ncols=2)
    return to_png(figure)


def sweep_scores(trials: pd.DataFrame, params: Sequence[str], metric: str) -> bytes:
    """Each trial's score against each searched parameter that took more than one value."""
    varied = [p for p in params if trials[f"param:{p}"].nunique() > 1] or list(params)[:1]
    figure = Figure(figsize=(WIDTH, 2.6 * ((len(varied) + 1) // 2)), layout="constrained")
    axes = np.atleast_1d(figure.subplots((len(varied) + 1) // 2, 2 if len(varied) > 1 else 1)).ravel()
    finished = trials[pd.to_numeric(trials["score"], errors="coerce").notna()]
    score = finished["score"].astype(float)
    for ax, param in zip(axes, varied):
        values = finished[f"param:{param}"]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and values.nunique() > 3:
            ax.scatter(numeric, score, s=14, alpha=0.8)
            if numeric.min() > 0 and numeric.max() / numeric.min() > 100:
                ax.set_xscale("log")
        else:
            # Categories (or a few numbers): one column each, the trials spread a little so none hide.
            categories = sorted(values.astype(str).unique(), key=_category_order)
            position = values.astype(str).map({c: i for i, c in enumerate(categories)}).to_numpy(dtype=float)
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(position))
            ax.scatter(position + jitter, score, s=14, alpha=0.8)
            ax.set_xticks(range(len(categories)), labels=categories)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
    for ax in axes[len(varied):]:
        ax.set_visible(False)
    figure.suptitle(f"{len(finished)} trials: score against each searched parameter", fontsize="small")
    return to_png(figure)


def _category_order(value: str) -> tuple:
    """Numbers in numeric order, then words alphabetically."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
