"""One place that turns a URI (``s3://bucket/prefix`` or a local path) into a filesystem and path.

S3 settings come from the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, credentials), which a job's config can set (:class:`S3Options`); any
S3-compatible store works.
Transient errors are retried with exponential backoff, both inside the AWS SDK and around the
small whole-object operations below.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow.fs as pafs

T = TypeVar("T")

RETRY_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.2
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 120.0


@dataclass
class S3Options:
    """S3 settings from a job's config; unset fields keep what the environment says."""

    endpoint_url: str | None = None
    region: str | None = None

    def apply(self) -> None:
        """Export the set fields as the standard AWS variables of this process.

        Jobs call this before connecting to Ray, which passes them on to every worker.
        """
        if self.endpoint_url:
            os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.region:
            os.environ["AWS_REGION"] = self.region


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def resolve(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The filesystem for ``uri`` and the path to use with it (``bucket/key`` on S3)."""
    uri = str(uri)
    if is_s3(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"{uri!r} names no bucket (expected s3://bucket/prefix)")
        path = posixpath.join(parsed.netloc, parsed.path.lstrip("/")).rstrip("/")
        return s3_filesystem(), path
    if "://" in uri:
        raise ValueError(f"unsupported URI scheme in {uri!r}: use s3:// or a local path")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem configured from the standard AWS environment."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs: dict = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=RETRY_ATTEMPTS),
    }
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a URI or local path."""
    uri = str(uri)
    if is_s3(uri):
        return posixpath.join(uri.rstrip("/"), *parts)
    return str(Path(uri, *parts))


def parent(uri: str | os.PathLike) -> str:
    """The folder that holds ``uri``."""
    uri = str(uri)
    if is_s3(uri):
        return posixpath.dirname(uri.rstrip("/"))
    return str(Path(uri).parent)


def with_retries(action: Callable[[], T], what: str, attempts: int | None = None) -> T:
    """Run ``action``, retrying transient ``OSError``s (not missing files) with backoff."""
    attempts = attempts or RETRY_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except FileNotFoundError:
            raise
        except OSError as err:
            if attempt == attempts:
                raise OSError(f"{what}: failed after {attempts} attempts: {err}") from err
            time.sleep(RETRY_BASE_DELAY_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def exists(uri: str | os.PathLike) -> bool:
    fs, path = resolve(uri)
    info = with_retries(lambda: fs.get_file_info(path), f"stat {uri}")
    return info.type != pafs.FileType.NotFound


def read_bytes(uri: str | os.PathLike) -> bytes:
    """The whole object or file; ``FileNotFoundError`` when it is missing."""
    fs, path = resolve(uri)

    def read() -> bytes:
        try:
            with fs.open_input_stream(path, compression=None) as stream:
                return stream.read()
        except OSError as err:
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"{uri} does not exist") from err
            raise

    return with_retries(read, f"read {uri}")


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write a whole object or file, creating local folders as needed."""
    fs, path = resolve(uri)

    def write() -> None:
        if not is_s3(str(uri)):
            fs.create_dir(posixpath.dirname(path) or "/", recursive=True)
        with fs.open_output_stream(path, compression=None) as stream:
            stream.write(data)

    with_retries(write, f"write {uri}")


def read_text(uri: str | os.PathLike) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | os.PathLike, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def delete_dir(uri: str | os.PathLike) -> None:
    """Remove a folder (or prefix) and everything under it; nothing happens when it is absent."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        with_retries(lambda: fs.delete_dir(path), f"delete {uri}")


def list_files(uri: str | os.PathLike, suffix: str = "") -> list[str]:
    """Every file under a folder (recursively), as URIs of the same kind, sorted."""
    fs, path = resolve(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = with_retries(lambda: fs.get_file_info(selector), f"list {uri}")
    prefix = "s3://" if is_s3(str(uri)) else ""
    return sorted(
        prefix + info.path
        for info in infos
        if info.type == pafs.FileType.File and info.path.endswith(suffix)
    )


def folder_files(uri: str | os.PathLike) -> dict[str, str]:
    """{name relative to the folder ("/"-separated): "<size> <modification time>"} of every
    file under it, sorted by name (a replaced file changes its entry); empty when the folder
    is absent."""
    fs, path = resolve(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = with_retries(lambda: fs.get_file_info(selector), f"list {uri}")
    files = {
        posixpath.relpath(info.path, path): f"{info.size} {info.mtime_ns}"
        for info in infos
        if info.type == pafs.FileType.File
    }
    return dict(sorted(files.items()))


CACHE_VARIABLE = "RADZERO_CACHE"
_COPIED = ".radzero-copied"


def local_folder(uri: str | os.PathLike) -> str:
    """A local folder holding what ``uri`` holds: ``uri`` itself when it is local; for an S3
    prefix, a copy under ``$RADZERO_CACHE`` (default ``~/.cache/radzero``) that is downloaded
    once and again only when the prefix's files (names, sizes, modification times) change.

    For libraries that read only local files (transformers, sentence-transformers).
    """
    uri = str(uri)
    if not is_s3(uri):
        return uri
    files = folder_files(uri)
    if not files:
        raise FileNotFoundError(f"{uri} holds no files")
    target = cache_root() / "s3" / resolve(uri)[1]
    listing = "\n".join(f"{stamp} {name}" for name, stamp in files.items())
    if _copied(target, listing):
        return str(target)
    # Downloaded beside the target and renamed into place, so that processes copying the
    # same folder at once (Ray actors on one node) never read a half-written copy.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    for name in files:
        write_bytes(staging / name, read_bytes(join(uri, name)))
    (staging / _COPIED).write_text(listing)
    try:
        os.rename(staging, target)
    except OSError:  # a copy is there: another process's, or one of an older listing
        if not _copied(target, listing):
            stale = Path(tempfile.mkdtemp(prefix=f"{target.name}.stale.", dir=target.parent))
            os.rename(target, stale / "copy")
            os.rename(staging, target)
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def cache_root() -> Path:
    """This machine's cache of radzero: ``$RADZERO_CACHE``, default ``~/.cache/radzero``."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "radzero")


def _copied(folder: Path, listing: str) -> bool:
    marker = folder / _COPIED
    return marker.is_file() and marker.read_text() == listing
