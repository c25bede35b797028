"""An evaluation's outputs: ``metrics.json``, figures and a Markdown report beside them.

Figures: ROC curves per class, a grid of similarity-map overlays (image, phrase, map,
ground-truth box or mask outline), the pointing game's hits and misses and, when the metrics
carry a training run, its curves. The overlays are recomputed for a few examples on the
caller's machine, so the scoring pass keeps no maps.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from radzero import storage
from radzero.data.images import read_image, resize, to_pixels
from radzero.eval import figures, results
from radzero.eval.metrics import pointing_hit
from radzero.eval.scoring import Truth, TruthBuilder
from radzero.model.radzero import RadZero


def write(
    out: str,
    metrics: dict,
    records: pd.DataFrame,
    truths: Sequence[dict],
    model: RadZero,
    builder: TruthBuilder,
    examples: int = 6,
) -> None:
    """Write ``metrics.json``, ``figures/*.png`` and ``report.md`` under ``out`` (URI).

    ``records`` are the scored manifest rows and ``truths`` their ground truth (the rows that
    :meth:`TruthBuilder.build` reads), in the same order."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder)
        names = _figures(local / "figures", metrics, records, truths, model, builder, examples)
        (local / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (local / "report.md").write_text(markdown(metrics, names))
        for path in sorted(local.rglob("*")):
            if path.is_file():
                target = storage.join(out, str(path.relative_to(local)))
                storage.write_bytes(target, path.read_bytes())


def headline(metrics: dict) -> str:
    """One line of the main numbers."""
    parts = []
    if "auc" in metrics:
        parts.append(f"AUC {metrics['auc']['macro']:.3f}")
    if "pointing" in metrics:  # MS-CXR's number is the accuracy, the others' the class mean
        key = "accuracy" if metrics.get("benchmark") == "mscxr" else "mean_over_classes"
        parts.append(f"pointing {metrics['pointing'][key]:.3f}")
    if "segmentation" in metrics:
        parts.append(f"Dice {_number(metrics['segmentation']['dice'])}")
    return ", ".join(parts) or "no metric"


def markdown(metrics: dict, figure_names: list[str]) -> str:
    """The report's text: the metrics as tables, the paper's numbers, the figures."""
    lines = [
        f"# Zero-shot evaluation: {metrics['benchmark']}",
        "",
        f"Model `{metrics['model']}`, split `{metrics['split']}`, {metrics['images']} images, "
        f"prompts {', '.join(repr(t) for t in metrics['templates'])}.",
        "",
        f"**{headline(metrics)}**",
    ]
    if results.columns_of([metrics]):  # the paper reports this benchmark
        lines += ["", results.comparison(metrics)]
    if "auc" in metrics:
        auc = metrics["auc"]
        lines += [
            "",
            "## Classification (ROC-AUC)",
            "",
            "| class | AUC | positives |",
            "| --- | --- | --- |",
        ]
        for name, value in auc["per_class"].items():
            lines.append(f"| {name} | {value:.3f} | {auc['positives'].get(name, '')} |")
        if auc["skipped"]:
            lines += ["", f"Skipped (no positives or no negatives): {', '.join(auc['skipped'])}."]
    if "groups" in metrics:
        lines += ["", "| group | classes | macro AUC |", "| --- | --- | --- |"]
        for group, entry in metrics["groups"].items():
            value = entry.get("macro")
            shown = "n/a" if value is None else f"{value:.3f}"
            lines.append(f"| {group} | {len(entry.get('classes', []))} | {shown} |")
    if "pointing" in metrics:
        pointing = metrics["pointing"]
        lines += [
            "",
            "## Grounding (pointing game)",
            "",
            f"Mean over classes {pointing['mean_over_classes']:.3f}; accuracy over "
            f"{pointing['samples']} samples {pointing['accuracy']:.3f} (a random peak hits "
            f"{pointing['chance']:.3f}).",
            "",
            "| class | hit rate |",
            "| --- | --- |",
        ]
        lines += [f"| {name} | {value:.3f} |" for name, value in pointing["per_class"].items()]
    if "segmentation" in metrics:
        seg = metrics["segmentation"]
        lines += [
            "",
            "## Segmentation",
            "",
            f"Dice at thresholds chosen on {seg['threshold_from']} ({seg['threshold_images']} "
            f"images); the paper's test-set sweep (optimistic) beside it. Pixel AUC "
            f"{_number(seg['pixel_auc'])}.",
            "",
            "| finding | positive images | threshold | Dice | test-set sweep: threshold, Dice |",
            "| --- | --- | --- | --- | --- |",
        ]
        for finding, entry in seg["per_class"].items():
            sweep = entry["test_sweep"]
            lines.append(
                f"| {finding} | {entry['images']} | {entry['threshold']} | {entry['dice']:.3f} "
                f"| {sweep['threshold']}, {sweep['dice']:.3f} |"
            )
        if seg["skipped"]:
            lines += [
                "",
                f"No positive image to choose a threshold on: {', '.join(seg['skipped'])}.",
            ]
    if "training" in metrics:
        best = metrics["training"]["best"]
        lines += [
            "",
            "## Training",
            "",
            f"Weights of epoch {best['epoch']} of {len(metrics['training']['history'])} "
            f"(best validation AUC {best['val_auc']:.3f}).",
        ]
    if metrics["failed"]:
        lines += ["", f"## Images that could not be scored ({len(metrics['failed'])})", ""]
        lines += [f"- `{item['image']}`: {item['error']}" for item in metrics["failed"]]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}](figures/{name})" for name in figure_names]
    return "\n".join(lines) + "\n"


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _figures(
    folder: Path,
    metrics: dict,
    records: pd.DataFrame,
    truths: Sequence[dict],
    model: RadZero,
    builder: TruthBuilder,
    examples: int,
) -> list[str]:
    names = []
    if "auc" in metrics and metrics["auc"]["per_class"]:
        classes = metrics["classes"]
        scores = np.stack(records["probabilities"].to_list())
        figures.roc_figure(
            records[classes].to_numpy(dtype=float), scores, classes, folder / "roc.png"
        )
        names.append("roc.png")
    located = [
        (image, truth)
        for image, truth in zip(records["image"], truths, strict=True)
        if truth["boxes"] or truth["rle"] or truth["masks"]
    ]
    if located and examples > 0:
        chosen = _examples(located, examples)
        images, panels = _overlays(chosen, model, builder)
        figures.overlay_figure(images, panels, folder / "overlays.png")
        names.append("overlays.png")
        if any(panel.hit is not None for row in panels for panel in row):
            hits = [[p for p in row if p.hit is not None] for row in panels]
            kept = [(image, row) for image, row in zip(images, hits, strict=True) if row]
            figures.overlay_figure(
                [image for image, _ in kept], [row for _, row in kept], folder / "pointing.png"
            )
            names.append("pointing.png")
    if "training" in metrics:
        figures.history_figure(metrics["training"]["history"], folder / "training.png")
        names.append("training.png")
    return names


def _examples(rows: list, count: int) -> list:
    """Up to ``count`` rows spread evenly over the list (stable for a given manifest)."""
    if len(rows) <= count:
        return rows
    picks = np.linspace(0, len(rows) - 1, count).round().astype(int)
    return [rows[i] for i in picks]


@torch.no_grad()
def _overlays(
    rows: list, model: RadZero, builder: TruthBuilder
) -> tuple[list[np.ndarray], list[list[figures.Panel]]]:
    """Each example's image on the model grid and one panel per query with its truth.

    ``rows``: (image URI, truth dict as in :meth:`TruthBuilder.build`) pairs."""
    size = model.preprocess.image_size
    images, panels = [], []
    for image, row in rows:
        gray = read_image(storage.read_bytes(image), name=image)
        truth: Truth = builder.build(row, gray.shape)
        pixels = to_pixels(gray, model.preprocess)[None]
        # One panel per query: its boxes (pointing game) and its mask (segmentation), if any.
        shown: dict[str, tuple[list, np.ndarray | None]] = {
            query: (boxes, None) for (_, query), boxes in truth.targets().items()
        }
        for finding, mask in truth.masks.items():
            query = builder.queries[finding]
            shown[query] = (shown.get(query, ([], None))[0], mask)
        queries = [(query, boxes, mask) for query, (boxes, mask) in shown.items()]
        maps = model.similarity_maps([q for q, _, _ in queries], images=pixels)[0].numpy()
        images.append(resize(gray, size).numpy())
        row_panels = []
        for (query, boxes, mask), heatmap in zip(queries, maps, strict=True):
            hit = pointing_hit(heatmap, boxes) if boxes else None
            row_panels.append(figures.Panel(query, heatmap, boxes, mask=mask, hit=hit))
        panels.append(row_panels or [figures.Panel("(no query)", np.zeros((size, size)))])
    return images, panels
