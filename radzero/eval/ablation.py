"""A hyper-parameter sweep's ablation results: ``ablation.csv``, ``ablation.md`` and
``ablation.png``, in the form of the paper's ablation table.

The input is one record per trial of the sweep (a plain dict, so nothing here needs Ray)::

    {"trial": "3f2a1_00001", "status": "finished" | "stopped" | "errored",
     "row": "(a)" or None,  # the paper's row when the sweep ran its ablation preset
     "params": {"similarity": "cos", "align_layers": 2, "multi_positive": True, ...},
     "epochs": 3, "val_auc": 0.81,  # best validation AUC (None when errored)
     "test": {"auc": 0.83, "pointing": 0.52, "pointing_chance": 0.07, "dice": 0.21} or None,
     "error": ""}  # the message when errored
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from radzero import storage
from radzero.eval.figures import png_bytes

PAPER_PRESET = "paper-ablation"

# The seed's ablation table ("Ablation Studies"): each row's setting in the sweep's parameter
# names, and every published column (named as in radzero.eval.results.COLUMNS).
PAPER_SETTINGS = ("similarity", "align_layers", "multi_positive", "resolution")
PAPER_COLUMNS = (
    "OI",
    "PC",
    "PC20",
    "CXR14",
    "CXP",
    "CXD10",
    "CXD10 pointing",
    "MS-CXR pointing",
    "SIIM Dice",
)


def _paper_row(method: str, setting: tuple, scores: tuple[float, ...]) -> dict[str, Any]:
    """One published row: its name, its setting (:data:`PAPER_SETTINGS`), its scores."""
    return {
        "method": method,
        **dict(zip(PAPER_SETTINGS, setting, strict=True)),
        **dict(zip(PAPER_COLUMNS, scores, strict=True)),
    }


# Row label (a sweep record's "row") -> the published row.
PUBLISHED: dict[str, dict[str, Any]] = {
    "(a)": _paper_row(
        "(a)",
        ("dot", 0, False, 224),
        (0.839, 0.824, 0.853, 0.805, 0.896, 0.792, 0.472, 0.784, 0.078),
    ),
    "(b)": _paper_row(
        "(b)",
        ("cos", 0, False, 224),
        (0.843, 0.830, 0.863, 0.805, 0.902, 0.786, 0.483, 0.790, 0.078),
    ),
    "(c)": _paper_row(
        "(c)",
        ("cos", 2, False, 224),
        (0.845, 0.832, 0.860, 0.808, 0.895, 0.793, 0.539, 0.838, 0.099),
    ),
    "(d)": _paper_row(
        "(d) RadZero (224px)",
        ("cos", 2, True, 224),
        (0.851, 0.841, 0.879, 0.807, 0.903, 0.785, 0.537, 0.832, 0.121),
    ),
    "RadZero": _paper_row(
        "RadZero",
        ("cos", 2, True, 518),
        (0.847, 0.841, 0.871, 0.804, 0.900, 0.787, 0.622, 0.844, 0.171),
    ),
}

# A trial's metrics: key (the CSV column), the paper's group, the label under it.
METRICS = (
    ("val_auc", "Classification", "val AUC"),
    ("test_auc", "Classification", "test AUC"),
    ("pointing", "Grounding", "pointing game"),
    ("dice", "Segmentation", "Dice"),
)
FIGURE_METRICS = ("test_auc", "pointing", "dice")
_LABELS = {key: label for key, _, label in METRICS}
_MISSING = object()  # a parameter a record does not set


@dataclass(frozen=True)
class Dimension:
    """How a swept parameter is shown: its column name, how a value reads (in a table and,
    when shorter, on a figure's axis), and the order of its values (``rank``; None where the
    value has no place in that order)."""

    title: str
    shown: Callable[[Any], str]
    rank: Callable[[Any], float | None]
    tick: Callable[[Any], str] | None = None


def _plain(value: Any) -> str:
    if value is _MISSING or value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number_rank(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _layers(value: Any) -> str:
    if _number_rank(value) is None:
        return _plain(value)
    return "Linear" if value == 0 else f"{value} Transformer"


DIMENSIONS: dict[str, Dimension] = {
    "similarity": Dimension(
        "Similarity",
        lambda v: "dot-product" if v == "dot" else _plain(v),
        lambda v: {"dot": 0.0, "cos": 1.0}.get(v) if isinstance(v, str) else None,
    ),
    "align_layers": Dimension(
        "Trainable layers",
        _layers,
        _number_rank,
        lambda v: _layers(v).removesuffix(" Transformer"),
    ),
    "multi_positive": Dimension("MP", _plain, lambda v: float(v) if isinstance(v, bool) else None),
    "resolution": Dimension("Res.", _plain, _number_rank),
}


def dimension(name: str) -> Dimension:
    """How parameter ``name`` is shown; a parameter the paper does not vary shows as itself."""
    return DIMENSIONS.get(name, Dimension(name, _plain, _number_rank))


def _any_pair(lower: float, upper: float) -> bool:
    return True


@dataclass(frozen=True)
class Claim:
    """One of the paper's ablation findings: raising ``parameter`` (in its dimension's order)
    does not lower ``metric``, for the pairs of ranks (lower, upper) that ``compares``."""

    text: str
    parameter: str
    metric: str
    compares: Callable[[float, float], bool] = _any_pair


CLAIMS = (
    Claim("cos >= dot-product on test AUC", "similarity", "test_auc"),
    Claim(
        "2 or more Transformer layers >= Linear on the pointing game",
        "align_layers",
        "pointing",
        lambda lower, upper: lower == 0 and upper >= 2,
    ),
    Claim("multi-positive >= single positive on test AUC", "multi_positive", "test_auc"),
    Claim("multi-positive >= single positive on Dice", "multi_positive", "dice"),
    Claim("higher resolution >= lower on the pointing game", "resolution", "pointing"),
)


def varied_dimensions(records: Sequence[Mapping]) -> list[str]:
    """The parameters whose values differ among ``records`` (one set by some records and not
    by others differs too), in the first record's key order, then in order of appearance."""
    names: list[str] = []
    for record in records:
        names += [name for name in record["params"] if name not in names]
    first = records[0]["params"] if records else {}
    return [
        name
        for name in names
        if any(r["params"].get(name, _MISSING) != first.get(name, _MISSING) for r in records)
    ]


def metric(record: Mapping, key: str) -> float | None:
    """A record's ``val_auc``, ``test_auc`` or other key of its ``test`` dict; None when
    unknown (also for NaN)."""
    if key == "val_auc":
        value = record.get("val_auc")
    else:
        value = (record.get("test") or {}).get("auc" if key == "test_auc" else key)
    if value is None or math.isnan(value := float(value)):
        return None
    return value


def frame(records: Sequence[Mapping]) -> pd.DataFrame:
    """``ablation.csv``'s table: one row per trial, the varied parameters as columns."""
    fixed = ("trial", "row", "status", "epochs", *(key for key, _, _ in METRICS), "error")
    params = {
        name: name if name not in fixed else f"params.{name}" for name in varied_dimensions(records)
    }
    rows = []
    for record in records:
        row = {"trial": record["trial"], "row": record.get("row"), "status": record["status"]}
        row |= {column: record["params"].get(name) for name, column in params.items()}
        row["epochs"] = record.get("epochs")
        row |= {key: metric(record, key) for key, _, _ in METRICS}
        row["error"] = record.get("error") or ""
        rows.append(row)
    columns = ["trial", "row", "status", *params.values(), "epochs"]
    return pd.DataFrame(rows, columns=[*columns, *(k for k, _, _ in METRICS), "error"])


def orderings(records: Sequence[Mapping]) -> list[dict]:
    """The paper's claims (:data:`CLAIMS`) checked on the pairs of non-errored records that
    differ in exactly the claim's parameter and both have its metric.

    Per claim: ``{"claim", "parameter", "metric", "pairs", "holds", "deltas"}``; a delta is the
    upper value's metric minus the lower's, and the claim holds in a pair when it is >= 0."""
    kept = [r for r in records if r["status"] != "errored"]
    names = {name for r in kept for name in r["params"]}
    found = []
    for claim in CLAIMS:
        rank = dimension(claim.parameter).rank
        others = names - {claim.parameter}
        deltas = []
        for i, first in enumerate(kept):
            for second in kept[i + 1 :]:
                if any(
                    first["params"].get(n, _MISSING) != second["params"].get(n, _MISSING)
                    for n in others
                ):
                    continue
                ranks = [rank(r["params"].get(claim.parameter)) for r in (first, second)]
                if None in ranks or ranks[0] == ranks[1]:
                    continue
                low, high = (first, second) if ranks[0] < ranks[1] else (second, first)
                values = metric(low, claim.metric), metric(high, claim.metric)
                if claim.compares(*sorted(ranks)) and None not in values:
                    deltas.append(values[1] - values[0])
        found.append(
            {
                "claim": claim.text,
                "parameter": claim.parameter,
                "metric": claim.metric,
                "pairs": len(deltas),
                "holds": sum(delta >= 0 for delta in deltas),
                "deltas": deltas,
            }
        )
    return found


def _number(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _grouped_header(leading: Sequence[str], groups: Sequence[tuple[str, str]]) -> list[str]:
    """The seed's two-level header: the groups over their columns, then the column labels."""
    top = list(leading)
    for i, (group, _) in enumerate(groups):
        top.append(group if i == 0 or groups[i - 1][0] != group else "")
    return [
        _row(top),
        _row(["---"] * len(top)),
        _row([""] * len(leading) + [f"*{label}*" for _, label in groups]),
    ]


def _marker(record: Mapping) -> str:
    return {"stopped": " †", "errored": " ‡"}.get(record["status"], "")


def sweep_table(records: Sequence[Mapping]) -> str:
    """The sweep's trials as the paper's ablation table, the best value per metric in bold;
    stopped-early trials marked †, errored ones ‡."""
    varied = varied_dimensions(records)
    values = {key: [metric(r, key) for r in records] for key, _, _ in METRICS}
    best = {}
    for key, column in values.items():
        known = [
            round(v, 3)
            for v, r in zip(column, records, strict=True)
            if v is not None and r["status"] != "errored"
        ]
        best[key] = max(known) if known else None
    lines = _grouped_header(
        ["Trial", *(dimension(n).title for n in varied), "Epochs"],
        [(group, label) for _, group, label in METRICS],
    )
    for i, record in enumerate(records):
        name = f"`{record['trial']}`" + (f" {record['row']}" if record.get("row") else "")
        cells = [
            name + _marker(record),
            *(dimension(n).shown(record["params"].get(n, _MISSING)) for n in varied),
        ]
        cells.append(_plain(record.get("epochs")))
        for key, _, _ in METRICS:
            value = values[key][i]
            shown = _number(value)
            bold = value is not None and record["status"] != "errored"
            bold = bold and best[key] == round(value, 3)
            cells.append(f"**{shown}**" if bold else shown)
        lines.append(_row(cells))
    return "\n".join(lines)


def paper_table(records: Sequence[Mapping]) -> str:
    """The seed's published ablation rows, each followed by this sweep's trials of that row."""
    ours = {key: label for key, _, label in METRICS if key != "val_auc"}
    groups = [("Classification (paper)", c) for c in PAPER_COLUMNS[:6]]
    groups += [("Grounding (paper)", c.removesuffix(" pointing")) for c in PAPER_COLUMNS[6:8]]
    groups += [("Segmentation (paper)", "SIIM Dice")]
    groups += [("This sweep", label) for label in ours.values()]
    lines = _grouped_header(["Method", *(dimension(n).title for n in PAPER_SETTINGS)], groups)
    labelled = [r for r in records if r.get("row")]
    order = [*PUBLISHED, *dict.fromkeys(r["row"] for r in labelled if r["row"] not in PUBLISHED)]
    for label in order:
        if label in PUBLISHED:
            paper = PUBLISHED[label]
            settings = [dimension(n).shown(paper[n]) for n in PAPER_SETTINGS]
            scores = [_number(paper[c]) for c in PAPER_COLUMNS]
            lines.append(_row([f"paper: {paper['method']}", *settings, *scores, *["–"] * 3]))
        for record in (r for r in labelled if r["row"] == label):
            params = record["params"]
            settings = [dimension(n).shown(params.get(n, _MISSING)) for n in PAPER_SETTINGS]
            scores = [_number(metric(record, key)) for key in ours]
            name = f"sweep: {label} `{record['trial']}`{_marker(record)}"
            lines.append(_row([name, *settings, *["–"] * len(PAPER_COLUMNS), *scores]))
    return "\n".join(lines)


def markdown(records: Sequence[Mapping], preset: str | None = None) -> str:
    """``ablation.md``: the sweep's table, the paper's rows beside it for its preset, the
    paper's claims checked on the sweep, and the trials that errored."""
    varied = varied_dimensions(records)
    counts = {s: sum(r["status"] == s for r in records) for s in ("finished", "stopped", "errored")}
    shown = ", ".join(f"`{n}`" for n in varied) or "none"
    lines = [
        "# Ablation sweep",
        "",
        f"{len(records)} trials ({counts['finished']} finished, {counts['stopped']} stopped early, "
        f"{counts['errored']} errored)"
        + (f", preset `{preset}`" if preset else "")
        + f"; varied parameters: {shown}.",
        "",
        sweep_table(records),
        "",
        "Best value per metric in bold. † stopped early by the scheduler; ‡ errored (below).",
    ]
    chances = sorted(
        {round(c, 3) for r in records if (c := metric(r, "pointing_chance")) is not None}
    )
    if chances:
        level = _number(chances[0]) if len(chances) == 1 else f"{chances[0]:.3f}–{chances[-1]:.3f}"
        lines.append(f"A random peak wins the pointing game with probability {level}.")
    if preset == PAPER_PRESET:
        lines += [
            "",
            "## Beside the paper's ablation",
            "",
            "The paper's benchmarks are not this sweep's, so each side keeps its own columns.",
            "",
            paper_table(records),
        ]
    lines += ["", "## The paper's claims on this sweep", ""]
    for found in orderings(records):
        if found["pairs"]:
            mean = float(np.mean(found["deltas"]))
            lines.append(
                f"- {found['claim']}: holds in {found['holds']} of {found['pairs']} pairs, "
                f"mean delta {mean:+.3f}"
            )
        else:
            title = dimension(found["parameter"]).title
            lines.append(f"- {found['claim']}: no pair differs only in {title}")
    errored = [r for r in records if r["status"] == "errored"]
    if errored:
        lines += ["", f"## Errored trials ({len(errored)})", ""]
        for record in errored:
            message = [line.strip() for line in (record.get("error") or "").splitlines()]
            last = next((line for line in reversed(message) if line), "(no message)")
            lines.append(f"- `{record['trial']}`: {last}")
    lines += ["", "![Which parameter moved which metric](ablation.png)"]
    return "\n".join(lines) + "\n"


def figure(records: Sequence[Mapping]) -> Figure:
    """A grid: one column per varied parameter, one row per metric (:data:`FIGURE_METRICS`);
    each panel every non-errored trial's value by that parameter's value (hollow: stopped
    early), the mean per value as a bar, the means joined, and the last mean minus the first.
    A value that no non-errored trial measured says so in its place."""
    kept = [r for r in records if r["status"] != "errored"]
    columns = varied_dimensions(records) or [None]
    rows = [key for key in FIGURE_METRICS if any(metric(r, key) is not None for r in kept)]
    rows = rows or list(FIGURE_METRICS)
    fig = Figure(figsize=(max(2.7 * len(columns) + 0.6, 5.0), 2.1 * len(rows) + 0.7))
    axes = fig.subplots(len(rows), len(columns), squeeze=False, sharey="row")
    for c, name in enumerate(columns):
        shown = dimension(name) if name else Dimension("all trials", lambda _: "", _number_rank)
        values = _ordered([r["params"].get(name, _MISSING) for r in records], shown)
        for r, key in enumerate(rows):
            groups = [[t for t in records if t["params"].get(name, _MISSING) == v] for v in values]
            _panel(axes[r, c], groups, key)
            labels = [(shown.tick or shown.shown)(v) for v in values]
            long = sum(map(len, labels)) > 24  # more than a panel's width holds
            axes[r, c].set_xticks(
                range(len(values)),
                labels,
                fontsize=8,
                rotation=30 if long else 0,
                ha="right" if long else "center",
            )
            if r == 0:
                axes[r, c].set_title(shown.title if name else "all trials", fontsize=10)
            if c == 0:
                axes[r, c].set_ylabel(_LABELS[key], fontsize=9)
    left_out = len(records) - len(kept)
    fig.suptitle(
        f"What each parameter moved: {len(kept)} trial{'s' * (len(kept) != 1)}"
        + (f" ({left_out} errored left out)" if left_out else "")
        + "\nbar: mean per value, Δ: last mean − first, hollow: stopped early",
        fontsize=9,
    )
    return fig


def _panel(ax: Any, groups: Sequence[Sequence[Mapping]], key: str) -> None:
    """One panel: the trials of each group (a parameter value) at its x position."""
    means = []
    for x, group in enumerate(groups):
        points = [
            (value, t["status"] == "stopped")
            for t in group
            if t["status"] != "errored" and (value := metric(t, key)) is not None
        ]
        if not points:
            errored = all(t["status"] == "errored" for t in group)
            note = "all errored" if errored else "no value"
            ax.text(
                x,
                0.5,
                note,
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=8,
                color="darkred" if errored else "grey",
            )
            continue
        offsets = np.linspace(-0.12, 0.12, len(points)) if len(points) > 1 else [0.0]
        for dx, (value, stopped) in zip(offsets, points, strict=True):
            ax.plot(
                [x + dx],
                [value],
                marker="o",
                markersize=6,
                linestyle="",
                alpha=0.85,
                color="tab:blue",
                markerfacecolor="white" if stopped else "tab:blue",
            )
        mean = float(np.mean([value for value, _ in points]))
        ax.plot([x - 0.3, x + 0.3], [mean, mean], color="black", linewidth=2.5)
        means.append((x, mean))
    if len(means) > 1:
        ax.plot(*zip(*means, strict=True), color="grey", linestyle="--", linewidth=1)
        delta = means[-1][1] - means[0][1]
        ax.text(
            0.03,
            0.95,
            f"Δ mean {delta:+.3f}",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color="darkgreen" if delta >= 0 else "darkred",
        )
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.margins(y=0.25)  # room for the delta above the highest point
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)


def _ordered(values: Sequence[Any], shown: Dimension) -> list[Any]:
    """The distinct values in their dimension's order (the unranked after, as first seen)."""
    distinct = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    ranked = sorted((v for v in distinct if shown.rank(v) is not None), key=shown.rank)
    return ranked + [v for v in distinct if shown.rank(v) is None]


def write(out: str, records: Sequence[Mapping], preset: str | None = None) -> dict[str, str]:
    """Write ``ablation.csv``, ``ablation.md`` and ``ablation.png`` under ``out`` (a local
    folder or s3:// URI); returns their URIs by kind (``csv``, ``md``, ``png``)."""
    if not records:
        raise ValueError("no trial records to write")
    paths = {kind: storage.join(out, f"ablation.{kind}") for kind in ("csv", "md", "png")}
    storage.write_text(paths["csv"], frame(records).to_csv(index=False))
    storage.write_text(paths["md"], markdown(records, preset))
    storage.write_bytes(paths["png"], png_bytes(figure(records)))
    return paths
