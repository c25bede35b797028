"""Results in the paper's form: benchmark x metric, an evaluated model beside the paper's.

The published numbers are a data file (``data/paper_results.csv``, with its source in its
header). A column is one (benchmark, metric) of the paper's tables; :data:`COLUMNS` says where
each is found in an evaluation's ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from importlib import resources

from radzero import storage

# The paper's column -> (benchmark, path into that benchmark's metrics.json).
COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "OI": ("openi", ("auc", "macro")),
    "PC": ("padchest", ("auc", "macro")),
    "PC20": ("padchest", ("groups", "tail10", "macro")),
    "CXR14": ("chestxray14", ("auc", "macro")),
    "CXP": ("chexpert", ("auc", "macro")),
    "CXD10": ("chestxdet10", ("auc", "macro")),
    "SIIM": ("siim", ("auc", "macro")),
    "RSNA": ("rsna", ("auc", "macro")),
    "CXD10 pointing": ("chestxdet10", ("pointing", "mean_over_classes")),
    "MS-CXR pointing": ("mscxr", ("pointing", "accuracy")),
    "RSNA Dice": ("rsna", ("segmentation", "dice")),
    "SIIM Dice": ("siim", ("segmentation", "dice")),
    "SIIM pixel AUC": ("siim", ("segmentation", "pixel_auc")),
}


def paper() -> dict[str, dict[str, float]]:
    """The published numbers: model -> column -> value."""
    text = resources.files("radzero.eval").joinpath("data/paper_results.csv").read_text()
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["column"] not in COLUMNS:
            raise ValueError(f"paper_results.csv: unknown column {row['column']!r}")
        table.setdefault(row["model"], {})[row["column"]] = float(row["value"])
    return table


def load_evaluations(folder: str) -> list[dict]:
    """Every ``<benchmark>/metrics.json`` under an evaluation output (the ``--out`` of
    ``jobs/evaluate.py``; local or s3://)."""
    found = storage.list_files(folder, suffix="/metrics.json")
    if not found:
        raise FileNotFoundError(f"{folder} holds no NAME/metrics.json of jobs/evaluate.py")
    return [json.loads(storage.read_text(path)) for path in found]


def load_runs(specs: Sequence[str]) -> dict[str, list[dict]]:
    """``["NAME=EVAL_OUT", ...]`` -> run name -> its evaluations (:func:`load_evaluations`)."""
    runs = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"{spec!r}: expected NAME=EVAL_OUT")
        runs[name] = load_evaluations(folder)
    return runs


def columns_of(evaluations: Sequence[Mapping]) -> dict[str, float]:
    """The paper's columns that a set of evaluations (one ``metrics.json`` each) fills."""
    values = {}
    for column, (benchmark, path) in COLUMNS.items():
        for metrics in evaluations:
            if metrics.get("benchmark") != benchmark:
                continue
            value = metrics
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, (int, float)):
                values[column] = float(value)
    return values


def table(runs: Mapping[str, Sequence[Mapping]], with_paper: bool = True) -> str:
    """A Markdown table: one row per run (name -> its evaluations), beside the paper's rows,
    over the columns that any run fills."""
    rows = {name: columns_of(evaluations) for name, evaluations in runs.items()}
    shown = [c for c in COLUMNS if any(c in values for values in rows.values())]
    if not shown:
        return "(no evaluation fills a column of the paper's tables)"
    if with_paper:
        rows |= {f"{model} (paper)": values for model, values in paper().items()}
    lines = ["| model | " + " | ".join(shown) + " |", "| --- |" + " --- |" * len(shown)]
    for name, values in rows.items():
        cells = [f"{values[c]:.3f}" if c in values else "-" for c in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(metrics: Mapping) -> str:
    """One evaluation beside the paper's numbers on the same columns."""
    return table({"this run": [metrics]})
