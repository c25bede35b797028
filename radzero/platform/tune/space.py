"""The sweep's dimensions: what each one changes in a training job, and how a config names the
values to try (one value, a list, or a uniform / log-uniform range).

Ray-free: the sweep's points are plain dicts of dimension -> value, checked here before Ray
starts; :mod:`radzero.platform.tune.sweep` turns them into Tune's search space.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROW = "row"  # a point's label in a preset (the seed's ablation row), not a dimension

# The align variants: how far each token's attention reaches in the trainable layers
# (docs/localisation.md): the whole image (the paper), itself only, or its 3 x 3 neighbours.
ALIGN_VARIANTS: dict[str, int | None] = {"global": None, "token": 0, "window": 1}


@dataclass(frozen=True)
class Dimension:
    """One thing a sweep varies: where it lands in the training job's config dict."""

    path: tuple[str, ...]
    kind: type
    ranged: bool = False  # a range (uniform / log-uniform) is allowed
    doc: str = ""

    def apply(self, job: dict[str, Any], value: Any) -> None:
        """Set ``value`` (checked for type) at this dimension's place in ``job`` (in place)."""
        node = job
        for key in self.path[:-1]:
            node = node.setdefault(key, {})
        node[self.path[-1]] = value


DIMENSIONS: dict[str, Dimension] = {
    "similarity": Dimension(("model_overrides", "similarity"), str, doc="cos | dot"),
    "align_layers": Dimension(
        ("model_overrides", "align", "layers"), int, doc="0 (the paper's Linear) | 1 | 2 | 4"
    ),
    "align_variant": Dimension(
        ("model_overrides", "align", "window"), str, doc=" | ".join(ALIGN_VARIANTS)
    ),
    "resolution": Dimension(
        ("model_overrides", "vision", "image_size"), int, doc="px, a multiple of the patch size"
    ),
    "temperature": Dimension(
        ("model_overrides", "temperature", "init"), float, ranged=True, doc="initial tau"
    ),
    "temperature_learnable": Dimension(("model_overrides", "temperature", "learnable"), bool),
    "multi_positive": Dimension(
        ("optim", "multi_positive"), bool, doc="false: one sentence per image (InfoNCE)"
    ),
    "lr": Dimension(("optim", "lr"), float, ranged=True),
    "weight_decay": Dimension(("optim", "weight_decay"), float, ranged=True),
    "text_trainable": Dimension(("model_overrides", "text", "trainable"), bool),
    "batch_size": Dimension(("optim", "batch_size"), int, doc="the global batch"),
}

# The seed's ablation rows (docs/tuning.md): similarity, trainable layers, multi-positive.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "paper-ablation": [
        {ROW: "(a)", "similarity": "dot", "align_layers": 0, "multi_positive": False},
        {ROW: "(b)", "similarity": "cos", "align_layers": 0, "multi_positive": False},
        {ROW: "(c)", "similarity": "cos", "align_layers": 2, "multi_positive": False},
        {ROW: "(d)", "similarity": "cos", "align_layers": 2, "multi_positive": True},
    ]
}


@dataclass(frozen=True)
class Range:
    """A continuous dimension: uniform or log-uniform between ``low`` and ``high``."""

    low: float
    high: float
    log: bool


def parse_space(space: Mapping[str, Any]) -> dict[str, Any | list | Range]:
    """The ``space`` section checked for form: each dimension one value, a non-empty list, or
    ``{uniform: [low, high]}`` / ``{loguniform: [low, high]}``. Values are checked by type here
    and against the model by :func:`radzero.platform.tune.config.TuneJobConfig.check`."""
    parsed: dict[str, Any | list | Range] = {}
    for name, spec in space.items():
        dimension = _dimension(name)
        where = f"config space.{name}"
        if isinstance(spec, Mapping):
            parsed[name] = _range(spec, dimension, where)
        elif isinstance(spec, list):
            if not spec:
                raise ValueError(f"{where}: an empty list leaves nothing to try")
            parsed[name] = [_typed(v, dimension, f"{where}[{i}]") for i, v in enumerate(spec)]
        else:
            parsed[name] = _typed(spec, dimension, where)
    return parsed


def grid_points(
    space: Mapping[str, Any | list | Range],
    preset: str | None = None,
    rows: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Every combination of the listed values (a preset's rows, or those named in ``rows``,
    crossed with them)."""
    ranged = [name for name, spec in space.items() if isinstance(spec, Range)]
    if ranged:
        raise ValueError(
            f"config space.{ranged[0]}: a range has no grid; list the values, or use mode: search"
        )
    chosen = [{}] if preset is None else preset_rows(preset, space, rows)
    names = list(space)
    choices = [spec if isinstance(spec, list) else [spec] for spec in space.values()]
    points = [
        row | dict(zip(names, combination, strict=True))
        for row in chosen
        for combination in itertools.product(*choices)
    ]
    sizes = space.get("resolution")
    if preset == "paper-ablation" and isinstance(sizes, list) and len(sizes) > 1:
        for point in points:  # the seed's "RadZero" row is (d) at the higher resolution
            if point[ROW] == "(d)" and point["resolution"] == max(sizes):
                point[ROW] = "RadZero"
    return points


def preset_rows(
    preset: str, space: Mapping[str, Any], names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """A preset's rows (those called ``names``, in the preset's order, when given); the space
    may cross them with other dimensions, not override theirs."""
    if preset not in PRESETS:
        raise ValueError(f"config preset {preset!r} is not one of {sorted(PRESETS)}")
    rows = PRESETS[preset]
    if names is not None:
        known = [row[ROW] for row in rows]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(
                f"config rows: {unknown or 'none'} not among preset {preset!r}'s rows {known}"
            )
        rows = [row for row in rows if row[ROW] in names]
    fixed = sorted({key for row in rows for key in row if key != ROW} & set(space))
    if fixed:
        raise ValueError(
            f"config space.{fixed[0]}: preset {preset!r} sets {', '.join(fixed)} in its rows; "
            "leave it out of the space"
        )
    return [dict(row) for row in rows]


def candidate_values(space: Mapping[str, Any | list | Range]) -> dict[str, list[Any]]:
    """Every value a dimension may take that can be checked ahead: list items, range ends."""
    values: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if isinstance(spec, Range):
            values[name] = [spec.low, spec.high]
        else:
            values[name] = spec if isinstance(spec, list) else [spec]
    return values


def apply_point(job: dict[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` (a training job's config dict) with ``point``'s values set; ``job`` is left as is."""
    out = copy.deepcopy(job)
    for name, value in point.items():
        if name == ROW:
            continue
        if name == "align_variant":
            value = ALIGN_VARIANTS[value]
        _dimension(name).apply(out, value)
    return out


def describe(point: Mapping[str, Any]) -> str:
    """``similarity=cos align_layers=2 ...``: a point on one line."""
    return " ".join(f"{k}={_short(v)}" for k, v in point.items() if k != ROW)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _dimension(name: str) -> Dimension:
    if name not in DIMENSIONS:
        close = difflib.get_close_matches(name, DIMENSIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown sweep dimension {name!r}{hint}; dimensions: {', '.join(DIMENSIONS)}"
        )
    return DIMENSIONS[name]


def _typed(value: Any, dimension: Dimension, where: str) -> Any:
    """``value`` if it has the dimension's type (an int is a float too); an error otherwise."""
    kind = dimension.kind
    ok = (
        isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is not float
        else isinstance(value, int | float) and not isinstance(value, bool)
    )
    if not ok:
        raise ValueError(f"{where} must be {kind.__name__}, got {value!r}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
    if dimension is DIMENSIONS["align_variant"] and value not in ALIGN_VARIANTS:
        raise ValueError(f"{where} must be one of {', '.join(ALIGN_VARIANTS)}, got {value!r}")
    return value


def _range(spec: Mapping[str, Any], dimension: Dimension, where: str) -> Range:
    if len(spec) != 1 or next(iter(spec)) not in ("uniform", "loguniform"):
        raise ValueError(f"{where}: a range is {{uniform: [low, high]}} or {{loguniform: [...]}}")
    if not dimension.ranged:
        raise ValueError(f"{where}: {dimension.kind.__name__} values take a value or a list")
    kind, bounds = next(iter(spec.items()))
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ValueError(f"{where}.{kind} must be [low, high], got {bounds!r}")
    low, high = (_typed(b, dimension, f"{where}.{kind}") for b in bounds)
    if low > high:
        raise ValueError(f"{where}.{kind}: low {low} is greater than high {high}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}.loguniform: low must be > 0, got {low}")
    return Range(low, high, log=kind == "loguniform")
