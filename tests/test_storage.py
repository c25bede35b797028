"""URIs to filesystems: local folders and a real S3 endpoint on 127.0.0.1."""

from __future__ import annotations

import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radzero import storage
from radzero.config import from_dict
from tests.conftest import free_port


def test_local_paths_resolve_to_absolute_local_files(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fs, path = storage.resolve("data/x.txt")
    assert fs.type_name == "local" and path == str(tmp_path / "data" / "x.txt")
    storage.write_text("data/x.txt", "hello")
    assert storage.read_text(tmp_path / "data" / "x.txt") == "hello"
    assert storage.list_files(tmp_path) == [str(tmp_path / "data" / "x.txt")]
    storage.delete_dir(tmp_path / "data")
    assert not storage.exists("data/x.txt")
    with pytest.raises(FileNotFoundError, match=r"x\.txt"):
        storage.read_bytes("data/x.txt")


def test_uri_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="names no bucket"):
        storage.resolve("s3:///key")
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        storage.resolve("gs://bucket/key")
    with pytest.raises(ValueError, match="did you mean 'endpoint_url'"):
        from_dict(storage.S3Options, {"endpoint": "x"})


def test_config_settings_become_the_aws_environment(monkeypatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION"):  # restored after the test
        monkeypatch.setenv(name, "unset")
    storage.S3Options(endpoint_url="http://127.0.0.1:9", region="eu-west-3").apply()
    fs, path = storage.resolve("s3://bucket/key")
    assert (fs.region, path) == ("eu-west-3", "bucket/key")
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"


def test_join_and_parent_keep_the_uri_kind() -> None:
    assert storage.join("s3://b/p/", "a", "b.parquet") == "s3://b/p/a/b.parquet"
    assert storage.parent("s3://b/p/m.csv") == "s3://b/p"
    assert storage.join("/tmp/x", "a") == "/tmp/x/a"


def test_s3_round_trip_through_the_aws_environment(s3_bucket) -> None:
    root = f"s3://{s3_bucket}/prefix"
    storage.write_bytes(f"{root}/a/one.bin", b"\x00\x01")
    storage.write_text(f"{root}/b.txt", "two")
    assert storage.read_bytes(f"{root}/a/one.bin") == b"\x00\x01"
    assert storage.exists(f"{root}/b.txt") and not storage.exists(f"{root}/missing")
    assert storage.list_files(root) == [f"{root}/a/one.bin", f"{root}/b.txt"]
    assert storage.list_files(root, suffix=".txt") == [f"{root}/b.txt"]
    with pytest.raises(FileNotFoundError, match=r"missing"):
        storage.read_bytes(f"{root}/missing")

    fs, path = storage.resolve(f"{root}/table.parquet")
    pq.write_table(pa.table({"x": [1, 2, 3]}), path, filesystem=fs)
    assert pq.read_table(path, filesystem=fs)["x"].to_pylist() == [1, 2, 3]

    storage.delete_dir(f"{root}/a")
    assert not storage.exists(f"{root}/a/one.bin")


def test_transient_outage_is_retried_with_backoff(s3_bucket, monkeypatch) -> None:
    from moto.server import ThreadedMotoServer

    # An endpoint that comes up only after the first attempts have failed.
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.3)
    late = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    timer = threading.Timer(0.5, late.start)
    timer.start()
    try:
        started = time.monotonic()
        storage.write_text(f"s3://{s3_bucket}/late.txt", "made it")
        assert time.monotonic() - started >= 0.3  # at least one backoff happened
        assert storage.read_text(f"s3://{s3_bucket}/late.txt") == "made it"
    finally:
        timer.join()
        late.stop()


def test_a_store_that_stays_down_fails_naming_the_uri(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.01)
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 2)
    with pytest.raises(OSError, match=r"s3://nowhere/x.txt: failed after 2 attempts"):
        storage.write_text("s3://nowhere/x.txt", "lost")
