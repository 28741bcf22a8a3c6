"""The report's figures, each drawn by matplotlib (the confusion matrix by scikit-learn's display on a matplotlib
axes) and returned as a `Figure`; :func:`to_png` encodes one for the HTML page.

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
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from kerasflow.tasks.outputs.metrics import PARAM_PREFIX
from kerasflow.tasks.training.statistics import score_range

WIDTH = 7.0
"""Figure width in inches (100 dpi): the report's column."""
FOLD_COLOURS = colormaps["tab10"]
"""Fold i's colour wherever folds are drawn one by one."""
def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, at 100 dpi, cropped to what is drawn."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def augmented_grid(images: np.ndarray) -> Figure:
    """One row per image: the training image as the data file has it, then its augmented versions
    (`images`: (rows, 1 + versions, height, width, channels) in [0, 1])."""
    rows, columns = images.shape[:2]
    figure = Figure(figsize=(min(WIDTH, 1.2 * columns), 1.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        for c in range(columns):
            image = images[r, c]
            axes[r, c].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_axis_off()
        axes[r, 0].set_title("as read" if r == 0 else "", fontsize="small")
    if columns > 1:
        axes[0, 1].set_title("augmented", fontsize="small")
    return figure


def fold_scores(metrics: dict[str, Any]) -> Figure:
    """Each fold's score as a point, the mean ± std as a line and band, and the naive forecast's if any."""
    scores = np.asarray(metrics["folds"], dtype=float)
    mean, std = float(metrics["mean"]), float(metrics["std"])
    figure = Figure(figsize=(WIDTH, 2.8))
    ax = figure.subplots()
    positions = np.arange(len(scores))
    ax.axhspan(mean - std, mean + std, color="tab:red", alpha=0.12, label=f"± std {std:.4g}")
    ax.axhline(mean, color="tab:red", label=f"mean {mean:.4g}")
    # Each fold keeps its colour in every experiment's plot: experiments on the same folds pair point by point.
    ax.scatter(positions, scores, c=[FOLD_COLOURS(i % FOLD_COLOURS.N) for i in positions], zorder=3, label="fold")
    baseline = metrics.get("baseline")
    if baseline:
        ax.plot(positions, baseline["folds"], "k_", markersize=16, mew=2, label="naive last value")
    ax.set_xticks(positions)
    ax.set_xlim(-0.5, len(scores) - 0.5)
    ax.set_xlabel("fold")
    ax.set_ylabel(metrics["metric"])
    ax.legend(fontsize="small", ncols=2)
    ax.set_title(f"{metrics['metric']} of each fold's held-out rows", fontsize="small")
    return figure


def learning_curves(history: pd.DataFrame, metric: str) -> Figure:
    """Loss and metric per epoch, training dashed and validation solid: the mean over folds with a ± std band,
    and each fold as a faint line in its fold colour, so that many folds stay readable and experiments on the same
    folds pair line by line; and the learning rate per epoch where it changed as it trained (a history with a
    ``learning_rate`` column)."""
    scheduled = "learning_rate" in history
    figure = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    axes = figure.subplots(1, 3 if scheduled else 2)
    n_folds = history["fold"].nunique()
    if scheduled:
        rates = history.pivot(index="epoch", columns="fold", values="learning_rate")
        axes[2].plot(rates.index, rates.to_numpy(), color="tab:green", lw=1.2, alpha=min(1.0, 3 / max(n_folds, 1)))
        axes[2].set_yscale("log")
        axes[2].set_xlabel("epoch")
        axes[2].set_title("learning rate at each epoch's start" + (", each fold" if n_folds > 1 else ""),
                          fontsize="small")
    # Faint enough that 30 folds blur into a cloud behind the mean, yet one fold of 3 stays visible.
    fold_alpha = min(0.35, 3 / max(n_folds, 1))
    for ax, name in zip(axes[:2], ("loss", metric)):
        low, high = score_range(name)  # a band clipped to the values the score can take
        for column, label, colour, style in ((name, "training", "tab:blue", "--"),
                                             (f"val_{name}", "validation", "tab:orange", "-")):
            if column not in history:
                continue
            # One column per fold; a fold that stopped early leaves NaN, which the mean and std skip.
            folds = history.pivot(index="epoch", columns="fold", values=column)
            mean, std = folds.mean(axis=1), folds.std(axis=1, ddof=0)
            if n_folds > 1:  # each fold in its own colour (FOLD_COLOURS), as in every per-fold plot
                for fold in folds.columns:
                    ax.plot(folds.index, folds[fold].to_numpy(), color=FOLD_COLOURS(int(fold) % FOLD_COLOURS.N),
                            ls=style, lw=0.6, alpha=fold_alpha)
                ax.fill_between(folds.index, (mean - std).clip(low, high), (mean + std).clip(low, high),
                                color=colour, alpha=0.2, lw=0)
            ax.plot(folds.index, mean, color=colour, ls=style, lw=1.8,
                    label=f"{label}, mean ± std" if n_folds > 1 else label)
        ax.set_xlabel("epoch")
        ax.set_title(name if n_folds == 1 else f"{name}: mean of {n_folds} folds ± std, each fold faint",
                     fontsize="small")
        ax.legend(fontsize="x-small")
    return figure


def confusion_matrix(predictions: pd.DataFrame, classes: Sequence[str], title: str | None = None) -> Figure:
    """Held-out rows of all folds counted by true class (rows) and predicted class (columns), drawn by
    scikit-learn's `ConfusionMatrixDisplay`; `title` (a label's name) heads the figure."""
    size = min(WIDTH, 1.6 + 0.5 * len(classes))
    figure = Figure(figsize=(size + 1.0, size))
    if title is not None:
        figure.suptitle(title, fontsize="medium")
    ax = figure.subplots()
    display = ConfusionMatrixDisplay.from_predictions(
        predictions["true"], predictions["predicted"], labels=list(classes), ax=ax, cmap="Blues", values_format="d",
        xticks_rotation=45 if len(classes) > 4 else "horizontal", text_kw={"fontsize": "small"})
    counts = display.confusion_matrix
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"held-out rows of every fold: {counts.sum()}, {accuracy:.1%} on the diagonal", fontsize="small")
    return figure


def residuals(predictions: pd.DataFrame, title: str | None = None) -> Figure:
    """Held-out predictions of all folds, coloured by fold: residual against prediction, and prediction against
    truth; `title` (a target column's name) heads the figure."""
    true = predictions["true"].to_numpy(dtype=float)
    predicted = predictions["predicted"].to_numpy(dtype=float)
    residual = predicted - true
    folds = predictions["fold"].to_numpy()
    n_folds = len(np.unique(folds))
    # Up to 10 folds in their fold colours, named in a legend; more along a colour map, with a colour bar.
    cmap = ListedColormap(FOLD_COLOURS.colors[:n_folds]) if n_folds <= FOLD_COLOURS.N else colormaps["viridis"]
    figure = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    if title is not None:
        figure.suptitle(title, fontsize="medium")
    left, right = figure.subplots(1, 2)
    points = left.scatter(predicted, residual, c=folds, cmap=cmap, s=8, alpha=0.7)
    right.scatter(true, predicted, c=folds, cmap=cmap, s=8, alpha=0.7)
    left.axhline(0, color="black", lw=0.8)
    left.set_xlabel("predicted")
    left.set_ylabel("predicted − true")
    left.set_title(f"residuals (RMSE {np.sqrt(np.mean(residual ** 2)):.4g})", fontsize="small")
    right.axline((float(true.min()), float(true.min())), slope=1, color="black", lw=0.8)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    right.set_title("predicted against true", fontsize="small")
    if n_folds <= 10:
        handles, _ = points.legend_elements(num=None)
        left.legend(handles, [f"fold {fold}" for fold in np.unique(folds)], fontsize="x-small", ncols=2)
    else:
        figure.colorbar(points, ax=right, label="fold")
    return figure


def sweep_scores(trials: pd.DataFrame, params: Sequence[str], metric: str) -> Figure:
    """Each trial's score against each searched parameter that took more than one value."""
    varied = [p for p in params if trials[f"{PARAM_PREFIX}{p}"].nunique() > 1] or list(params)[:1]
    figure = Figure(figsize=(WIDTH, 2.6 * ((len(varied) + 1) // 2)), layout="constrained")
    axes = np.atleast_1d(figure.subplots((len(varied) + 1) // 2, 2 if len(varied) > 1 else 1)).ravel()
    finished = trials[pd.to_numeric(trials["score"], errors="coerce").notna()]
    score = finished["score"].astype(float)
    for ax, param in zip(axes, varied):
        values = finished[f"{PARAM_PREFIX}{param}"]
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
    return figure


def _category_order(value: str) -> tuple:
    """Numbers in numeric order, then words alphabetically."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
