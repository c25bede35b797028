"""URIs to filesystems: local folders and a real S3 endpoint on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radzero import storage
from radzero.config import from_dict


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


# --- retries ------------------------------------------------------------------------------------


class Attempts:
    """An operation that raises ``error`` on its first ``failures`` calls, then returns "done"."""

    def __init__(self, failures: int, error: OSError | None = None) -> None:
        self.failures = failures
        self.error = error or OSError("connection reset")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


@pytest.fixture
def backoffs(monkeypatch) -> list[float]:
    """The delays ``with_retries`` sleeps, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(storage, "time", SimpleNamespace(sleep=delays.append))
    return delays


def test_with_retries_runs_the_operation_until_it_succeeds(backoffs) -> None:
    operation = Attempts(failures=3)
    assert storage.with_retries(operation, "write s3://b/k") == "done"
    assert operation.calls == 4
    base = storage.RETRY_BASE_DELAY_S
    assert backoffs == [base, 2 * base, 4 * base]


def test_with_retries_gives_up_after_its_attempts_naming_the_operation(backoffs) -> None:
    operation = Attempts(failures=10)
    with pytest.raises(
        OSError, match=r"^write s3://b/k: failed after 3 attempts: connection"
    ) as err:
        storage.with_retries(operation, "write s3://b/k", attempts=3)
    assert operation.calls == 3 and len(backoffs) == 2
    assert err.value.__cause__ is operation.error
    default = Attempts(failures=10)
    with pytest.raises(OSError, match=f"failed after {storage.RETRY_ATTEMPTS} attempts"):
        storage.with_retries(default, "read x")
    assert default.calls == storage.RETRY_ATTEMPTS


def test_with_retries_does_not_retry_a_missing_file(backoffs) -> None:
    operation = Attempts(failures=1, error=FileNotFoundError("s3://b/missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        storage.with_retries(operation, "read s3://b/missing")
    assert operation.calls == 1 and backoffs == []


class FlakyEndpoint:
    """A TCP front for an S3 endpoint that answers HTTP 500 to every request of its first
    ``failing_calls`` SDK calls, and passes everything after them through unchanged.

    The AWS SDK marks each request with its call (``amz-sdk-invocation-id``, the same for the
    SDK's own retries of that call) and the attempt within it (``amz-sdk-request: attempt=N``),
    so ``calls`` tells the project's retries (new calls) from the SDK's (attempts of one call).
    """

    ERROR = b"<Error><Code>InternalError</Code><Message>flaky</Message></Error>"

    def __init__(self, upstream: str, failing_calls: int) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.failing_calls = failing_calls
        self.calls: dict[str, list[int]] = {}  # invocation id -> attempts seen, in order
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        headers = dict(
            line.split(": ", 1) for line in head.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
        )
        headers = {key.lower(): value for key, value in headers.items()}
        call = headers["amz-sdk-invocation-id"]
        attempt = int(re.search(r"attempt=(\d+)", headers["amz-sdk-request"]).group(1))
        with self.lock:
            if call not in self.calls:
                self.calls[call] = []
            self.calls[call].append(attempt)
            failing = list(self.calls).index(call) < self.failing_calls
        if failing:
            client.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                + f"Content-Length: {len(self.ERROR)}\r\nConnection: close\r\n\r\n".encode()
                + self.ERROR
            )
            client.close()
            return
        upstream = socket.create_connection(self.upstream)
        upstream.sendall(head)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until either side closes, then close both."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def flaky(s3_endpoint, monkeypatch) -> Iterator[Callable[[int], FlakyEndpoint]]:
    """Points the AWS environment at a :class:`FlakyEndpoint` in front of the local S3."""
    made: list[FlakyEndpoint] = []

    def make(failing_calls: int) -> FlakyEndpoint:
        endpoint = FlakyEndpoint(s3_endpoint, failing_calls)
        made.append(endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        return endpoint

    monkeypatch.setattr(storage, "RETRY_BASE_DELAY_S", 0.01)
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 3)
    yield make
    for endpoint in made:
        endpoint.close()


def test_a_failing_store_is_retried_by_the_sdk_and_then_by_storage(s3_bucket, flaky) -> None:
    endpoint = flaky(failing_calls=2)
    storage.write_text(f"s3://{s3_bucket}/late.txt", "made it")
    attempts = list(endpoint.calls.values())
    # Two whole writes failed, each after the SDK's own 3 attempts; the third write went through.
    assert attempts[:2] == [[1, 2, 3], [1, 2, 3]]
    assert attempts[2][0] == 1
    assert storage.read_text(f"s3://{s3_bucket}/late.txt") == "made it"


def test_a_store_that_stays_down_fails_naming_the_uri(s3_bucket, flaky, monkeypatch) -> None:
    monkeypatch.setattr(storage, "RETRY_ATTEMPTS", 2)
    endpoint = flaky(failing_calls=1000)
    uri = f"s3://{s3_bucket}/lost.txt"
    with pytest.raises(OSError, match=f"write {uri}: failed after 2 attempts"):
        storage.write_text(uri, "lost")
    assert list(endpoint.calls.values()) == [[1, 2], [1, 2]]
