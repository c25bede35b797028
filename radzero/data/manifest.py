"""Dataset manifests: one row per image with its path, report or sentences, labels, boxes, masks.

A manifest is a CSV, JSONL or Parquet file (by extension) on local disk or object storage.
Columns: ``image`` (a path relative to the manifest's folder, an absolute path or a URI) and
``report`` (free text) or ``sentences`` (a list); optional ``split``, ``study_id``,
``patient_id``, ``view``, one 0/1 column per label, ``boxes`` and ``masks``.
"""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

from radzero import storage
from radzero.data import mimic

JSON_COLUMNS = ("sentences", "boxes", "masks")
ID_COLUMNS = ("study_id", "patient_id", "view")
TEXT_COLUMNS = ("image", "report", "split", *ID_COLUMNS)
FORMATS = (".csv", ".jsonl", ".parquet")


def read_manifest(uri: str | Path) -> pd.DataFrame:
    """Read a manifest; list/object columns are parsed and paths made absolute (or URIs)."""
    uri = str(uri)
    suffix = posixpath.splitext(uri)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"manifest {uri}: unsupported format {suffix!r}; use one of {FORMATS}")
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest {uri} does not exist") from None
    frame = _parse(data, suffix, uri)
    if "image" not in frame.columns:
        raise ValueError(f"manifest {uri} has no 'image' column (columns: {list(frame.columns)})")
    root = storage.parent(uri)
    for column in JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = [_parse_json(v, column, uri) for v in frame[column]]
    frame["image"] = [_resolve(root, p) for p in frame["image"]]
    if "masks" in frame.columns:
        frame["masks"] = [{k: _resolve(root, v) for k, v in m.items()} for m in frame["masks"]]
    return frame


def _parse(data: bytes, suffix: str, uri: str) -> pd.DataFrame:
    try:
        if suffix == ".csv":
            return _blank_labels_as_nan(pd.read_csv(io.BytesIO(data), keep_default_na=False))
        if suffix == ".jsonl":
            return pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        return pd.read_parquet(io.BytesIO(data))
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ValueError(f"manifest {uri} cannot be parsed as {suffix[1:]}: {err}") from err


def _blank_labels_as_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV column of numbers and blanks (a label with unknown cells) as floats with NaN;
    text and id columns keep their empty strings."""
    for column in frame.columns:
        if is_numeric_dtype(frame[column]) or column in (*JSON_COLUMNS, *TEXT_COLUMNS):
            continue
        text = frame[column].astype(str).str.strip()
        numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
        if (text != "").any() and numbers.notna().sum() == (text != "").sum():
            frame[column] = numbers.astype(float)
    return frame


def _parse_json(value: object, column: str, uri: str) -> object:
    """CSV cells hold JSON text; JSONL and Parquet hold the values themselves."""
    empty: object = {} if column == "masks" else []
    if value is None or (isinstance(value, float) and value != value):
        return empty
    if not isinstance(value, str):
        return value.tolist() if hasattr(value, "tolist") else value
    if value == "":
        return empty
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"manifest {uri}: column {column!r} holds invalid JSON {value[:60]!r}"
        ) from err


def _resolve(root: str, value: str) -> str:
    value = str(value)
    if "://" in value or Path(value).is_absolute():
        return value
    return storage.join(root, value)


def load_manifest(uri: str | Path) -> pd.DataFrame:
    """A manifest from a manifest file, a phantom folder or a MIMIC-CXR root (auto-detected)."""
    uri = str(uri)
    if posixpath.splitext(uri)[1].lower() in FORMATS:
        return read_manifest(uri)
    phantom_manifest = storage.join(uri, "manifest.csv")
    if storage.exists(phantom_manifest):
        return read_manifest(phantom_manifest)
    if mimic.is_mimic_layout(uri):
        return mimic.read_mimic(uri)
    raise ValueError(
        f"{uri} is neither a manifest file ({', '.join(FORMATS)}), a folder holding manifest.csv "
        "(the phantom layout), nor a MIMIC-CXR root (files/ and mimic-cxr-2.0.0-split.csv)"
    )
