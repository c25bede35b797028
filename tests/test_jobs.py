"""The job scripts as users run them: directly, and through `ray job submit` to a local cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from radzero.data import phantom
from tests.conftest import TINY_VISION, free_port

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))  # the CLI of this environment
TINY = json.dumps(TINY_VISION)


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bad_config_keys_stop_the_job_before_any_work(tmp_path) -> None:
    done = run(
        sys.executable,
        "jobs/preprocess.py",
        "--manifest",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "resolution=224",
    )
    assert done.returncode == 2
    assert "unknown config key(s) resolution" in done.stderr and "resolutions" in done.stderr
    assert not (tmp_path / "out").exists()


def test_preprocess_and_features_through_ray_job_submit(tmp_path) -> None:
    """A local cluster on 127.0.0.1 (`ray start --head`), both jobs submitted with --working-dir."""
    phantom.write_dataset(tmp_path / "raw", 6, size=64, seed=4)
    ray_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths have a limit
    env = {"RAY_TMPDIR": str(ray_dir), "HOME": str(tmp_path)}
    port = free_port()
    # Every port of its own: the session's local Ray may hold the default agent ports.
    agents = [
        f"--{name}={free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    ]
    # --block keeps this cluster's processes under one parent, so stopping it leaves any other
    # Ray on the machine (the session's own local Ray) alone, unlike `ray stop`.
    log = open(ray_dir / "head.log", "w")  # noqa: SIM115 - closed with the cluster below
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--dashboard-port={port}",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={ray_dir}",
            "--port=0",
            *agents,
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        _wait_for_jobs_api(address, head, env, ray_dir / "head.log")
        for script, args in (
            (
                "jobs/preprocess.py",
                [
                    "--manifest",
                    str(tmp_path / "raw"),
                    "--out",
                    str(tmp_path / "out"),
                    "--set",
                    "resolutions=[64]",
                ],
            ),
            (
                "jobs/features.py",
                [
                    "--prepared",
                    str(tmp_path / "out"),
                    "--out",
                    str(tmp_path / "out"),
                    "--set",
                    f"vision={TINY}",
                ],
            ),
        ):
            command = [RAY, "job", "submit", "--address", address, "--working-dir", "."]
            submitted = run(*command, "--", sys.executable, script, *args, env=env)
            assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
            assert "succeeded" in (submitted.stdout + submitted.stderr).lower()
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["rows_out"] == 6 and summary["quarantined"] == 0
        features = list((tmp_path / "out" / "features").glob("*/_SUCCESS.json"))
        assert len(features) == 1
    finally:
        head.terminate()
        head.wait(timeout=60)
        log.close()
        shutil.rmtree(ray_dir, ignore_errors=True)


def _wait_for_jobs_api(address: str, head: subprocess.Popen, env: dict, log: Path) -> None:
    """Until the head's job agent takes submissions (a no-op job succeeds)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start exited early: {log.read_text()[-3000:]}")
        probe = run(RAY, "job", "submit", "--address", address, "--", "true", env=env)
        if probe.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"the jobs API at {address} did not come up within 120 s")


@pytest.mark.parametrize("script", ["jobs/preprocess.py", "jobs/features.py"])
def test_job_help_names_its_arguments(script) -> None:
    done = run(sys.executable, script, "--help")
    assert done.returncode == 0 and "--out" in done.stdout and "--set" in done.stdout
