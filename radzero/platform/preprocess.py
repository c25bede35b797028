"""The preprocessing job: a manifest -> decoded, resized images with finding-sentences, as Parquet.

Output under ``out`` (a local folder or ``s3://`` prefix)::

    prepared/<resolution>/*.parquet   one row per good image: the image as an 8-bit grey PNG at
                                      that resolution, sentences, ids, split, labels, boxes
                                      and masks (lists of structs, radzero.data.prepare.BOX
                                      and MASK)
    quarantine/quarantine.parquet     every bad row with its reason (missing file, corrupt image,
                                      unsupported format, oversized image, empty report, ...),
                                      and every row of an exclusion list (excluded: <URI>)
    summary.json                      counts, reasons, the config and the input fingerprints
    _SUCCESS.json                     the commit marker; written last

Everything is first written under ``_staging/<attempt>/`` and moved into place only when the
whole job succeeded, so a crashed run is never taken for a finished one. A rerun on the same
manifest and config finds the marker and returns the existing summary. The rows are prepared by
:mod:`radzero.data.prepare` (no Ray there); this module wires it into Ray Data and commits.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import ray

from radzero import storage
from radzero.config import path_field, path_fields, to_dict
from radzero.data.hashing import fingerprint
from radzero.data.manifest import load_manifest
from radzero.data.prepare import (
    SplitFractions,
    assign_splits,
    mark_excluded,
    normalise_manifest,
    prepare_batch,
    read_exclusion_list,
    write_table,
)
from radzero.data.splits import SPLITS
from radzero.platform import outputs
from radzero.platform.llm import LLMConfig

log = logging.getLogger(__name__)


@dataclass
class PreprocessJobConfig:
    """What the preprocessing job does with a manifest; ``manifest`` and ``out`` are URIs.

    ``exclude`` lists URIs of exclusion lists (MS-CXR's label file, or a CSV with a ``dicom_id``
    column): their images are quarantined as ``excluded: <URI>``, never prepared.
    """

    manifest: str = path_field("")
    out: str = path_field("")
    exclude: list[str] = path_field([])
    resolutions: list[int] = field(default_factory=lambda: [224])
    sentences: Literal["rules", "llm"] = "rules"  # for rows with a report and no sentences
    llm: LLMConfig | None = None
    split: SplitFractions = field(default_factory=SplitFractions)
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
        repeated = len(set(self.exclude)) != len(self.exclude)
        if repeated or any(not uri.strip() for uri in self.exclude):
            raise ValueError(f"config exclude has an empty or repeated URI: {self.exclude}")


def preprocess(manifest: str, out: str, config: PreprocessJobConfig | None = None) -> dict:
    """Run the job (idempotent) and return its summary."""
    config = config or PreprocessJobConfig()
    started = time.perf_counter()
    exclusions = {uri: read_exclusion_list(uri) for uri in config.exclude}  # bad lists fail first
    frame = normalise_manifest(load_manifest(manifest), manifest)
    input_fingerprint = fingerprint(frame.to_json(orient="records", default_handler=str))
    run_key = fingerprint(
        input_fingerprint,
        json.dumps(_settings(config), sort_keys=True),
        *(f"exclude {uri} {fingerprint(*sorted(ids))}" for uri, ids in exclusions.items()),
    )
    finished = outputs.finished_run(out, run_key, "preprocess")
    if finished is not None:
        return finished

    frame = assign_splits(mark_excluded(frame, exclusions), config.split)
    if exclusions and "dicom_id" not in frame.columns:
        log.warning("preprocess: %s has no dicom_id column: no row can be excluded", manifest)
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
    write_table(quarantine, storage.join(staging, "quarantine", "quarantine.parquet"))

    summary = _summary(meta, frame, config, input_fingerprint, run_key, manifest, out)
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    outputs.commit(staging, out, summary, run_key)
    log.info(
        "preprocess: %d rows in, %d prepared, %d quarantined, %d of them excluded (%s)",
        summary["rows_in"],
        summary["rows_out"],
        summary["quarantined"],
        summary["excluded"],
        ", ".join(f"{k}: {v}" for k, v in summary["quarantine_reasons"].items()) or "none",
    )
    return summary


def _llm_sentences(rows: ray.data.Dataset, config: LLMConfig) -> ray.data.Dataset:
    """Send the rows that need sentences (a report, none given) through the LLM backend."""
    from radzero.platform import llm

    needs = rows.filter(_needs_extraction)
    keeps = rows.filter(lambda row: not _needs_extraction(row))
    extracted = llm.extract_sentences(needs, config).map(_llm_source)
    return keeps.union(extracted)


def _needs_extraction(row: dict[str, Any]) -> bool:
    """A report and no sentences, and not excluded (an excluded row is never sent)."""
    return len(row["sentences"]) == 0 and row["report"].strip() != "" and not row["excluded"]


def _llm_source(row: dict[str, Any]) -> dict[str, Any]:
    row["sentence_source"] = "llm" if row.pop("sentence_backend") == "llm" else "rules_fallback"
    row.pop("llm_attempts", None)
    return row


def _settings(config: PreprocessJobConfig) -> dict[str, Any]:
    """The config without its paths (they are arguments of the run, not settings)."""
    return {k: v for k, v in to_dict(config).items() if k not in path_fields(config)}


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
    prepared_fingerprint = fingerprint(
        run_key,
        *(f"{h}:{'|'.join(s)}" for h, s in zip(ok["content_hash"], ok["sentences"], strict=True)),
    )
    return {
        "manifest": manifest,
        "out": out,
        "rows_in": len(frame),
        "rows_out": len(ok),
        "quarantined": int((meta["error"] != "").sum()),
        "excluded": int((frame["excluded"] != "").sum()),
        "quarantine_reasons": dict(Counter(meta.loc[meta["error"] != "", "error"])),
        "splits": {name: int((ok["split"] == name).sum()) for name in SPLITS},
        "sentences_per_image": {
            "mean": round(float(counts.mean()), 3) if len(ok) else 0.0,
            "min": int(counts.min()) if len(ok) else 0,
            "max": int(counts.max()) if len(ok) else 0,
        },
        "sentence_sources": dict(Counter(ok["sentence_source"])),
        "resolutions": [int(r) for r in config.resolutions],
        "exclude": list(config.exclude),
        "config": _settings(config),
        "input_fingerprint": input_fingerprint,
        "fingerprint": prepared_fingerprint,
        "run_key": run_key,
    }


def read_prepared(out: str, resolution: int, shuffle_seed: int | None = None) -> ray.data.Dataset:
    """The prepared rows at one resolution of a finished preprocessing output.

    ``shuffle_seed``: read the files in a new seeded order on every execution.
    """
    return outputs.read_parquet(
        out, "preprocess", "prepared", str(resolution), shuffle_seed=shuffle_seed
    )
