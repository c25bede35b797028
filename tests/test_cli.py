"""The `radzero` command line: the installed console script, its commands and their help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from radzero import cli

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
