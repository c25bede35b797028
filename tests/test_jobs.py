"""The job scripts as users run them: directly, and through `ray job submit` to a local cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from radzero import cli
from radzero.cli.options import resolve_path
from radzero.data import phantom
from radzero.model import RadZero, get_model_config
from radzero.platform.session import API_SERVER_VARIABLE, free_port
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """A local cluster on 127.0.0.1 (`ray start --head`) with its own ports: (address, env)."""
    home = tmp_path_factory.mktemp("home")
    ray_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths have a limit
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    # RAY_API_SERVER_ADDRESS overrides `ray job submit --address`: this cluster's own, not the
    # session Ray's that the environment names.
    env = {"RAY_TMPDIR": str(ray_dir), "HOME": str(home), API_SERVER_VARIABLE: address}
    # No Serve traffic to drain: the head stops at once on SIGTERM (by default it waits up to
    # 30 s for the node to drain).
    head_env = {**os.environ, **env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
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
        env=head_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_jobs_api(address, head, env, ray_dir / "head.log")
        yield address, env
    finally:
        head.terminate()
        head.wait(timeout=60)
        log.close()
        shutil.rmtree(ray_dir, ignore_errors=True)


def submit(cluster: tuple[str, dict], *args: str, root: Path | None = None):
    """``ray job submit --working-dir .`` of ``args``, with RADZERO_ROOT when ``root`` is set."""
    address, env = cluster
    command = [RAY, "job", "submit", "--address", address, "--working-dir", "."]
    if root is not None:
        command += ["--runtime-env-json", json.dumps({"env_vars": {"RADZERO_ROOT": str(root)}})]
    return run(*command, "--", sys.executable, *args, env=env)


@pytest.mark.slow
def test_local_config_pipeline_through_ray_job_submit(cluster, tmp_path) -> None:
    """preprocess -> features -> train -> tune for configs/local.yaml (with overrides),
    submitted; the sweep (one trial, at 112 px) caches the 112 px tokens itself."""
    phantom.write_dataset(tmp_path / "runs" / "local" / "phantoms", 40, size=224, seed=4)
    for script, overrides in [
        ("jobs/preprocess.py", []),
        ("jobs/features.py", []),
        ("jobs/train.py", ["--set", "optim.epochs=1"]),
        (
            "jobs/tune.py",
            ["--set", "preset=null", "space.resolution=[112]", "train.optim.epochs=1"],
        ),
    ]:
        config = ["--config", "configs/local.yaml", *overrides]
        done = submit(cluster, script, *config, root=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "succeeded" in (done.stdout + done.stderr).lower()
    local = tmp_path / "runs" / "local"
    summary = json.loads((local / "data" / "summary.json").read_text())
    assert summary["rows_out"] == 40 and summary["quarantined"] == 0
    assert len(list((local / "data" / "features").glob("*/_SUCCESS.json"))) == 2  # 224, 112
    trained = json.loads((local / "train" / "local" / "summary.json").read_text())
    assert trained["epochs"] == 1 and trained["model"] == str(local / "train" / "local" / "model")
    model = RadZero.from_pretrained(trained["model"])
    assert model.config.to_dict() == get_model_config("radzero-tiny-local").to_dict()
    swept = json.loads((local / "tune" / "summary.json").read_text())
    assert [r["params"]["resolution"] for r in swept["trials"]] == [112]
    assert {r["status"] for r in swept["trials"]} == {"finished"}
    assert (local / "tune" / "ablation.png").exists()
    best = RadZero.from_pretrained("radzero-local@best", registry=str(local / "registry"))
    assert best.preprocess.image_size == 112


@pytest.mark.slow
def test_a_relative_path_in_a_submitted_job_needs_radzero_root(cluster) -> None:
    done = submit(cluster, "jobs/preprocess.py", "--config", "configs/local.yaml")
    assert done.returncode != 0
    assert "RADZERO_ROOT" in done.stdout + done.stderr


def test_relative_paths_resolve_from_radzero_root_else_the_working_directory(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RADZERO_ROOT", raising=False)
    assert resolve_path("runs/x") == str(tmp_path / "runs" / "x")
    assert resolve_path("s3://bucket/runs") == "s3://bucket/runs"
    monkeypatch.setenv("RADZERO_ROOT", str(tmp_path / "root"))
    assert resolve_path("runs/x") == str(tmp_path / "root" / "runs" / "x")
    assert resolve_path("/abs/x") == "/abs/x"


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


def _main(script: str):
    """``radzero COMMAND`` of ``jobs/COMMAND.py`` as a function of its arguments."""
    return lambda argv: cli.main([Path(script).stem, *argv])


@pytest.mark.parametrize(
    ("script", "override", "named"),
    [
        ("jobs/preprocess.py", "split.sed=3", "split.sed: did you mean 'seed'"),
        ("jobs/features.py", "batchsize=8", "batchsize: did you mean 'batch_size'"),
        ("jobs/train.py", "optim.lrr=0.1", "optim.lrr: did you mean 'lr'"),
        ("jobs/evaluate.py", "benchmarks=siim", "benchmarks: did you mean 'benchmark'"),
    ],
)
def test_a_bad_set_key_is_a_usage_error_naming_it(script, override, named, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        _main(script)(["--config", str(ROOT / "configs" / "local.yaml"), "--set", override])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"unknown config key(s) {override.split('=')[0]}" in error and named in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "optim.lr"], "'optim.lr' is not of the form key=value"),
        (["--set", "source=pixels"], "source must be one of ('features', 'images')"),
        (["--set", "scaling.num_workers=2", "optim.batch_size=3"], "must divide evenly"),
        (["--set", "patience=0"], "patience must be >= 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_train_arguments_stop_with_the_reason(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        _main("jobs/train.py")(args)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_demo_rejects_bad_settings_before_any_work(tmp_path, capsys) -> None:
    demo = _main("jobs/demo.py")
    local = ["--config", str(ROOT / "configs" / "local.yaml")]
    for args, message in [
        (["--set", "optim.epoch=2"], "optim.epoch: did you mean 'epochs'"),
        (["--set", "optim.epochs=two"], "optim.epochs must be an integer, got 'two'"),
        (["--set", "count=-"], "count must be an integer"),
        (["--overrides", "{}"], "unrecognized arguments: --overrides"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            demo([*local, "--out", str(tmp_path / "demo"), *args])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_results_needs_named_evaluation_folders(tmp_path, capsys) -> None:
    results = _main("jobs/results.py")
    for run_arg, message in [
        ("radzero", "'radzero': expected NAME=EVAL_OUT"),
        (f"radzero={tmp_path}", f"{tmp_path} holds no NAME/metrics.json"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            results([run_arg])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
