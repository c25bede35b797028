"""Job outputs that are either whole or absent: staged writes, then a commit marker.

A job writes under ``<out>/_staging/<attempt>/``; :func:`commit` replaces the previous outputs
with the staged ones, writes ``summary.json`` and finally ``_SUCCESS.json``. Readers call
:func:`require_finished` (or :func:`read_summary`, :func:`read_parquet`), so a crashed run's
partial output is never taken for a finished one. A job that may have run already::

    summary = outputs.finished_run(out, run_key, "features")
    if summary is not None:
        return summary
    staging = outputs.staging(out)
    ...  # write under staging
    outputs.commit(staging, out, summary, run_key)
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pyarrow.fs as pafs
import ray

from radzero import storage

log = logging.getLogger(__name__)

MARKER = "_SUCCESS.json"
SUMMARY = "summary.json"
STAGING = "_staging"


def staging(out: str) -> str:
    """A fresh staging folder for one attempt of a job writing to ``out``."""
    return storage.join(out, STAGING, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")


def read_marker(out: str) -> dict | None:
    """The commit marker of ``out`` (``run_key``, ``finished_at``) when a job finished there,
    else None."""
    try:
        return json.loads(storage.read_text(storage.join(out, MARKER)))
    except FileNotFoundError:
        return None


def require_finished(out: str, what: str = "job") -> dict:
    """The commit marker, or a clear error when ``out`` holds no finished output."""
    marker = read_marker(out)
    if marker is None:
        raise FileNotFoundError(
            f"{out} holds no finished {what} output (no {MARKER}); run the {what} job first, "
            "or rerun it if an earlier run crashed"
        )
    return marker


def read_summary(out: str, what: str = "job") -> dict:
    """The ``summary.json`` of a finished ``what`` output (an error when there is none)."""
    require_finished(out, what)
    return json.loads(storage.read_text(storage.join(out, SUMMARY)))


def finished_run(out: str, run_key: str, what: str) -> dict | None:
    """The summary when ``out`` already holds the finished run ``run_key``, else None (run it).

    ``run_key`` fingerprints the run's inputs and settings; :func:`commit` records it.
    """
    marker = read_marker(out)
    if marker is None or marker.get("run_key") != run_key:
        return None
    log.info("%s: %s already holds this run (same inputs and settings)", what, out)
    return read_summary(out, what)


def read_parquet(
    out: str, what: str, *parts: str, shuffle_seed: int | None = None
) -> ray.data.Dataset:
    """The Parquet files under ``<out>/<parts...>`` of a finished ``what`` output, as a Dataset.

    With ``shuffle_seed`` every execution (every epoch) reads the files in a new order drawn
    from that seed and the execution's index.

    Uses Ray Data's task-based Parquet reader. The default (V2) reader starts a pool of 32
    footer-reading actors on every execution; for a training split read once per epoch that
    costs about a second each time on a small cluster (see docs/training.md).
    """
    require_finished(out, what)
    fs, path = storage.resolve(storage.join(out, *parts))
    context = ray.data.DataContext.get_current()
    previous, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        shuffle = None if shuffle_seed is None else ray.data.FileShuffleConfig(seed=shuffle_seed)
        return ray.data.read_parquet(path, filesystem=fs, shuffle=shuffle)
    finally:
        context.use_datasource_v2 = previous


def commit(staged: str, out: str, summary: dict, run_key: str) -> None:
    """Move the staged outputs into ``out``, then write the summary and the marker."""
    fs, staged_path = storage.resolve(staged)
    _, out_path = storage.resolve(out)
    _remove(out, MARKER)
    entries = fs.get_file_info(pafs.FileSelector(staged_path, recursive=False))
    for entry in entries:
        name = entry.path.rstrip("/").rsplit("/", 1)[-1]
        storage.delete_dir(storage.join(out, name))
        _move_tree(fs, entry, f"{out_path}/{name}", storage.is_s3(out))
    storage.delete_dir(staged)
    storage.write_text(storage.join(out, SUMMARY), json.dumps(summary, indent=2) + "\n")
    marker = {"run_key": run_key, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    storage.write_text(storage.join(out, MARKER), json.dumps(marker) + "\n")


def _remove(out: str, name: str) -> None:
    fs, path = storage.resolve(storage.join(out, name))
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def _move_tree(fs: pafs.FileSystem, entry: pafs.FileInfo, target: str, s3: bool) -> None:
    """A local rename of the whole folder; on S3 (no renames) a move per object."""
    if not s3 or entry.type == pafs.FileType.File:
        if not s3:
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        storage.with_retries(lambda: fs.move(entry.path, target), f"move {entry.path}")
        return
    for info in fs.get_file_info(pafs.FileSelector(entry.path, recursive=True)):
        if info.type == pafs.FileType.File:
            destination = target + info.path[len(entry.path) :]
            storage.with_retries(
                lambda i=info, d=destination: fs.move(i.path, d), f"move {info.path}"
            )
