"""What every benchmark reader shares: the base class, file look-up, parsing and box helpers."""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import ClassVar

import pandas as pd

from radzero import storage

Box = dict[str, object]


class Benchmark:
    """One benchmark read from its published files under ``root`` (a folder or an s3:// URI).

    After construction: ``csv`` is the raw table as read, ``labels`` holds one 0/1 float column
    per pathology (NaN where unknown), one row per image, and ``frame`` is the common manifest:
    ``image``, ``split``, the pathology columns and ``boxes``, then what the dataset adds.
    """

    name: ClassVar[str]
    pathologies: ClassVar[tuple[str, ...]]

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(root)
        self.csv, rows, self.labels = self._read()
        columns = list(rows.columns)
        rest = [c for c in columns if c not in ("image", "split", "boxes")]
        self.frame = pd.concat(
            [rows[["image", "split"]], self.labels, rows[["boxes", *rest]]], axis=1
        )

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(raw table, per-image columns with image/split/boxes, labels) on one index."""
        raise NotImplementedError


def find_file(root: str, names: Sequence[str]) -> str:
    """The first of ``names`` that exists under ``root``; FileNotFoundError naming them all."""
    found = find_optional(root, names)
    if found is None:
        raise FileNotFoundError(f"{root}: none of {', '.join(names)} found")
    return found


def find_optional(root: str, names: Sequence[str]) -> str | None:
    for name in names:
        uri = storage.join(root, name)
        if storage.exists(uri):
            return uri
    return None


def read_table(uri: str) -> pd.DataFrame:
    """A CSV (gzipped when it ends in .gz) as strings, blanks kept as ""."""
    data = storage.read_bytes(uri)
    try:
        return pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            compression="gzip" if uri.endswith(".gz") else None,
        )
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as err:
        raise ValueError(f"{uri} cannot be parsed as CSV: {err}") from err


def read_json(uri: str) -> object:
    try:
        return json.loads(storage.read_bytes(uri))
    except ValueError as err:
        raise ValueError(f"{uri} cannot be parsed as JSON: {err}") from err


def require(table: pd.DataFrame, columns: Iterable[str], uri: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{uri} lacks columns {missing} (has {list(table.columns)})")


def numbers(values: Iterable[str], uri: str, what: str) -> list[float]:
    """Parse numbers, "" as NaN; ValueError naming the file on anything else."""
    out = []
    for value in values:
        text = str(value).strip()
        try:
            out.append(float(text) if text else math.nan)
        except ValueError:
            raise ValueError(f"{uri}: {what} holds {value!r}, not a number") from None
    return out


def one_hot(
    findings: Sequence[Iterable[str] | None], pathologies: Sequence[str], index: pd.Index
) -> pd.DataFrame:
    """One 0/1 column per pathology; a row whose findings are None is unknown (all NaN)."""
    rows = []
    for present in findings:
        if present is None:
            rows.append([math.nan] * len(pathologies))
        else:
            chosen = set(present)
            rows.append([float(p in chosen) for p in pathologies])
    return pd.DataFrame(rows, columns=list(pathologies), index=index, dtype=float)


def xywh_box(
    finding: str,
    x: float,
    y: float,
    w: float,
    h: float,
    width: float | None = None,
    height: float | None = None,
) -> Box:
    """A box given as top-left corner and size as inclusive pixel coordinates.

    The box covers [x, x + w) by [y, y + h); each edge is rounded to the nearest pixel border,
    so x1 = round(x) and x2 = round(x + w) - 1, kept inside the image when its size is known
    and at least one pixel wide.
    """
    x1, y1 = _round(x), _round(y)
    x2, y2 = _round(x + w) - 1, _round(y + h) - 1
    if width is not None and not math.isnan(width):
        x1, x2 = min(max(x1, 0), int(width) - 1), min(x2, int(width) - 1)
    if height is not None and not math.isnan(height):
        y1, y2 = min(max(y1, 0), int(height) - 1), min(y2, int(height) - 1)
    return {"finding": finding, "x1": x1, "y1": y1, "x2": max(x2, x1), "y2": max(y2, y1)}


def file_name(uri: str) -> str:
    """The last component of a local path or an s3:// URI."""
    return posixpath.basename(uri.rstrip("/"))


def _round(value: float) -> int:
    return math.floor(value + 0.5)
