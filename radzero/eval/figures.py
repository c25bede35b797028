"""Figures a person can look at: ROC curves, similarity-map overlays, training curves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_curve


@dataclass
class Panel:
    """One overlay: a phrase's map on an image, with the ground-truth boxes or mask outline
    when known, and whether the map's peak hit the box (pointing game)."""

    phrase: str
    heatmap: np.ndarray
    boxes: Sequence[Sequence[float]] = ()
    probability: float | None = None
    mask: np.ndarray | None = None
    hit: bool | None = None


def roc_figure(
    labels: np.ndarray, scores: np.ndarray, names: Sequence[str], path: str | Path
) -> Path:
    """ROC curve per class on one plot, AUC in the legend; NaN (unknown) labels are left out
    of their class, as in :func:`radzero.eval.metrics.auc_per_class`."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    labels = np.asarray(labels, dtype=np.float64)
    for j, name in enumerate(names):
        known = ~np.isnan(labels[:, j])
        column = labels[known, j]
        if not column.size or column.min() == column.max():
            continue
        fpr, tpr, _ = roc_curve(column, scores[known, j])
        auc = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Zero-shot ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def overlay_figure(
    images: Sequence[np.ndarray], panels: Sequence[Sequence[Panel]], path: str | Path
) -> Path:
    """A grid: each row an image, then one overlay per phrase with boxes and the map's peak."""
    columns = 1 + max(len(row) for row in panels)
    fig = Figure(figsize=(2.3 * columns, 2.4 * len(images)))
    axes = fig.subplots(len(images), columns, squeeze=False)
    for r, (image, row) in enumerate(zip(images, panels, strict=True)):
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].set_title("image", fontsize=8)
        for c, panel in enumerate(row, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray")
            ax.imshow(panel.heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            for x1, y1, x2, y2 in panel.boxes:
                ax.add_patch(
                    Rectangle(
                        (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", linewidth=1.2
                    )
                )
            if panel.mask is not None and panel.mask.any():
                ax.contour(panel.mask.astype(float), levels=[0.5], colors="lime", linewidths=1.2)
            y, x = np.unravel_index(int(np.argmax(panel.heatmap)), panel.heatmap.shape)
            ax.plot([x], [y], marker="x", color="white", markersize=7, markeredgewidth=2)
            title = panel.phrase
            if panel.probability is not None:
                title += f"\np={panel.probability:.2f}"
            if panel.hit is not None:
                title += "\nhit" if panel.hit else "\nmiss"
            color = {None: "black", True: "green", False: "red"}[panel.hit]
            ax.set_title(title, fontsize=7, color=color)
        for ax in axes[r]:
            ax.axis("off")
    return _save(fig, path)


def history_figure(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Training loss and temperature per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set(xlabel="epoch", ylabel="MP-NCE loss", title="training loss")
    right.plot(epochs, [h["temperature"] for h in history], marker="o", color="tab:orange")
    right.set(xlabel="epoch", ylabel="tau", title="temperature")
    return _save(fig, path)


def png_bytes(fig: Figure) -> bytes:
    """``fig`` laid out and rendered as PNG bytes. A :class:`Figure` made without pyplot
    renders with the Agg canvas and is not registered with pyplot, so nothing here touches
    the caller's backend."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG file (:func:`png_bytes`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig))
    return path
