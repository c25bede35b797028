"""Dataset manifests: one row per image with its path, sentences, labels, boxes and masks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

JSON_COLUMNS = ("sentences", "boxes", "masks")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a CSV manifest; JSON list/object columns are parsed and paths made absolute.

    ``image`` and the mask paths are relative to the manifest's folder unless absolute.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    frame = pd.read_csv(path, keep_default_na=False)
    if "image" not in frame.columns:
        raise ValueError(f"manifest {path} has no 'image' column (columns: {list(frame.columns)})")
    root = path.parent
    for column in JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = [_parse_json(v, column, path) for v in frame[column]]
    frame["image"] = [str(_resolve(root, p)) for p in frame["image"]]
    if "masks" in frame.columns:
        frame["masks"] = [{k: str(_resolve(root, v)) for k, v in m.items()} for m in frame["masks"]]
    return frame


def _parse_json(value: object, column: str, path: Path) -> object:
    if not isinstance(value, str) or value == "":
        return {} if column == "masks" else []
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"manifest {path}: column {column!r} holds invalid JSON {value[:60]!r}"
        ) from err


def _resolve(root: Path, value: str) -> Path:
    candidate = Path(value)
    return candidate if candidate.is_absolute() else root / candidate
