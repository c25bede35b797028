"""The `radzero` command line: the installed console script, its commands and their help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from radzero import cli
from radzero.platform.session import free_port
from tests.serving import register_tiny

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("radzero")  # [project.scripts] of pyproject.toml


def test_the_console_script_lists_every_command_with_what_it_does() -> None:
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(cli.COMMANDS)
    for command in cli.COMMANDS:
        assert f"  {command}" in done.stdout and cli.summary(command) in done.stdout


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_has_help_with_the_shared_options_and_a_job_script(command, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: radzero {command} ")
    assert "--config FILE" in text and "--set" in text and f"jobs.{command}" in text
    shim = (ROOT / "jobs" / f"{command}.py").read_text()
    assert f'run("{command}")' in shim  # ray job submit runs the very same command


def test_a_misspelt_or_missing_command_is_a_usage_error(capsys) -> None:
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'; did you mean 'train'?" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert "commands:" in capsys.readouterr().err


def test_a_job_script_is_its_command(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "jobs/phantom.py", "--out", str(tmp_path), "--count", "2", "--size", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"phantom: wrote 2 cases to {tmp_path}/manifest.csv")


@pytest.mark.slow
def test_serve_runs_until_ctrl_c_and_then_stops_cleanly(tmp_path) -> None:
    root = tmp_path / "registry"
    register_tiny(root, 0, {}, aliases=("best",))
    port, log = free_port(), tmp_path / "logs" / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"HF_HUB_OFFLINE": "1", "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray", dir="/tmp")}
    command = [str(SCRIPT), "serve", "--log", str(log), "--set", "model=tiny@best"]
    command += [f"registry={root}", f"port={port}", "model_cpus=0.5"]
    served = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and served.poll() is None:
            try:
                with urllib.request.urlopen(health, timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:  # not listening yet, or not answering yet
                time.sleep(1)
        else:
            raise AssertionError(f"not serving: {served.poll()} {log.read_text()[-2000:]}")
        time.sleep(2)  # past the deploy, in the wait for Ctrl-C
        served.send_signal(signal.SIGINT)
        out, _ = served.communicate(timeout=120)
    finally:
        if served.poll() is None:
            served.kill()
    assert served.returncode == 0, out
    lines = out.splitlines()
    assert (
        lines[0] == f"serve: tiny@best at http://127.0.0.1:{port}/ (the page; API docs at "
        f"http://127.0.0.1:{port}/docs)"
    )
    assert lines[-1] == "serve: stopped" and "Traceback" not in out
    assert "RadZeroModel" in log.read_text()  # Ray's output went to the log, not the terminal
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(health, timeout=5)
