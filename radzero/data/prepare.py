"""Preparing manifest rows without a cluster: fields, splits, decoded and resized images.

The preprocessing job (:mod:`radzero.platform.preprocess`) runs these functions in Ray Data;
a notebook can call them on a pandas frame directly::

    frame = normalise_manifest(load_manifest(uri), uri)
    frame = mark_excluded(frame, {list_uri: read_exclusion_list(list_uri)})  # optional
    frame = assign_splits(frame, SplitFractions())
    prepared = prepare_batch(frame, resolutions=[224], max_bytes=64 * 2**20)

A prepared row holds ``boxes`` as a list of :data:`BOX` and ``masks`` as a list of :data:`MASK`
(Arrow ``list<struct>`` columns in the written shards, empty lists when a row has none).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from radzero import storage
from radzero.data.benchmarks import MSCXR
from radzero.data.benchmarks._base import file_name, find_file, read_table, require
from radzero.data.hashing import content_hash, unit_interval
from radzero.data.images import ImageTooLarge, read_image, resize, reuse_freed_memory
from radzero.data.manifest import ID_COLUMNS
from radzero.data.sentences import extract_findings
from radzero.data.splits import SPLITS, normalise_split

BOX_CORNERS = ("x1", "y1", "x2", "y2")
# A box in inclusive pixel coordinates of the source image; location "" when not given.
BOX = pa.struct(
    [("finding", pa.string()), ("location", pa.string())]
    + [(corner, pa.float64()) for corner in BOX_CORNERS]
)
# A finding's mask image (non-zero pixels inside), as a path or URI.
MASK = pa.struct([("finding", pa.string()), ("uri", pa.string())])
COLUMN_TYPES = {
    "sentences": pa.list_(pa.string()),
    "boxes": pa.list_(BOX),
    "masks": pa.list_(MASK),
}


@dataclass
class SplitFractions:
    """Fractions for rows without a ``split``; assigned per patient, seeded, order-independent."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
            raise ValueError(f"config split fractions must be >= 0 and sum to 1, got {parts}")


def normalise_manifest(frame: pd.DataFrame, manifest: str) -> pd.DataFrame:
    """Check the columns and give every row the same fields: row_id, report, sentences, ids,
    ``boxes`` and ``masks`` (lists of :data:`BOX` and :data:`MASK` dicts)."""
    if "report" not in frame.columns and "sentences" not in frame.columns:
        raise ValueError(f"manifest {manifest} needs a 'report' or a 'sentences' column")
    frame = frame.reset_index(drop=True).copy()
    frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
    frame["report"] = frame.get("report", pd.Series([""] * len(frame))).fillna("").astype(str)
    if "sentences" not in frame.columns:
        frame["sentences"] = [[] for _ in range(len(frame))]
    frame["sentences"] = [
        [str(s) for s in v] if isinstance(v, list) else [] for v in frame["sentences"]
    ]
    frame["sentence_source"] = ["manifest" if s else "" for s in frame["sentences"]]
    for column in ID_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str) if column in frame else ""
    frame["split"] = frame["split"].fillna("").astype(str) if "split" in frame else ""
    given = frame.get("boxes", pd.Series([None] * len(frame)))
    frame["boxes"] = [_boxes(v, manifest) for v in given]
    given = frame.get("masks", pd.Series([None] * len(frame)))
    frame["masks"] = [_masks(v, manifest) for v in given]
    return frame


def _boxes(value: object, manifest: str) -> list[dict[str, Any]]:
    """A manifest cell's boxes as :data:`BOX` dicts (none for an empty or missing cell)."""
    boxes = []
    for box in _cell(value, list, manifest, "boxes"):
        if not isinstance(box, dict):
            raise ValueError(f"manifest {manifest}: a box is not an object: {box!r}")
        missing = [k for k in ("finding", *BOX_CORNERS) if k not in box]
        extra = sorted(set(box) - set(BOX.names))
        if missing or extra:
            raise ValueError(
                f"manifest {manifest}: box {box} lacks {missing} or has unknown keys {extra}; "
                f"a box has {', '.join(BOX.names)} (location optional)"
            )
        boxes.append(
            {
                "finding": str(box["finding"]),
                "location": str(box.get("location") or ""),
                **{corner: float(box[corner]) for corner in BOX_CORNERS},
            }
        )
    return boxes


def _masks(value: object, manifest: str) -> list[dict[str, str]]:
    """A manifest cell's masks (finding -> mask image) as :data:`MASK` dicts."""
    masks = _cell(value, dict, manifest, "masks")
    return [{"finding": str(finding), "uri": str(uri)} for finding, uri in masks.items()]


def _cell(value: object, kind: type, manifest: str, column: str) -> Any:
    """A list or dict cell as read (:func:`radzero.data.manifest.read_manifest`); empty if
    missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return kind()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, kind):
        raise ValueError(f"manifest {manifest}: column {column!r} holds {value!r}, not a {kind}")
    return value


def read_exclusion_list(uri: str) -> set[str]:
    """The ``dicom_id``s that an exclusion list names (docs/data.md, the exclusion lists).

    MS-CXR's label file (a name of ``MSCXR.files``) is read by the MS-CXR reader, so it is
    checked as the benchmark checks it, and every image it holds is listed; any other file is a
    CSV (gzipped when it ends in .gz) with a ``dicom_id`` column. FileNotFoundError when the
    file is missing; ValueError when it has no ``dicom_id`` column or lists no id.
    """
    if not storage.exists(uri):
        raise FileNotFoundError(f"exclusion list {uri} does not exist")
    name = file_name(uri)
    if name in MSCXR.files:
        folder = storage.parent(uri)
        chosen = file_name(find_file(folder, MSCXR.files))
        if chosen != name:
            raise ValueError(
                f"exclusion list {uri}: the MS-CXR reader takes {chosen} beside it first; "
                f"name {chosen}, or keep one MS-CXR label file in {folder}"
            )
        listed = MSCXR(folder).frame["dicom_id"]
    else:
        table = read_table(uri)
        require(table, ["dicom_id"], f"exclusion list {uri}")
        listed = table["dicom_id"]
    ids = {str(v).strip() for v in listed} - {""}
    if not ids:
        raise ValueError(f"exclusion list {uri} lists no dicom_id")
    return ids


def mark_excluded(frame: pd.DataFrame, lists: Mapping[str, set[str]]) -> pd.DataFrame:
    """Add ``excluded``: the first of ``lists`` (URI -> dicom_ids) holding the row's
    ``dicom_id``, "" when none does or the row has no ``dicom_id`` (it is never excluded).

    :func:`prepare_batch` quarantines a row with an ``excluded`` list as ``excluded: <URI>``.
    """
    frame = frame.copy()
    given = frame["dicom_id"] if "dicom_id" in frame else pd.Series([""] * len(frame))
    ids = ["" if pd.isna(v) else str(v).strip() for v in given]
    frame["excluded"] = [
        next((uri for uri, listed in lists.items() if dicom and dicom in listed), "")
        for dicom in ids
    ]
    return frame


def assign_splits(frame: pd.DataFrame, fractions: SplitFractions) -> pd.DataFrame:
    """Keep a given split; draw the others per patient (or study, or image) from a seeded hash."""
    frame = frame.copy()
    try:
        names = {v: normalise_split(v) if v.strip() else "" for v in frame["split"].unique()}
    except ValueError as err:
        raise ValueError(f"manifest: {err}, or leave it empty to have one drawn") from None
    given = frame["split"].map(names)
    owner = frame["patient_id"].where(frame["patient_id"] != "", frame["study_id"])
    owner = owner.where(owner != "", frame["image"])
    edges = np.cumsum([fractions.train, fractions.val])
    drawn = [
        SPLITS[int(np.searchsorted(edges, unit_interval(o, fractions.seed), side="right"))]
        for o in owner
    ]
    frame["split"] = given.where(given != "", pd.Series(drawn, index=frame.index))
    return frame


def prepare_batch(
    batch: pd.DataFrame, resolutions: list[int], max_bytes: int, staging: str | None = None
) -> pd.DataFrame:
    """Decode, check and resize each row's image and settle its sentences; never raises per row.

    Each returned row has ``error`` and ``reason`` ("" when good) and ``image_<resolution>``
    (PNG bytes, None when bad); a row whose ``excluded`` names a list (:func:`mark_excluded`)
    is quarantined first, its image never read. With ``staging``, the good rows are written
    there as one Parquet shard per resolution (``prepared/<resolution>/``, the image under
    ``image``) and the returned rows carry no image bytes (one pass, images never cross the
    object store).
    """
    reuse_freed_memory()
    records = [_prepare_row(row, resolutions, max_bytes) for row in batch.to_dict("records")]
    frame = pd.DataFrame.from_records(records)
    if staging is None:
        return frame
    images = [f"image_{r}" for r in resolutions]
    good = frame[frame["error"] == ""].drop(columns=["error", "reason"])
    if len(good):
        shard = f"part-{int(good['row_id'].min()):09d}.parquet"
        for resolution in resolutions:
            table = good.drop(columns=[c for c in images if c != f"image_{resolution}"])
            table = table.rename(columns={f"image_{resolution}": "image"})
            write_table(table, storage.join(staging, "prepared", str(resolution), shard))
    return frame.drop(columns=images)


def _prepare_row(row: dict[str, Any], resolutions: list[int], max_bytes: int) -> dict[str, Any]:
    result = {**row, "error": "", "reason": "", "content_hash": "", "height": 0, "width": 0}
    result["source"] = result.pop("image")
    result.update({f"image_{r}": None for r in resolutions})
    result["sentences"] = list(row["sentences"])
    excluded = result.pop("excluded", "")
    try:
        if excluded:
            raise _Quarantine(f"excluded: {excluded}", f"dicom_id {row['dicom_id']} is listed")
        # Sentences first: a row without any is quarantined before its image is decoded.
        if not result["sentences"] and not result["sentence_source"]:
            if not row["report"].strip():
                raise _Quarantine("empty report", "no report text and no sentences")
            result["sentences"] = extract_findings(row["report"])
            result["sentence_source"] = "rules"
        if not result["sentences"]:
            raise _Quarantine("no sentences", "no finding-sentence could be extracted")
        data = storage.read_bytes(result["source"])
        if len(data) > max_bytes:
            raise _Quarantine(
                "oversized image", f"{len(data) / 2**20:.1f} MiB > {max_bytes / 2**20:.1f} MiB"
            )
        result["content_hash"] = content_hash(data)
        gray = read_image(data, name=result["source"])
        result["height"], result["width"] = gray.shape
        for resolution in resolutions:
            result[f"image_{resolution}"] = encode_png(gray, resolution)
    except _Quarantine as bad:
        result["error"], result["reason"] = bad.category, bad.detail
    except FileNotFoundError as err:
        result["error"], result["reason"] = "missing file", str(err)
    except ImageTooLarge as err:
        result["error"], result["reason"] = "oversized image", str(err)
    except ValueError as err:
        message = str(err)
        unsupported = "not an image" in message or "unsupported" in message
        result["error"] = "unsupported format" if unsupported else "corrupt image"
        result["reason"] = message
    except OSError as err:
        result["error"], result["reason"] = "unreadable file", str(err)
    if result["error"]:
        result.update({f"image_{r}": None for r in resolutions})
    return result


class _Quarantine(Exception):
    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category, self.detail = category, detail


def encode_png(gray: np.ndarray, resolution: int) -> bytes:
    """A grey [0, 1] image resized (antialiased) to resolution x resolution, as 8-bit PNG bytes."""
    plane = resize(gray, resolution).clamp(0.0, 1.0).mul(255).round().to(torch.uint8)
    image = Image.fromarray(plane.numpy())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_table(frame: pd.DataFrame, uri: str) -> None:
    """Write prepared (or quarantined) rows as one Parquet file, the list columns typed.

    ``sentences``, ``boxes`` and ``masks`` get :data:`COLUMN_TYPES` (an empty list stays
    ``list<struct>``); any other all-empty list column is ``list<string>``, not ``list<null>``.
    """
    fs, path = storage.resolve(uri)
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    frame = frame.reset_index(drop=True)
    typed = {name: kind for name, kind in COLUMN_TYPES.items() if name in frame.columns}
    table = pa.Table.from_pandas(frame.drop(columns=list(typed)), preserve_index=False)
    schema = pa.schema(
        pa.field(f.name, pa.list_(pa.string())) if f.type == pa.list_(pa.null()) else f
        for f in table.schema
    )
    table = table.cast(schema).replace_schema_metadata(None)
    for name, kind in typed.items():
        table = table.append_column(pa.field(name, kind), pa.array(list(frame[name]), type=kind))
    table = table.select(list(frame.columns))
    storage.with_retries(lambda: pq.write_table(table, path, filesystem=fs), f"write {uri}")
