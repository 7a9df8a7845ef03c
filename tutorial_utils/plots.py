"""Figures for the notebooks: image grids, training curves, confusion matrices, histograms.

Each function draws one small figure and returns it; in a notebook, `fig = plots.image_grid(...)`
shows it once. Figures are drawn at a modest dpi so that executed notebooks stay small.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from tutorial_utils import data, measure

DPI = 72


def image_grid(x: torch.Tensor, y: torch.Tensor, *, class_names: list[str] | None = None,
               predicted: torch.Tensor | None = None, columns: int = 10, rows: int = 2) -> Figure:
    """Show the first rows*columns flat images of x (normalised, (n, 784)) with their labels.

    With `predicted`, titles read "label→prediction" and mistakes are drawn in red.
    """
    n = min(len(x), rows * columns)
    if n == 0:
        raise ValueError("x holds no images to show")
    names = class_names or [str(i) for i in range(10)]
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.1), dpi=DPI, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow((x[i].reshape(28, 28) * data.STD + data.MEAN).cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        title, color = names[int(y[i])], "black"
        if predicted is not None:
            title += f"→{names[int(predicted[i])]}"
            color = "black" if int(predicted[i]) == int(y[i]) else "red"
        ax.set_title(title[:12], fontsize=8, color=color)
    fig.tight_layout()
    return fig


def training_curves(history: list[dict[str, float]], *, title: str = "", test_label: str = "test") -> Figure:
    """Loss and accuracy per epoch, from the history that training.fit returns; `test_label` names the split
    scored as "test" (the held-out images when fit was given `splits.holdout()`)."""
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8), dpi=DPI)
    left.plot(epochs, [row["loss"] for row in history], marker=".")
    left.set(xlabel="epoch", ylabel="training loss", title=title or "loss")
    right.plot(epochs, [row["train_accuracy"] for row in history], marker=".", label="train")
    right.plot(epochs, [row["test_accuracy"] for row in history], marker=".", label=test_label)
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: torch.Tensor, *, class_names: list[str] | None = None) -> Figure:
    """Heat map of a (classes, classes) count matrix (rows: true class, columns: prediction)."""
    k = matrix.shape[0]
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=DPI)
    image = ax.imshow(matrix.cpu().numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            value = int(matrix[i, j])
            if value:
                ax.text(j, i, value, ha="center", va="center", fontsize=7,
                        color="white" if value > matrix.max() / 2 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(names, fontsize=7, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticklabels(names, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def weight_histogram(weights: dict[str, torch.Tensor], *, bins: int = 80, log: bool = True) -> Figure:
    """Histograms of weight values, one panel per named tensor (zeros included, so pruning shows)."""
    fig, axes = plt.subplots(1, len(weights), figsize=(3.2 * len(weights), 2.5), dpi=DPI, squeeze=False)
    for ax, (name, w) in zip(axes.flat, weights.items()):
        ax.hist(w.detach().flatten().cpu().numpy(), bins=bins, log=log)
        ax.set(title=name, xlabel="weight value")
    fig.tight_layout()
    return fig


def curves(x: list[float], series: dict[str, list[float] | list[list[float]]], *, xlabel: str, ylabel: str,
           title: str = "", logx: bool = False) -> Figure:
    """One line per series over x. A series of lists (one list per x, e.g. over seeds) is drawn as
    its mean with a band from its min to its max."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=DPI)
    for label, ys in series.items():
        if ys and isinstance(ys[0], (list, tuple)):
            values = torch.tensor(ys, dtype=torch.float64)
            ax.plot(x, values.mean(dim=1).numpy(), marker=".", label=label)
            ax.fill_between(x, values.min(dim=1).values.numpy(), values.max(dim=1).values.numpy(), alpha=0.25)
        else:
            ax.plot(x, ys, marker=".", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def soft_targets(x: torch.Tensor, probabilities: dict[str, torch.Tensor], *,
                 class_names: list[str] | None = None) -> Figure:
    """One row per image: the image, then a bar chart of class probabilities per setting (e.g. per T)."""
    n = len(x)
    names = class_names or [str(i) for i in range(10)]
    fig, axes = plt.subplots(n, 1 + len(probabilities), figsize=(2.2 * (1 + len(probabilities)), 1.5 * n),
                             dpi=DPI, squeeze=False)
    for row in range(n):
        axes[row, 0].imshow((x[row].reshape(28, 28) * data.STD + data.MEAN).cpu().numpy(), cmap="gray_r")
        axes[row, 0].axis("off")
        for col, (label, p) in enumerate(probabilities.items(), start=1):
            ax = axes[row, col]
            ax.bar(range(len(names)), p[row].cpu().numpy())
            ax.set_ylim(0, 1)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            if row == 0:
                ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def pareto(rows: list[dict], *, reference_bytes: int, x: str = "bytes", title: str = "",
           marks: dict[str, float] | None = None) -> Figure:
    """Accuracy against compression (reference_bytes / bytes, log scale) or latency for ledger-like rows;
    the Pareto front (no other point both smaller and more accurate) is drawn as a line; `marks` adds
    labelled vertical lines at given x positions."""
    if x not in ("bytes", "latency_ms"):
        raise ValueError(f"x={x!r} must be 'bytes' or 'latency_ms'")
    def point(r: dict) -> tuple[float, float, str]:
        return (reference_bytes / r["bytes"] if x == "bytes" else r["latency_ms"], r["accuracy"], r["stage"])

    values = [point(r) for r in rows]
    front = sorted(point(r) for r in measure.pareto_front(rows, x=x))  # by increasing compression or latency
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=DPI)
    ax.scatter([v[0] for v in values], [v[1] for v in values], s=18, alpha=0.7)
    ax.plot([v[0] for v in front], [v[1] for v in front], color="C1", label="Pareto front")
    for v in front:
        ax.annotate(v[2], (v[0], v[1]), fontsize=6, xytext=(3, -8), textcoords="offset points")
    for label, position in (marks or {}).items():  # reference lines, e.g. a published compression ratio
        ax.axvline(position, color="gray", linestyle="--", linewidth=1)
        ax.annotate(label, (position, ax.get_ylim()[0]), fontsize=6, rotation=90, xytext=(3, 3),
                    textcoords="offset points", color="gray")
    ax.set_xscale("log")
    ax.set(xlabel="compression vs the reference float32 file (x)" if x == "bytes" else "latency (ms)",
           ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reliability_diagram(reliabilities: dict[str, list[dict]], *, title: str = "") -> Figure:
    """Accuracy against mean confidence per bin (calibration.reliability rows), one line per model, with
    the diagonal of perfect calibration; marker area grows with the number of images in the bin."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=DPI)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, rows in reliabilities.items():
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker=".", label=label)
        ax.scatter([r["confidence"] for r in rows], [r["accuracy"] for r in rows], s=[4 + r["n"] / 5 for r in rows],
                   alpha=0.4)
    ax.set(xlabel="confidence (mean in bin)", ylabel="accuracy in bin", title=title, xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
