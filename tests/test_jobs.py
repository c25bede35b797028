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
from tests.conftest import TINY_VISION

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
    port = 8265 + os.getpid() % 500
    start = run(
        RAY,
        "start",
        "--head",
        "--num-cpus=2",
        "--include-dashboard=true",
        f"--dashboard-port={port}",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={ray_dir}",
        "--port=0",
        env=env,
    )
    assert start.returncode == 0, start.stderr
    address = f"http://127.0.0.1:{port}"
    try:
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
            submitted = run(
                RAY,
                "job",
                "submit",
                "--address",
                address,
                "--working-dir",
                ".",
                "--",
                sys.executable,
                script,
                *args,
                env=env,
            )
            assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
            assert "succeeded" in (submitted.stdout + submitted.stderr).lower()
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["rows_out"] == 6 and summary["quarantined"] == 0
        features = list((tmp_path / "out" / "features").glob("*/_SUCCESS.json"))
        assert len(features) == 1
    finally:
        run(RAY, "stop", "--force", env=env)
        time.sleep(1)
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.mark.parametrize("script", ["jobs/preprocess.py", "jobs/features.py"])
def test_job_help_names_its_arguments(script) -> None:
    done = run(sys.executable, script, "--help")
    assert done.returncode == 0 and "--out" in done.stdout and "--set" in done.stdout
