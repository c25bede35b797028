"""The preprocessing job: a manifest -> decoded, resized images with finding-sentences, as Parquet.

Output under ``out`` (a local folder or ``s3://`` prefix)::

    prepared/<resolution>/*.parquet   one row per good image: the image as an 8-bit grey PNG at
                                      that resolution, sentences, ids, split, labels
    quarantine/quarantine.parquet     every bad row with its reason (missing file, corrupt image,
                                      unsupported format, oversized image, empty report, ...)
    summary.json                      counts, reasons, the config and the input fingerprints
    _SUCCESS.json                     the commit marker; written last

Everything is first written under ``_staging/<attempt>/`` and moved into place only when the
whole job succeeded, so a crashed run is never taken for a finished one. A rerun on the same
manifest and config finds the marker and returns the existing summary.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch
from PIL import Image

from radzero import storage
from radzero.config import path_field, path_fields, to_dict
from radzero.data.images import read_image, resize, reuse_freed_memory
from radzero.data.manifest import load_manifest
from radzero.data.sentences import extract_findings
from radzero.platform import outputs
from radzero.platform.llm import LLMConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validate": "val", "valid": "val", "validation": "val", "dev": "val"}
_ID_COLUMNS = ("study_id", "patient_id", "view")
_JSON_COLUMNS = ("boxes", "masks")


@dataclass
class SplitConfig:
    """Fractions for rows without a ``split``; assigned per patient, seeded, order-independent."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
            raise ValueError(f"config split fractions must be >= 0 and sum to 1, got {parts}")


@dataclass
class PreprocessJobConfig:
    """What the preprocessing job does with a manifest; ``manifest`` and ``out`` are URIs."""

    manifest: str = path_field("")
    out: str = path_field("")
    resolutions: list[int] = field(default_factory=lambda: [224])
    sentences: Literal["rules", "llm"] = "rules"  # for rows with a report and no sentences
    llm: LLMConfig | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    max_image_mb: float = 64.0
    batch_rows: int = 128  # rows per task and per Parquet shard
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if not self.resolutions or any(int(r) < 16 for r in self.resolutions):
            raise ValueError(f"config resolutions must be >= 16 px, got {self.resolutions}")
        if len(set(self.resolutions)) != len(self.resolutions):
            raise ValueError(f"config resolutions repeat a value: {self.resolutions}")
        if self.sentences == "llm" and self.llm is None:
            raise ValueError("config sentences: llm needs an llm section (url, model, ...)")
        if self.max_image_mb <= 0 or self.batch_rows < 1:
            raise ValueError("config max_image_mb must be > 0 and batch_rows >= 1")


def preprocess(manifest: str, out: str, config: PreprocessJobConfig | None = None) -> dict:
    """Run the job (idempotent) and return its summary."""
    config = config or PreprocessJobConfig()
    started = time.perf_counter()
    frame = normalise_manifest(load_manifest(manifest), manifest)
    input_fingerprint = _fingerprint(frame.to_json(orient="records", default_handler=str))
    run_key = _fingerprint(input_fingerprint, json.dumps(_settings(config), sort_keys=True))
    finished = outputs.finished(out)
    if finished is not None and finished.get("run_key") == run_key:
        log.info("preprocess: %s already holds this run (same manifest and config)", out)
        return json.loads(storage.read_text(storage.join(out, "summary.json")))

    frame = assign_splits(frame, config.split)
    log.info("preprocess: %d rows from %s -> %s", len(frame), manifest, out)
    staging = outputs.staging(out)
    blocks = [
        frame.iloc[i : i + config.batch_rows] for i in range(0, len(frame), config.batch_rows)
    ]
    rows = ray.data.from_pandas(blocks)
    if config.sentences == "llm":
        rows = _llm_sentences(rows, config.llm)
    else:
        # A single map stage has no other operator to hold CPUs for, and Ray Data's per-operator
        # reservation only held its tasks back: on 2 CPUs the second task started ~1 s late and
        # each worker idled ~0.2 s between tasks. The setting stays on this dataset's context.
        rows.context.op_resource_reservation_enabled = False
    meta = rows.map_batches(
        prepare_batch,
        fn_kwargs={
            "resolutions": [int(r) for r in config.resolutions],
            "max_bytes": int(config.max_image_mb * 2**20),
            "staging": staging,
        },
        batch_format="pandas",
        batch_size=config.batch_rows,
    ).to_pandas()
    quarantine = meta[meta["error"] != ""].sort_values("row_id")
    _write_table(quarantine, storage.join(staging, "quarantine", "quarantine.parquet"))

    summary = _summary(meta, frame, config, input_fingerprint, run_key, manifest, out)
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    outputs.commit(staging, out, summary, run_key)
    log.info(
        "preprocess: %d rows in, %d prepared, %d quarantined (%s)",
        summary["rows_in"],
        summary["rows_out"],
        summary["quarantined"],
        ", ".join(f"{k}: {v}" for k, v in summary["quarantine_reasons"].items()) or "none",
    )
    return summary


def normalise_manifest(frame: pd.DataFrame, manifest: str) -> pd.DataFrame:
    """Check the columns and give every row the same fields: row_id, report, sentences, ids."""
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
    for column in _ID_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str) if column in frame else ""
    frame["split"] = frame["split"].fillna("").astype(str) if "split" in frame else ""
    for column in _JSON_COLUMNS:
        if column in frame.columns:
            frame[column] = [json.dumps(v) for v in frame[column]]
    return frame


def assign_splits(frame: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Keep a given split; draw the others per patient (or study, or image) from a seeded hash."""
    frame = frame.copy()
    given = frame["split"].str.strip().str.lower().replace(_SPLIT_ALIASES)
    unknown = sorted(set(given) - {"", *SPLITS})
    if unknown:
        raise ValueError(f"manifest split values {unknown} are not one of {SPLITS} (or empty)")
    owner = frame["patient_id"].where(frame["patient_id"] != "", frame["study_id"])
    owner = owner.where(owner != "", frame["image"])
    edges = np.cumsum([config.train, config.val])
    drawn = [
        SPLITS[int(np.searchsorted(edges, _unit(config.seed, o), side="right"))] for o in owner
    ]
    frame["split"] = given.where(given != "", pd.Series(drawn, index=frame.index))
    return frame


def _unit(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def prepare_batch(
    batch: pd.DataFrame, resolutions: list[int], max_bytes: int, staging: str | None = None
) -> pd.DataFrame:
    """Decode, check and resize each row's image and settle its sentences; never raises per row.

    With ``staging``, the good rows are written there as one Parquet shard per resolution and
    the returned rows carry no image bytes (one pass, images never cross the object store).
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
            _write_table(table, storage.join(staging, "prepared", str(resolution), shard))
    return frame.drop(columns=images)


def _prepare_row(row: dict[str, Any], resolutions: list[int], max_bytes: int) -> dict[str, Any]:
    result = {**row, "error": "", "reason": "", "content_hash": "", "height": 0, "width": 0}
    result["source"] = result.pop("image")
    result.update({f"image_{r}": None for r in resolutions})
    result["sentences"] = list(row["sentences"])
    try:
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
        result["content_hash"] = hashlib.blake2b(data, digest_size=16).hexdigest()
        gray = read_image(data, name=result["source"])
        result["height"], result["width"] = gray.shape
        for resolution in resolutions:
            result[f"image_{resolution}"] = encode_png(gray, resolution)
    except _Quarantine as bad:
        result["error"], result["reason"] = bad.category, bad.detail
    except FileNotFoundError as err:
        result["error"], result["reason"] = "missing file", str(err)
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


def _llm_sentences(rows: ray.data.Dataset, config: LLMConfig) -> ray.data.Dataset:
    """Send the rows that need sentences (a report, none given) through the LLM backend."""
    from radzero.platform import llm

    needs = rows.filter(_needs_extraction)
    keeps = rows.filter(lambda row: not _needs_extraction(row))
    extracted = llm.extract_sentences(needs, config).map(_llm_source)
    return keeps.union(extracted)


def _needs_extraction(row: dict[str, Any]) -> bool:
    return len(row["sentences"]) == 0 and row["report"].strip() != ""


def _llm_source(row: dict[str, Any]) -> dict[str, Any]:
    row["sentence_source"] = "llm" if row.pop("sentence_backend") == "llm" else "rules_fallback"
    row.pop("llm_attempts", None)
    return row


def _write_table(frame: pd.DataFrame, uri: str) -> None:
    fs, path = storage.resolve(uri)
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    # Plain Arrow types only: an all-empty list column is list<string>, not list<null>.
    schema = pa.schema(
        pa.field(f.name, pa.list_(pa.string())) if f.type == pa.list_(pa.null()) else f
        for f in table.schema
    )
    table = table.cast(schema).replace_schema_metadata(None)
    storage.with_retries(lambda: pq.write_table(table, path, filesystem=fs), f"write {uri}")


def _settings(config: PreprocessJobConfig) -> dict[str, Any]:
    """The config without its paths (they are arguments of the run, not settings)."""
    return {k: v for k, v in to_dict(config).items() if k not in path_fields(config)}


def _fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _summary(
    meta: pd.DataFrame,
    frame: pd.DataFrame,
    config: PreprocessJobConfig,
    input_fingerprint: str,
    run_key: str,
    manifest: str,
    out: str,
) -> dict:
    ok = meta[meta["error"] == ""].sort_values("row_id")
    counts = ok["sentences"].map(len)
    fingerprint = _fingerprint(
        run_key,
        *(f"{h}:{'|'.join(s)}" for h, s in zip(ok["content_hash"], ok["sentences"], strict=True)),
    )
    return {
        "manifest": manifest,
        "out": out,
        "rows_in": len(frame),
        "rows_out": len(ok),
        "quarantined": int((meta["error"] != "").sum()),
        "quarantine_reasons": dict(Counter(meta.loc[meta["error"] != "", "error"])),
        "splits": {name: int((ok["split"] == name).sum()) for name in SPLITS},
        "sentences_per_image": {
            "mean": round(float(counts.mean()), 3) if len(ok) else 0.0,
            "min": int(counts.min()) if len(ok) else 0,
            "max": int(counts.max()) if len(ok) else 0,
        },
        "sentence_sources": dict(Counter(ok["sentence_source"])),
        "resolutions": [int(r) for r in config.resolutions],
        "config": _settings(config),
        "input_fingerprint": input_fingerprint,
        "fingerprint": fingerprint,
        "run_key": run_key,
    }


def read_prepared(out: str, resolution: int, shuffle_seed: int | None = None) -> ray.data.Dataset:
    """The prepared rows at one resolution of a finished preprocessing output.

    ``shuffle_seed``: read the files in a new seeded order on every execution.
    """
    return outputs.read_parquet(
        out, "preprocess", "prepared", str(resolution), shuffle_seed=shuffle_seed
    )
